"""xinfang intake service."""

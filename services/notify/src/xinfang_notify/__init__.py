"""xinfang notify service."""

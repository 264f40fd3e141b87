"""xinfang supervision service."""

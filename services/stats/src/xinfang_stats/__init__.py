"""xinfang stats service."""

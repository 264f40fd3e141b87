"""xinfang routing service."""

"""API views (filled in below)."""

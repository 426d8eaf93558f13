"""Demo school (placeholder)."""

"""CSV roster import (placeholder)."""

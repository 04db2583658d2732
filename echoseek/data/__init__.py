"""echoseek.data."""

"""echoseek.index."""

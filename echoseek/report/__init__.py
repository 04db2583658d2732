"""echoseek.report."""

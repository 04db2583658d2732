"""echoseek.service."""

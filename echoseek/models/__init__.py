"""echoseek.models."""

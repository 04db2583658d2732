"""echoseek.losses."""

"""Ingest: MATLAB stacks (:mod:`mat`), image folders (:mod:`folders`) and labels CSV files
(:mod:`labels`), converted by one pixel rule (:mod:`frames`), into a dataset directory
(:mod:`build`)."""

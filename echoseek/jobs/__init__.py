"""Jobs: one module per job, each runnable as ``python -m echoseek.jobs.<name> CONFIG [k=v ...]``.

Every job module defines a config dataclass ``Config`` (with top-level ``input`` and ``output``
paths), a ``run(cfg) -> dict`` function that does the work and returns a small JSON-able
summary, and ``main(argv) -> int`` built with :func:`echoseek.jobs.runner.run_job`.
"""

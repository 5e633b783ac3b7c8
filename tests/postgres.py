"""The throw-away PostgreSQL of the tests and benchmarks: :mod:`carnb.pgstore.scratch` (also
what ``notebooks/07-team.ipynb`` starts)."""

from carnb.pgstore.scratch import UNPRIVILEGED_USER, TempPostgres, find_bindir, free_port

__all__ = ["UNPRIVILEGED_USER", "TempPostgres", "find_bindir", "free_port"]

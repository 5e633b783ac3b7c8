"""What carnb's tests, benchmarks and demonstration notebooks start beside carnb, never what a
server runs: :mod:`carnb.testing.postgres`, a throw-away PostgreSQL server. Nothing in the rest
of carnb imports this package."""

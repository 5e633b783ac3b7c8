"""carnb: host CAR (Common Agent Runtime) sessions inside a Jupyter kernel."""

from __future__ import annotations

__version__ = "0.1.0"

"""memgine: carnb's memory engine behind ``memory.*`` (docs/memgine.md).

A typed memory graph per scope, stored in SQLite or (through :mod:`carnb.memgine.backend`) a
team's PostgreSQL store: :class:`Memgine` is one graph (thread-safe, synchronous),
:class:`MemoryHome` owns the data directory layout (agent and namespace graph files, the
``memory/`` sandbox for persist/load) and :func:`graph_file_name` the file naming.
"""

from carnb.memgine.engine import Memgine
from carnb.memgine.home import MemoryHome, graph_file_name

__all__ = ["Memgine", "MemoryHome", "graph_file_name"]

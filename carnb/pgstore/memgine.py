"""memgine's agent and namespace graphs in a PostgreSQL store, live across servers.

Theory of operation: :class:`PgGraphs` (one per server) hands memgine a :class:`PgGraph` backend
per graph key (``("agents", id)``, ``("namespaces", ns)``); the policy stays
:class:`carnb.memgine.Memgine`'s, the SQL is :mod:`carnb.pgstore.memgine_sql`. Each transaction
takes a pooled connection: reads run in a ``REPEATABLE READ READ ONLY`` snapshot, writes lock the
graph's row first, so one graph's writers (on any server) are serialised and nothing they check
changes under them. A write returns only after COMMIT: an acknowledged fact survives the death
of the server that wrote it.

Every write also sends ``NOTIFY carnb_memgine`` with ``{k: kind, n: name, c: fact count,
v: version}`` (delivered on COMMIT, in commit order). Each server's LISTEN thread passes it to
the watchers (:meth:`PgGraphs.watch`: the runtime refreshes the fact counts its sessions show),
and a graph seeing a version it did not write drops its caches on its next transaction anyway.

While PostgreSQL is away, a call fails with :class:`~carnb.pgstore.database.StoreUnavailable`
(nothing written) and the pool reconnects by itself; after a reconnect the watchers are told
every open graph's count again (notifications sent meanwhile were lost).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from carnb.errors import FactIdTaken, InvalidParams, OutsideFault, ServerFault, StoreUnavailable
from carnb.pgstore import memgine_sql as sql
from carnb.pgstore.database import Database
from carnb.pgstore.notify import Notifications
from carnb.pgstore.schema import migrate

log = logging.getLogger("carnb.pgstore.memgine")

GraphKey = tuple[str, str]
# After LISTEN reconnects, how long the count catch-up waits for the pool to reconnect too.
CATCH_UP_S = 10.0
Watcher = Callable[[GraphKey, int], None]


class PgGraph:
    """:class:`carnb.memgine.backend.GraphBackend` for one graph of a PostgreSQL store."""

    def __init__(self, graphs: PgGraphs, key: GraphKey) -> None:
        self._graphs = graphs
        self.key = key
        self._graph_id: int | None = None
        self._seen_version: int | None = None
        self._open = False

    persistent = True
    holds_files = False

    @property
    def label(self) -> str:
        return f"{self._graphs.db.display} {self.key[0]}/{self.key[1]}"

    @property
    def is_open(self) -> bool:
        return self._open

    def open(self) -> None:
        self._open = True
        self._seen_version = None

    def close(self) -> None:
        self._open = False

    def _id(self, conn: psycopg.Connection[Any]) -> int:
        if self._graph_id is None:
            self._graph_id = sql.ensure_graph(conn, *self.key)
            conn.commit()
        return self._graph_id

    def _seen(self, version: int) -> bool:
        """Whether ``version`` is news from elsewhere; remembers it."""
        foreign = version != self._seen_version
        self._seen_version = version
        return foreign

    @contextmanager
    def write(self) -> Iterator[sql.PgGraphTx]:
        if not self._open:
            raise ServerFault("memory graph is closed")
        with self._transaction("write") as conn:
            h = sql.head(conn, self._id(conn), lock=True)
            tx = sql.PgGraphTx(conn, h, self._seen(h.version))
            yield tx
            sql.save_head(conn, h, self.key)
        self._seen_version = h.version  # committed: our own write is no news

    @contextmanager
    def read(self) -> Iterator[sql.PgGraphTx]:
        if not self._open:
            raise ServerFault("memory graph is closed")
        with self._transaction("read") as conn:
            graph_id = self._id(conn)
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            h = sql.head(conn, graph_id, lock=False)
            yield sql.PgGraphTx(conn, h, self._seen(h.version))

    def problems(self) -> list[str]:
        with self.read() as tx:
            return tx.problems()

    @contextmanager
    def _transaction(self, what: str) -> Iterator[psycopg.Connection[Any]]:
        """One pooled transaction; PostgreSQL's own refusals become carnb's typed errors
        (nothing written)."""
        try:
            with self._graphs.db.transaction() as conn:
                yield conn
        except (StoreUnavailable, FactIdTaken):
            self._seen_version = None
            raise
        except psycopg.DataError as exc:
            self._seen_version = None
            raise InvalidParams(
                "memory graph refused the value: "
                f"{str(exc).splitlines()[0]} (PostgreSQL text cannot hold NUL characters); "
                "nothing was written"
            ) from exc
        except psycopg.Error as exc:
            self._seen_version = None
            raise OutsideFault(
                f"memory graph {self.label} {what} failed: {str(exc).splitlines()[0]}"
            ) from exc


class PgGraphs:
    """The memory graphs of one server on a PostgreSQL store; thread-safe."""

    def __init__(self, db: Database, notifications: Notifications) -> None:
        self.db = db
        migrate(db, sql.SCHEMA)
        self._lock = threading.Lock()
        self._watchers: list[Watcher] = []
        self._backends: weakref.WeakValueDictionary[GraphKey, PgGraph] = (
            weakref.WeakValueDictionary()
        )
        notifications.on(sql.CHANNEL, self._on_notify)
        notifications.on_reconnect(self._catch_up)

    def backend(self, kind: str, name: str) -> PgGraph:
        """The backend of graph ``(kind, name)`` (``kind``: ``agents`` or ``namespaces``)."""
        graph = PgGraph(self, (kind, name))
        with self._lock:
            self._backends[(kind, name)] = graph
        return graph

    def names(self, kind: str) -> list[str]:
        """The names of the stored graphs of ``kind`` that hold facts."""
        with self.db.transaction() as conn:
            rows = conn.execute(
                "SELECT g.name FROM memgine_graphs g WHERE g.kind = %s AND EXISTS "
                "(SELECT 1 FROM memgine_facts f WHERE f.graph_id = g.graph_id) ORDER BY g.name",
                (kind,),
            ).fetchall()
        return [str(r[0]) for r in rows]

    def watch(self, fn: Watcher) -> None:
        """Call ``fn(key, fact_count)`` (in the LISTEN thread) after a write to a graph by any
        server, this one included."""
        self._watchers.append(fn)

    def _on_notify(self, data: dict[str, Any]) -> None:
        kind, name, count = data.get("k"), data.get("n"), data.get("c")
        if not isinstance(kind, str) or not isinstance(name, str) or not isinstance(count, int):
            log.warning("ignored a malformed memgine notification")
            return
        self._tell((kind, name), count)

    def _tell(self, key: GraphKey, count: int) -> None:
        for fn in list(self._watchers):
            try:
                fn(key, count)
            except Exception:
                log.exception("memgine count watcher failed")

    def _catch_up(self) -> None:
        """After LISTEN reconnects: the current counts of the graphs this server holds. The
        pool may reconnect a moment after the LISTEN connection did: retried for a while."""
        with self._lock:
            keys = list(self._backends.keys())
        if not keys:
            return
        deadline = time.monotonic() + CATCH_UP_S
        while True:
            try:
                with self.db.transaction() as conn:
                    rows = conn.execute(
                        "SELECT kind, name, fact_count FROM memgine_graphs "
                        "WHERE (kind, name) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
                        ([k for k, _ in keys], [n for _, n in keys]),
                    ).fetchall()
                break
            except StoreUnavailable:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)
        for kind, name, count in rows:
            self._tell((kind, name), int(count))

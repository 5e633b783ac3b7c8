"""A memgine graph stored in SQLite: one file per graph (WAL, background checkpoints), or an
in-memory database for an ephemeral graph. :class:`SqliteGraph` is the
:class:`~carnb.memgine.backend.GraphBackend`: it opens and closes the file and begins and ends
each transaction, whose statements are :class:`carnb.memgine.store.SqliteTx`."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from carnb.errors import ServerFault
from carnb.memgine import store
from carnb.memgine.store import SqliteTx

log = logging.getLogger("carnb.memgine")


class SqliteGraph:
    """:class:`~carnb.memgine.backend.GraphBackend` for a SQLite file (``path``) or memory
    (``None``). Not thread-safe by itself: the engine's lock serialises every call."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._checkpointer = store.Checkpointer(path) if path is not None else None
        self._data_version: int | None = None

    @property
    def persistent(self) -> bool:
        return self.path is not None

    @property
    def label(self) -> str:
        return str(self.path) if self.path else ":memory:"

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    @property
    def holds_files(self) -> bool:
        return self.path is not None

    def open(self) -> None:
        if self._conn is not None:
            return
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ServerFault(
                    f"memory graph folder {self.path.parent} cannot be created: {exc.strerror}"
                ) from exc
        self._conn = store.connect(self.path)
        self._data_version = None
        if self._checkpointer is not None:
            self._checkpointer.start()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if self._checkpointer is not None:
            self._checkpointer.close()
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error as exc:
                log.warning("memgine: closing %s failed: %s", self.label, exc)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ServerFault("memory graph is closed")
        return self._conn

    def _changed(self, conn: sqlite3.Connection) -> bool:
        """Whether another connection committed since the last look (``PRAGMA data_version``;
        always on the first look after opening)."""
        version = store.data_version(conn)
        changed = version != self._data_version
        self._data_version = version
        return changed

    @contextmanager
    def write(self) -> Iterator[SqliteTx]:
        conn = self._connection()
        try:
            store.begin_write(conn)
        except sqlite3.Error as exc:
            raise store.write_failure(self.path, exc) from exc
        try:
            yield SqliteTx(conn, self._changed(conn))
            conn.execute("COMMIT")
            if self._checkpointer is not None:
                self._checkpointer.poke()
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise store.write_failure(self.path, exc) from exc
            raise

    @contextmanager
    def read(self) -> Iterator[SqliteTx]:
        conn = self._connection()
        conn.execute("BEGIN")
        try:
            yield SqliteTx(conn, self._changed(conn))
        except sqlite3.Error as exc:
            raise ServerFault(f"memory graph read failed: {exc}") from exc
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    def problems(self) -> list[str]:
        """SQLite integrity, the full-text index against the facts, the fact count (the
        pending batch is indexed inside a transaction that is rolled back)."""
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            return SqliteTx(conn).problems()
        finally:
            conn.execute("ROLLBACK")

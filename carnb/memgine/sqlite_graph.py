"""A memgine graph stored in SQLite: one file per graph (WAL, background checkpoints), or an
in-memory database for an ephemeral graph. :class:`SqliteGraph` is the
:class:`~carnb.memgine.backend.GraphBackend`; :class:`SqliteTx` binds the statements of
:mod:`carnb.memgine.store` to its connection inside one transaction."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from carnb.errors import CarnbError
from carnb.memgine import store
from carnb.memgine.backend import Changed, FactIdTaken, NewFact, Pending

log = logging.getLogger("carnb.memgine")


class SqliteTx:
    """:class:`~carnb.memgine.backend.GraphTx` over one SQLite connection."""

    def __init__(self, conn: sqlite3.Connection, foreign_change: bool) -> None:
        self.conn = conn
        self.foreign_change = foreign_change

    def fact_count(self) -> int:
        return store.get_meta_int(self.conn, "fact_count")

    def max_rowid(self) -> int:
        return store.max_rowid(self.conn)

    def mint_id(self) -> str:
        return store.mint_id(self.conn)

    def next_ws(self) -> int:
        return store.get_meta_int(self.conn, "next_ws")

    def set_next_ws(self, n: int) -> None:
        store.set_meta(self.conn, "next_ws", n)

    def content_of(self, fact_id: str) -> tuple[str, str] | None:
        return store.content_of(self.conn, fact_id)

    def rowid_of(self, fact_id: str) -> int | None:
        return store.rowid_of(self.conn, fact_id)

    def deletable(self, fact_id: str) -> tuple[int, str, str, int | None] | None:
        return store.deletable(self.conn, fact_id)

    def insert_fact(self, fact: NewFact) -> int:
        return store.insert_fact(self.conn, fact)

    def bump_fact_count(self, delta: int) -> None:
        store.bump_fact_count(self.conn, delta)

    def remove_fact(self, rowid: int, stems: str, *, valid: bool = True) -> None:
        store.remove_fact(self.conn, rowid, stems, valid=valid)

    def resolve_targets(self, names: Sequence[str]) -> tuple[list[Changed], list[str]]:
        return store.resolve_targets(self.conn, names)

    def supersede(self, olds: Sequence[Changed], new_rowid: int) -> None:
        store.supersede(self.conn, olds, new_rowid)

    def release(self, rowid: int, successor: int | None) -> list[Changed]:
        return store.release(self.conn, rowid, successor)

    def supersede_by_ids(self, links: Sequence[tuple[str, str]]) -> None:
        store.supersede_by_ids(self.conn, links)

    def superseded_among(self, rowids: Sequence[int]) -> set[int]:
        return store.superseded_among(self.conn, rowids)

    def history(self, start: Sequence[int], limit: int) -> list[tuple[Any, ...]]:
        return store.history(self.conn, start, limit)

    def rowids_of_subject(self, subject: str, limit: int) -> list[int]:
        return store.rowids_of_subject(self.conn, subject, limit)

    def fact_rows(self, limit: int | None = None, offset: int = 0) -> list[tuple[Any, ...]]:
        return store.fact_rows(self.conn, limit, offset)

    def constraint_rows(self) -> list[tuple[str, str, str]]:
        return store.constraint_rows(self.conn)

    def rows_by_rowid(self, rowids: Sequence[int], columns: str) -> dict[int, tuple[Any, ...]]:
        return store.rows_by_rowid(self.conn, rowids, columns)

    def newest_valid_lines(self, room: int) -> tuple[list[int], bool]:
        return store.newest_valid_lines(self.conn, room)

    def neighbours(self, rowids: Sequence[int]) -> dict[int, list[int]]:
        return store.neighbours(self.conn, rowids)

    def match(self, all_of: Sequence[Sequence[str]], limit: int | None = None) -> list[int]:
        return store.match(self.conn, all_of, limit)

    def pending(self) -> list[Pending]:
        return store.pending(self.conn)

    def terms_of(self, rowids: Sequence[int]) -> Iterator[tuple[int, str, str]]:
        return store.terms_of(self.conn, rowids)

    def newest_postings(self, key: str, probe: int) -> tuple[int, int | None]:
        return store.newest_postings(self.conn, key, probe)

    def vocabulary(self, limit: int, max_chars: int) -> list[str]:
        return store.vocabulary(self.conn, limit, max_chars)

    def clear(self) -> None:
        store.clear(self.conn)

    def append_batch(self, facts: Sequence[NewFact]) -> None:
        try:
            store.append_batch(self.conn, facts)
        except sqlite3.IntegrityError as exc:
            raise FactIdTaken(str(exc)) from exc

    def duplicate_groups(self) -> list[list[int]]:
        return store.duplicate_groups(self.conn)

    def same_content(self, rowids: Sequence[int]) -> list[int]:
        return store.same_content(self.conn, rowids)

    def merge_into(self, keep: int, dups: Sequence[int]) -> None:
        store.merge_into(self.conn, keep, dups)

    def contested_subjects(self) -> list[str]:
        return store.contested_subjects(self.conn)

    def ids_of_subject(self, subject: str, limit: int) -> list[str]:
        return store.ids_of_subject(self.conn, subject, limit)


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
                raise CarnbError(
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
            raise CarnbError("memory graph is closed")
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
            conn.execute("BEGIN IMMEDIATE")
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
            raise CarnbError(f"memory graph read failed: {exc}") from exc
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    def problems(self) -> list[str]:
        """SQLite integrity, the full-text index against the facts, the fact count (the
        pending batch is indexed inside a transaction that is rolled back)."""
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            return store.problems(conn)
        finally:
            conn.execute("ROLLBACK")

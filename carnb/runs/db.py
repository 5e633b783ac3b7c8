"""The run store on SQLite: its schema, :class:`SqliteRuns` (the
:class:`~carnb.runs.backend.RunBackend`: one file, one connection) and :class:`SqliteRunTx` (the
SQL). Files are opened by :mod:`carnb.sqlite`.

No policy here (who may do what, and when, is :mod:`carnb.runs.store` with
:mod:`carnb.runs.access`): the statements read and write rows inside the transaction
:class:`SqliteRuns` holds, and convert rows to the public shapes of :mod:`carnb.runs.records`.

Tables: ``runs`` (``seq`` gives creation order, so "newest first" never depends on the clock;
``next_index`` is the index the next record gets) and ``records`` (unique ``(run_id, idx)``;
``body`` the record's JSON fields besides index, kind and timestamp). ``records`` is a rowid
table on purpose: turns are often over 1 KiB, and in a ``WITHOUT ROWID`` table such rows spill
into overflow pages (measured: ~3x the pages written per turn).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from carnb import sqlite
from carnb.errors import ServerFault
from carnb.runs import records as rec
from carnb.runs.backend import (
    FORKED_FROM_COLUMN,
    RUN_COLUMNS,
    NewRun,
    Row,
    Session,
    run_columns,
    run_row,
)

log = logging.getLogger("carnb.runs")

SCHEMA_VERSION = 2
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs {run_columns("INTEGER PRIMARY KEY AUTOINCREMENT", "REAL")};
CREATE INDEX IF NOT EXISTS runs_by_agent ON runs (agent_id, seq);
CREATE INDEX IF NOT EXISTS runs_by_session ON runs (owner_epoch, owner_session_id, status);
CREATE UNIQUE INDEX IF NOT EXISTS runs_idem ON runs (idem_scope, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    kind TEXT NOT NULL,
    ts REAL NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (run_id, idx)
);
"""
SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
ADD_FORKED_FROM = f"ALTER TABLE runs ADD COLUMN {FORKED_FROM_COLUMN}"


def _add_forked_from(conn: sqlite3.Connection) -> None:
    conn.execute(ADD_FORKED_FROM)


_SCHEMA = sqlite.Schema(
    "run store", SCHEMA_VERSION, SCHEMA + ADD_FORKED_FROM + ";\n", {1: _add_forked_from}
)


def connect(path: str, synchronous: str, timeout_s: float) -> sqlite3.Connection:
    """Open (creating parent folders and tables) a store file; autocommit, any thread."""
    if synchronous not in SYNCHRONOUS:
        raise ValueError(f"synchronous must be one of {SYNCHRONOUS}, not {synchronous!r}")
    return sqlite.connect(
        None if path == ":memory:" else Path(path),
        _SCHEMA,
        timeout_s=timeout_s,
        # After a big batch (up to 256 turns of 256 KiB), shrink the WAL file back.
        pragmas=(f"synchronous = {synchronous}", f"journal_size_limit = {16 * 1024 * 1024}"),
    )


class SqliteRuns:
    """:class:`~carnb.runs.backend.RunBackend` on one SQLite file: one connection behind an
    ``RLock`` (threads of this process), ``BEGIN IMMEDIATE`` (other processes)."""

    def __init__(self, path: str, synchronous: str, busy_timeout_s: float) -> None:
        self.path = path
        self.synchronous = synchronous
        self.busy_timeout_s = busy_timeout_s
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None

    @property
    def label(self) -> str:
        return self.path

    @property
    def closed(self) -> bool:
        return self._conn is None

    def open(self) -> None:
        with self._lock:
            if self._conn is None:
                self._conn = connect(self.path, self.synchronous, self.busy_timeout_s)
                log.debug("run store open: %s", self.path)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
                log.debug("run store closed: %s", self.path)

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ServerFault(f"run store {self.path} is closed")
        return self._conn

    @contextmanager
    def read(self) -> Iterator[SqliteRunTx]:
        with self._lock:
            yield SqliteRunTx(self._require())

    @contextmanager
    def write(self, committed: Callable[[], None]) -> Iterator[SqliteRunTx]:
        with self._lock:
            conn = self._require()
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield SqliteRunTx(conn)
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise ServerFault(f"run store {self.path}: {exc}; nothing was written") from exc
                raise
            committed()


class SqliteRunTx:
    """:class:`~carnb.runs.backend.RunTx` on the store's connection (``BEGIN IMMEDIATE`` holds
    the file's write lock, so a fetched run cannot change before commit)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def fetch_run(self, run_id: str) -> Row | None:
        r = self.conn.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id=?", (run_id,))
        row = r.fetchone()
        return None if row is None else run_row(row)

    def find_idempotent(self, scope: str, key: str) -> tuple[str, str] | None:
        found: tuple[str, str] | None = self.conn.execute(
            "SELECT run_id, agent_id FROM runs WHERE idem_scope=? AND idempotency_key=?",
            (scope, key),
        ).fetchone()
        return found

    def insert_run(self, run: NewRun) -> None:
        self.conn.execute(
            f"INSERT INTO runs ({NewRun.COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)", run.values()
        )

    def append(self, run_id: str, base: int, kind: str, ts: float, bodies: Sequence[str]) -> None:
        self.conn.executemany(
            "INSERT INTO records (run_id, idx, kind, ts, body) VALUES (?,?,?,?,?)",
            [(run_id, base + i, kind, ts, body) for i, body in enumerate(bodies)],
        )
        turns = len(bodies) if kind == rec.TURN else 0
        self.conn.execute(
            "UPDATE runs SET next_index=next_index+?, turn_count=turn_count+? WHERE run_id=?",
            (len(bodies), turns, run_id),
        )

    def set_ended(self, run_id: str, status: str, ts: float) -> None:
        self.conn.execute(
            "UPDATE runs SET status=?, ended_at=? WHERE run_id=?", (status, ts, run_id)
        )

    def open_runs_of_session(self, epoch: str, client_id: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT run_id FROM runs WHERE owner_epoch=? AND owner_session_id=? AND status=? "
            "ORDER BY seq",
            (epoch, client_id, rec.IN_PROGRESS),
        )
        return [r[0] for r in rows]

    def list_runs(self, agent_id: str, only: Session | None, limit: int | None) -> list[Row]:
        mine = "" if only is None else " AND owner_epoch=? AND owner_session_id=?"
        rows = self.conn.execute(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE agent_id=?{mine} ORDER BY seq DESC LIMIT ?",
            (agent_id, *(only or ()), -1 if limit is None else limit),
        )
        return [run_row(r) for r in rows]

    def read_records(self, run_id: str, after: int, limit: int | None) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT idx, kind, ts, body FROM records WHERE run_id=? AND idx>? ORDER BY idx LIMIT ?",
            (run_id, after, -1 if limit is None else limit),
        )
        return [rec.make_record(i, k, ts, json.loads(body)) for i, k, ts, body in rows]

    def run_counts_by_agent(self) -> dict[str, int]:
        rows = self.conn.execute(
            "SELECT agent_id, COUNT(*) FROM runs GROUP BY agent_id ORDER BY agent_id"
        )
        return {str(a): int(n) for a, n in rows}

    def model_turn_usage(self, after: Any, span: int) -> tuple[list[tuple[Any, ...]], Any]:
        start = int(after or 0)  # records' seq

        def count(key: str) -> str:
            path = f"'$.token_usage.{key}'"
            return (
                f"SUM(CASE WHEN json_type(m.body, {path}) = 'integer' AND "
                f"json_extract(m.body, {path}) > 0 THEN json_extract(m.body, {path}) ELSE 0 END)"
            )

        rows = list(
            self.conn.execute(
                "SELECT r.agent_id, m.run_id, CASE WHEN json_type(m.body, '$.model_id') = 'text' "
                f"THEN json_extract(m.body, '$.model_id') END AS model, COUNT(*), "
                f"{count('input_tokens')}, {count('output_tokens')} "
                "FROM records m JOIN runs r ON r.run_id = m.run_id "
                "WHERE m.seq > ? AND m.seq <= ? AND m.kind = 'model_turn' "
                "GROUP BY r.agent_id, m.run_id, model",
                (start, start + span),
            )
        )
        (more,) = self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM records WHERE seq > ?)", (start + span,)
        ).fetchone()
        return rows, start + span if more else None

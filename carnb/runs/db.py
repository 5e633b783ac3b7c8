"""The run store's SQLite layer: its schema and the SQL (files are opened by :mod:`carnb.sqlite`).

No policy here (who may do what, and when, is :mod:`carnb.runs.store` with
:mod:`carnb.runs.access`): these functions read and write rows inside whatever transaction
the caller holds, and convert rows to the public shapes of :mod:`carnb.runs.records`.

Tables: ``runs`` (``seq`` gives creation order, so "newest first" never depends on the clock;
``next_index`` is the index the next record gets) and ``records`` (unique ``(run_id, idx)``;
``body`` the record's JSON fields besides index, kind and timestamp). ``records`` is a rowid
table on purpose: turns are often over 1 KiB, and in a ``WITHOUT ROWID`` table such rows spill
into overflow pages (measured: ~3x the pages written per turn).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from carnb import sqlite
from carnb.runs import records as rec

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL UNIQUE,
    agent_id TEXT NOT NULL,
    intent TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    next_index INTEGER NOT NULL,
    turn_count INTEGER NOT NULL DEFAULT 0,
    owner_session_id TEXT,
    owner_epoch TEXT,
    idem_scope TEXT,
    idempotency_key TEXT
);
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
RUN_KEYS = (
    "run_id",
    "agent_id",
    "intent",
    "status",
    "started_at",
    "ended_at",
    "next_index",
    "turn_count",
    "owner_session_id",
    "owner_epoch",
)
_RUN_COLS = ", ".join(RUN_KEYS)
SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
_SCHEMA = sqlite.Schema("run store", SCHEMA_VERSION, SCHEMA)


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


# -- runs ---------------------------------------------------------------------------------------
def fetch_run(conn: sqlite3.Connection, run_id: str) -> dict[str, Any] | None:
    r = conn.execute(f"SELECT {_RUN_COLS} FROM runs WHERE run_id=?", (run_id,)).fetchone()
    return None if r is None else dict(zip(RUN_KEYS, r, strict=True))


def find_idempotent(conn: sqlite3.Connection, scope: str, key: str) -> dict[str, str] | None:
    r = conn.execute(
        "SELECT run_id, agent_id FROM runs WHERE idem_scope=? AND idempotency_key=?",
        (scope, key),
    ).fetchone()
    return None if r is None else {"run_id": r[0], "agent_id": r[1]}


def insert_run(
    conn: sqlite3.Connection,
    *,
    run_id: str,
    agent_id: str,
    intent: str,
    ts: float,
    session_id: str,
    epoch: str,
    idem_scope: str | None,
    idempotency_key: str | None,
) -> None:
    """A new ``in_progress`` run whose ``started`` record (index 0) the caller appends."""
    conn.execute(
        "INSERT INTO runs (run_id, agent_id, intent, status, started_at, next_index, "
        "owner_session_id, owner_epoch, idem_scope, idempotency_key) "
        "VALUES (?,?,?,?,?,0,?,?,?,?)",
        (
            run_id,
            agent_id,
            intent,
            rec.IN_PROGRESS,
            ts,
            session_id,
            epoch,
            idem_scope,
            idempotency_key,
        ),
    )


def append(
    conn: sqlite3.Connection, run_id: str, base: int, kind: str, ts: float, bodies: Sequence[str]
) -> None:
    """Records ``base, base+1, ...`` of one kind (``bodies`` are JSON object texts)."""
    conn.executemany(
        "INSERT INTO records (run_id, idx, kind, ts, body) VALUES (?,?,?,?,?)",
        [(run_id, base + i, kind, ts, body) for i, body in enumerate(bodies)],
    )
    turns = len(bodies) if kind == rec.TURN else 0
    conn.execute(
        "UPDATE runs SET next_index=next_index+?, turn_count=turn_count+? WHERE run_id=?",
        (len(bodies), turns, run_id),
    )


def set_ended(conn: sqlite3.Connection, run_id: str, status: str, ts: float) -> None:
    conn.execute("UPDATE runs SET status=?, ended_at=? WHERE run_id=?", (status, ts, run_id))


def open_runs_of_session(conn: sqlite3.Connection, epoch: str, session_id: str) -> list[str]:
    rows = conn.execute(
        "SELECT run_id FROM runs WHERE owner_epoch=? AND owner_session_id=? AND status=? "
        "ORDER BY seq",
        (epoch, session_id, rec.IN_PROGRESS),
    )
    return [r[0] for r in rows]


def list_runs(
    conn: sqlite3.Connection,
    agent_id: str,
    *,
    only_session: tuple[str, str] | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Run rows of ``agent_id``, newest first; ``only_session=(epoch, session_id)`` filters."""
    q = f"SELECT {_RUN_COLS} FROM runs WHERE agent_id=?"
    args: tuple[Any, ...] = (agent_id,)
    if only_session is not None:
        q += " AND owner_epoch=? AND owner_session_id=?"
        args += only_session
    q += " ORDER BY seq DESC"
    if limit is not None:
        q += " LIMIT ?"
        args += (max(0, limit),)
    return [dict(zip(RUN_KEYS, r, strict=True)) for r in conn.execute(q, args)]


def run_counts_by_agent(conn: sqlite3.Connection) -> dict[str, int]:
    """How many runs each owner id has (every owner, ``name:`` labels included)."""
    rows = conn.execute("SELECT agent_id, COUNT(*) FROM runs GROUP BY agent_id ORDER BY agent_id")
    return {str(a): int(n) for a, n in rows}


# -- records ------------------------------------------------------------------------------------
def read_records(
    conn: sqlite3.Connection, run_id: str, after: int | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    q = "SELECT idx, kind, ts, body FROM records WHERE run_id=? AND idx>? ORDER BY idx"
    args: tuple[Any, ...] = (run_id, -1 if after is None else after)
    if limit is not None:
        q += " LIMIT ?"
        args += (max(0, limit),)
    return [rec.make_record(i, k, ts, json.loads(body)) for i, k, ts, body in conn.execute(q, args)]


def summary(row: dict[str, Any]) -> dict[str, Any]:
    """The public summary of a run row: what ``runs.list`` and ``authorize`` return."""
    return {
        "run_id": row["run_id"],
        "agent_id": row["agent_id"],
        "intent": row["intent"],
        "status": row["status"],
        "started_at": rec.iso(row["started_at"]),
        "ended_at": None if row["ended_at"] is None else rec.iso(row["ended_at"]),
        "turn_count": row["turn_count"],
    }

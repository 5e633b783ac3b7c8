"""The run store's SQL on PostgreSQL: the same functions as :mod:`carnb.runs.db`, on a :class:`Tx`.

No policy here (that is :class:`carnb.runs.RunStore`, shared by both stores). Tables mirror the
SQLite ones: ``carnb_runs`` (``seq`` gives creation order) and ``carnb_run_records`` (primary
key ``(run_id, idx)``; ``body`` the record's JSON text exactly as written). In a write
transaction :func:`fetch_run` locks the run's row (``FOR UPDATE``), so appends to one run from
several servers are serialised and indexes stay contiguous; :func:`find_idempotent` takes an
advisory lock on the key, so two servers starting the same idempotent run make one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from carnb.pgstore.schema import Component
from carnb.runs import records as rec
from carnb.runs.db import RUN_KEYS

SCHEMA = Component(
    "runs",
    (
        """
        CREATE TABLE carnb_runs (
            seq BIGSERIAL PRIMARY KEY,
            run_id TEXT NOT NULL UNIQUE,
            agent_id TEXT NOT NULL,
            intent TEXT NOT NULL,
            status TEXT NOT NULL,
            started_at DOUBLE PRECISION NOT NULL,
            ended_at DOUBLE PRECISION,
            next_index INTEGER NOT NULL,
            turn_count INTEGER NOT NULL DEFAULT 0,
            owner_session_id TEXT,
            owner_epoch TEXT,
            idem_scope TEXT,
            idempotency_key TEXT
        );
        CREATE INDEX carnb_runs_by_agent ON carnb_runs (agent_id, seq);
        CREATE INDEX carnb_runs_by_session ON carnb_runs (owner_epoch, owner_session_id, status);
        CREATE UNIQUE INDEX carnb_runs_idem ON carnb_runs (idem_scope, idempotency_key)
            WHERE idempotency_key IS NOT NULL;
        CREATE TABLE carnb_run_records (
            run_id TEXT NOT NULL,
            idx INTEGER NOT NULL,
            kind TEXT NOT NULL,
            ts DOUBLE PRECISION NOT NULL,
            body TEXT NOT NULL,
            PRIMARY KEY (run_id, idx)
        );
        """,
    ),
)
_RUN_COLS = ", ".join(RUN_KEYS)


@dataclass
class Tx:
    """A connection in a transaction; ``write`` locks the rows it reads, ``appended`` collects
    ``(run_id, first, last, ended)`` of the records written (to notify other servers)."""

    conn: psycopg.Connection[Any]
    write: bool = False
    appended: list[tuple[str, int, int, bool]] = field(default_factory=list)


def fetch_run(tx: Tx, run_id: str) -> dict[str, Any] | None:
    lock = " FOR UPDATE" if tx.write else ""
    r = tx.conn.execute(
        f"SELECT {_RUN_COLS} FROM carnb_runs WHERE run_id = %s{lock}",
        (run_id,),
    ).fetchone()
    return None if r is None else dict(zip(RUN_KEYS, r, strict=True))


def find_idempotent(tx: Tx, scope: str, key: str) -> dict[str, str] | None:
    tx.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"{scope}\x1f{key}",))
    r = tx.conn.execute(
        "SELECT run_id, agent_id FROM carnb_runs WHERE idem_scope = %s AND idempotency_key = %s",
        (scope, key),
    ).fetchone()
    return None if r is None else {"run_id": r[0], "agent_id": r[1]}


def insert_run(
    tx: Tx,
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
    tx.conn.execute(
        "INSERT INTO carnb_runs (run_id, agent_id, intent, status, started_at, next_index, "
        "owner_session_id, owner_epoch, idem_scope, idempotency_key) "
        "VALUES (%s, %s, %s, %s, %s, 0, %s, %s, %s, %s)",
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


def append(tx: Tx, run_id: str, base: int, kind: str, ts: float, bodies: Sequence[str]) -> None:
    with tx.conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO carnb_run_records (run_id, idx, kind, ts, body) "
            "VALUES (%s, %s, %s, %s, %s)",
            [(run_id, base + i, kind, ts, body) for i, body in enumerate(bodies)],
        )
    turns = len(bodies) if kind == rec.TURN else 0
    tx.conn.execute(
        "UPDATE carnb_runs SET next_index = next_index + %s, turn_count = turn_count + %s "
        "WHERE run_id = %s",
        (len(bodies), turns, run_id),
    )
    tx.appended.append((run_id, base, base + len(bodies) - 1, kind == rec.ENDED))


def set_ended(tx: Tx, run_id: str, status: str, ts: float) -> None:
    tx.conn.execute(
        "UPDATE carnb_runs SET status = %s, ended_at = %s WHERE run_id = %s", (status, ts, run_id)
    )


def open_runs_of_session(tx: Tx, epoch: str, session_id: str) -> list[str]:
    rows = tx.conn.execute(
        "SELECT run_id FROM carnb_runs WHERE owner_epoch = %s AND owner_session_id = %s "
        "AND status = %s ORDER BY seq",
        (epoch, session_id, rec.IN_PROGRESS),
    ).fetchall()
    return [r[0] for r in rows]


def list_runs(
    tx: Tx,
    agent_id: str,
    *,
    only_session: tuple[str, str] | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    q = f"SELECT {_RUN_COLS} FROM carnb_runs WHERE agent_id = %s"
    args: tuple[Any, ...] = (agent_id,)
    if only_session is not None:
        q += " AND owner_epoch = %s AND owner_session_id = %s"
        args += only_session
    q += " ORDER BY seq DESC"
    if limit is not None:
        q += " LIMIT %s"
        args += (max(0, limit),)
    rows = tx.conn.execute(q, args).fetchall()
    return [dict(zip(RUN_KEYS, r, strict=True)) for r in rows]


def read_records(
    tx: Tx,
    run_id: str,
    after: int | None = None,
    limit: int | None = None,
    *,
    upto: int | None = None,
) -> list[dict[str, Any]]:
    """Records with index > ``after`` (and <= ``upto``), at most ``limit``, in index order."""
    q = "SELECT idx, kind, ts, body FROM carnb_run_records WHERE run_id = %s AND idx > %s"
    args: tuple[Any, ...] = (run_id, -1 if after is None else after)
    if upto is not None:
        q += " AND idx <= %s"
        args += (upto,)
    q += " ORDER BY idx"
    if limit is not None:
        q += " LIMIT %s"
        args += (max(0, limit),)
    rows = tx.conn.execute(q, args).fetchall()
    return [rec.make_record(i, k, ts, json.loads(body)) for i, k, ts, body in rows]


def run_agent(tx: Tx, run_id: str) -> str | None:
    r = tx.conn.execute("SELECT agent_id FROM carnb_runs WHERE run_id = %s", (run_id,)).fetchone()
    return None if r is None else str(r[0])


def run_counts_by_agent(tx: Tx) -> dict[str, int]:
    """How many runs each owner id has (every owner, ``name:`` labels included)."""
    rows = tx.conn.execute(
        "SELECT agent_id, COUNT(*) FROM carnb_runs GROUP BY agent_id ORDER BY agent_id"
    ).fetchall()
    return {str(a): int(n) for a, n in rows}

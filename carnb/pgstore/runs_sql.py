"""The run store's SQL on PostgreSQL: :class:`PgRunTx`, the :class:`carnb.runs.backend.RunTx`
of a PostgreSQL transaction.

No policy here (that is :class:`carnb.runs.RunStore`, shared by both stores). Tables mirror the
SQLite ones: ``carnb_runs`` (``seq`` gives creation order) and ``carnb_run_records`` (primary
key ``(run_id, idx)``; ``body`` the record's JSON text exactly as written). In a write
transaction :meth:`PgRunTx.fetch_run` locks the run's row (``FOR UPDATE``), so appends to one
run from several servers are serialised and indexes stay contiguous;
:meth:`PgRunTx.find_idempotent` takes an advisory lock on the key, so two servers starting the
same idempotent run make one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from carnb.pgstore.schema import Component
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

SCHEMA = Component(
    "runs",
    (
        f"""
        CREATE TABLE carnb_runs {run_columns("BIGSERIAL PRIMARY KEY", "DOUBLE PRECISION")};
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
        f"ALTER TABLE carnb_runs ADD COLUMN {FORKED_FROM_COLUMN}",
    ),
)


@dataclass
class PgRunTx:
    """A connection in a transaction; ``write`` locks the rows it reads, ``appended`` collects
    ``(run_id, first, last, ended)`` of the records written (to notify other servers)."""

    conn: psycopg.Connection[Any]
    write: bool = False
    appended: list[tuple[str, int, int, bool]] = field(default_factory=list)

    def fetch_run(self, run_id: str) -> Row | None:
        lock = " FOR UPDATE" if self.write else ""
        r = self.conn.execute(
            f"SELECT {RUN_COLUMNS} FROM carnb_runs WHERE run_id = %s{lock}", (run_id,)
        ).fetchone()
        return None if r is None else run_row(r)

    def find_idempotent(self, scope: str, key: str) -> tuple[str, str] | None:
        self.conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"{scope}\x1f{key}",)
        )
        r = self.conn.execute(
            "SELECT run_id, agent_id FROM carnb_runs "
            "WHERE idem_scope = %s AND idempotency_key = %s",
            (scope, key),
        ).fetchone()
        return None if r is None else (str(r[0]), str(r[1]))

    def insert_run(self, run: NewRun) -> None:
        marks = ", ".join(["%s"] * len(run.values()))
        self.conn.execute(
            f"INSERT INTO carnb_runs ({NewRun.COLUMNS}) VALUES ({marks})", run.values()
        )

    def append(self, run_id: str, base: int, kind: str, ts: float, bodies: Sequence[str]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO carnb_run_records (run_id, idx, kind, ts, body) "
                "VALUES (%s, %s, %s, %s, %s)",
                [(run_id, base + i, kind, ts, body) for i, body in enumerate(bodies)],
            )
        turns = len(bodies) if kind == rec.TURN else 0
        self.conn.execute(
            "UPDATE carnb_runs SET next_index = next_index + %s, turn_count = turn_count + %s "
            "WHERE run_id = %s",
            (len(bodies), turns, run_id),
        )
        self.appended.append((run_id, base, base + len(bodies) - 1, kind == rec.ENDED))

    def set_ended(self, run_id: str, status: str, ts: float) -> None:
        self.conn.execute(
            "UPDATE carnb_runs SET status = %s, ended_at = %s WHERE run_id = %s",
            (status, ts, run_id),
        )

    def open_runs_of_session(self, epoch: str, client_id: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT run_id FROM carnb_runs WHERE owner_epoch = %s AND owner_session_id = %s "
            "AND status = %s ORDER BY seq",
            (epoch, client_id, rec.IN_PROGRESS),
        ).fetchall()
        return [r[0] for r in rows]

    def list_runs(self, agent_id: str, only: Session | None, limit: int | None) -> list[Row]:
        mine = "" if only is None else " AND owner_epoch = %s AND owner_session_id = %s"
        rows = self.conn.execute(
            f"SELECT {RUN_COLUMNS} FROM carnb_runs WHERE agent_id = %s{mine} "
            "ORDER BY seq DESC LIMIT %s",
            (agent_id, *(only or ()), limit),
        ).fetchall()
        return [run_row(r) for r in rows]

    def read_records(
        self, run_id: str, after: int, limit: int | None, *, upto: int | None = None
    ) -> list[dict[str, Any]]:
        """Also bounded by ``upto`` (records with index <= it) when given."""
        below = "" if upto is None else " AND idx <= %s"
        rows = self.conn.execute(
            "SELECT idx, kind, ts, body FROM carnb_run_records WHERE run_id = %s AND idx > %s"
            f"{below} ORDER BY idx LIMIT %s",
            (run_id, after, *(() if upto is None else (upto,)), limit),
        ).fetchall()
        return [rec.make_record(i, k, ts, json.loads(body)) for i, k, ts, body in rows]

    def run_agent(self, run_id: str) -> str | None:
        r = self.conn.execute(
            "SELECT agent_id FROM carnb_runs WHERE run_id = %s", (run_id,)
        ).fetchone()
        return None if r is None else str(r[0])

    def run_counts_by_agent(self) -> dict[str, int]:
        rows = self.conn.execute(
            "SELECT agent_id, COUNT(*) FROM carnb_runs GROUP BY agent_id ORDER BY agent_id"
        ).fetchall()
        return {str(a): int(n) for a, n in rows}

    def model_turn_usage(self, after: Any, span: int) -> tuple[list[tuple[Any, ...]], Any]:
        start = tuple(after or ("", -1))  # the last record read, in primary key order
        end = self.conn.execute(
            "SELECT run_id, idx FROM carnb_run_records WHERE (run_id, idx) > (%s, %s) "
            "ORDER BY run_id, idx OFFSET %s LIMIT 1",
            (*start, span - 1),
        ).fetchone()
        upto = "" if end is None else " AND (m.run_id, m.idx) <= (%s, %s)"
        usage = "m.body::jsonb -> 'token_usage' -> '{}'"
        # a positive integer: JSON text of digits only (5.0 and -3 count 0, as on SQLite)
        count = "SUM(CASE WHEN ({0})::text ~ '^[0-9]+$' THEN ({0})::text::bigint ELSE 0 END)"
        rows = self.conn.execute(
            "SELECT r.agent_id, m.run_id, CASE WHEN jsonb_typeof(m.body::jsonb -> 'model_id') "
            "= 'string' THEN m.body::jsonb ->> 'model_id' END AS model, COUNT(*), "
            f"{count.format(usage.format('input_tokens'))}, "
            f"{count.format(usage.format('output_tokens'))} "
            "FROM carnb_run_records m JOIN carnb_runs r ON r.run_id = m.run_id "
            f"WHERE m.kind = 'model_turn' AND (m.run_id, m.idx) > (%s, %s){upto} "
            "GROUP BY r.agent_id, m.run_id, model",
            (*start, *(() if end is None else end)),
        ).fetchall()
        return [tuple(r) for r in rows], None if end is None else tuple(end)

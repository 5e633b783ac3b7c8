"""Approvals shared by every server of a PostgreSQL store (``carnb_approvals``).

The same rows as the SQLite ledger (:mod:`carnb.ledger.sqlite`): id, status, created_at and
the approval's JSON body; the application (:mod:`carnb.app.approvals`) decides what they mean.
"""

from __future__ import annotations

import json
from typing import Any

from carnb.pgstore.database import Database
from carnb.pgstore.schema import Component, migrate

SCHEMA = Component(
    "approvals",
    (
        """
        CREATE TABLE carnb_approvals (
            id TEXT PRIMARY KEY,
            status TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            body TEXT NOT NULL
        );
        CREATE INDEX carnb_approvals_by_status ON carnb_approvals (status, created_at)
        """,
    ),
)


class PgLedger:
    """:class:`carnb.app.ports.ApprovalStore` on a PostgreSQL store."""

    def __init__(self, db: Database) -> None:
        self.db = db
        migrate(db, SCHEMA)

    def put(self, approval: dict[str, Any]) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO carnb_approvals (id, status, created_at, body) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO UPDATE "
                "SET status = EXCLUDED.status, body = EXCLUDED.body",
                (approval["id"], approval["status"], approval["created_at"], json.dumps(approval)),
            )

    def get(self, approval_id: str) -> dict[str, Any] | None:
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT body FROM carnb_approvals WHERE id = %s", (approval_id,)
            ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def list(self, *, pending_only: bool, limit: int) -> list[dict[str, Any]]:
        where = "WHERE status = 'pending'" if pending_only else ""
        with self.db.transaction() as conn:
            rows = conn.execute(
                f"SELECT body FROM (SELECT body, created_at FROM carnb_approvals {where} "
                "ORDER BY created_at DESC LIMIT %s) AS recent ORDER BY created_at",
                (limit,),
            ).fetchall()
        return [dict(json.loads(r[0])) for r in rows]

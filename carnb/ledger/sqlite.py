"""Approvals in ``approvals.sqlite3``: one row per approval, its JSON body beside its status.

Thread-safe (a lock around the one connection); every call is one short statement, made from a
worker thread by the application. The file is made by the first approval: a server nobody asks
for one leaves none behind.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from carnb.sqlite import Schema, connect

SCHEMA = Schema(
    label="approval ledger file",
    version=1,
    create=(
        "CREATE TABLE approvals (id TEXT PRIMARY KEY, status TEXT NOT NULL, "
        "created_at REAL NOT NULL, body TEXT NOT NULL);"
        "CREATE INDEX approvals_by_status ON approvals (status, created_at)"
    ),
)


class SqliteLedger:
    """:class:`carnb.app.ports.ApprovalStore` in a SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _open(self, *, create: bool) -> sqlite3.Connection | None:
        """The connection (the lock held); None while there is no file and ``create`` is false."""
        if self._conn is None and (create or self.path.exists()):
            self._conn = connect(self.path, SCHEMA, timeout_s=5.0, pragmas=("synchronous = FULL",))
        return self._conn

    def put(self, approval: dict[str, Any]) -> None:
        with self._lock:
            conn = self._open(create=True)
            assert conn is not None
            conn.execute(
                "INSERT INTO approvals (id, status, created_at, body) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET status = excluded.status, body = excluded.body",
                (approval["id"], approval["status"], approval["created_at"], json.dumps(approval)),
            )

    def get(self, approval_id: str) -> dict[str, Any] | None:
        with self._lock:
            conn = self._open(create=False)
            if conn is None:
                return None
            row = conn.execute("SELECT body FROM approvals WHERE id = ?", (approval_id,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def list(self, *, pending_only: bool, limit: int) -> list[dict[str, Any]]:
        where = "WHERE status = 'pending'" if pending_only else ""
        with self._lock:
            conn = self._open(create=False)
            if conn is None:
                return []
            rows = conn.execute(
                f"SELECT body FROM (SELECT body, created_at FROM approvals {where} "
                "ORDER BY created_at DESC LIMIT ?) ORDER BY created_at",
                (limit,),
            ).fetchall()
        return [dict(json.loads(r[0])) for r in rows]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

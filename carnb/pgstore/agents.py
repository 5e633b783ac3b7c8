"""Agent identities shared by every server of a PostgreSQL store: tokens as salted hashes.

Theory of operation: ``carnb_agents`` holds, per agent, a random 16-byte salt and
``sha256(salt + token)``; never the token. A token is 256 random bits (``secrets``), so a slow
password hash would add nothing against guessing. :meth:`PgAgentDirectory.claim` inserts a new
agent (``ON CONFLICT DO NOTHING``: the first server wins) and notifies ``carnb_agents``.
Checks (``session.auth``) never touch the database: every server keeps the hashes in memory,
loaded at start, updated by the notification and reloaded after a reconnect, so a session's
authentication never waits for PostgreSQL.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
from typing import Any

from carnb.pgstore.database import Database
from carnb.pgstore.notify import Notifications
from carnb.pgstore.schema import Component, migrate

log = logging.getLogger("carnb.pgstore.agents")

CHANNEL = "carnb_agents"
SCHEMA = Component(
    "agents",
    (
        """
        CREATE TABLE carnb_agents (
            agent_id TEXT PRIMARY KEY,
            salt BYTEA NOT NULL,
            token_hash BYTEA NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """,
    ),
)


def token_hash(salt: bytes, token: str) -> bytes:
    return hashlib.sha256(salt + token.encode("utf-8")).digest()


class PgAgentDirectory:
    """:class:`carnb.protocol.auth.AgentDirectory` on a PostgreSQL store."""

    def __init__(self, db: Database, notifications: Notifications) -> None:
        self.db = db
        self._hashes: dict[str, tuple[bytes, bytes]] = {}
        self._lock = threading.Lock()
        migrate(db, SCHEMA)
        self.reload()
        notifications.on(CHANNEL, self._on_notify)
        notifications.on_reconnect(self.reload)

    def reload(self) -> None:
        with self.db.transaction() as conn:
            rows = conn.execute("SELECT agent_id, salt, token_hash FROM carnb_agents").fetchall()
        with self._lock:
            self._hashes = {r[0]: (bytes(r[1]), bytes(r[2])) for r in rows}

    def _on_notify(self, note: dict[str, Any]) -> None:
        agent_id = note.get("agent_id")
        if not isinstance(agent_id, str):
            return
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT salt, token_hash FROM carnb_agents WHERE agent_id = %s", (agent_id,)
            ).fetchone()
        if row is not None:
            with self._lock:
                self._hashes[agent_id] = (bytes(row[0]), bytes(row[1]))

    def claim(self, agent_id: str, token: str) -> bool:
        salt = secrets.token_bytes(16)
        digest = token_hash(salt, token)
        with self.db.transaction() as conn:
            row = conn.execute(
                "INSERT INTO carnb_agents (agent_id, salt, token_hash) VALUES (%s, %s, %s) "
                "ON CONFLICT (agent_id) DO NOTHING RETURNING agent_id",
                (agent_id, salt, digest),
            ).fetchone()
            if row is not None:
                conn.execute(
                    "SELECT pg_notify(%s, %s)", (CHANNEL, json.dumps({"agent_id": agent_id}))
                )
        if row is None:
            self._on_notify({"agent_id": agent_id})  # learn the winner's hash now
            return False
        with self._lock:
            self._hashes[agent_id] = (salt, digest)
        log.info("agent %s registered in the team store", agent_id)
        return True

    def verify(self, agent_id: str, token: str) -> bool:
        with self._lock:
            entry = self._hashes.get(agent_id)
        if entry is None:
            return False
        salt, digest = entry
        return hmac.compare_digest(token_hash(salt, token), digest)

    def known(self, agent_id: str) -> bool:
        with self._lock:
            return agent_id in self._hashes

    def ids(self) -> list[str]:
        with self._lock:
            return sorted(self._hashes)

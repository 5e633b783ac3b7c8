"""Host events shared by the servers of a PostgreSQL store.

Theory of operation: each server keeps its own sequenced :class:`carnb.app.events.HostEvents`
log (what ``host.subscribe`` returns and streams). :class:`HostEventBridge` watches it and
writes each event born on this server to ``carnb_host_events`` (a background thread with a
bounded queue, so the thread that emitted never waits for PostgreSQL), with ``NOTIFY
carnb_events {id, o}``. Every other server reads the row and emits it into its own log with
``payload.server`` naming where it happened. ``run.*`` events are not bridged: every server
already derives them from the shared run store's records.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import uuid
from typing import Any, Protocol

from carnb.pgstore.database import Database
from carnb.pgstore.notify import Notifications
from carnb.pgstore.schema import Component, migrate

log = logging.getLogger("carnb.pgstore.events")

CHANNEL = "carnb_events"
LOCAL_ONLY_PREFIX = "run."
QUEUE_MAX = 1000
SCHEMA = Component(
    "events",
    (
        """
        CREATE TABLE carnb_host_events (
            id BIGSERIAL PRIMARY KEY,
            origin TEXT NOT NULL,
            server TEXT NOT NULL,
            kind TEXT NOT NULL,
            agent_id TEXT,
            message TEXT NOT NULL,
            payload TEXT NOT NULL,
            ts DOUBLE PRECISION NOT NULL
        )
        """,
    ),
)


class EventLog(Protocol):
    """What the bridge needs of :class:`carnb.app.events.HostEvents`."""

    def emit(
        self,
        kind: str,
        *,
        agent_id: str | None = ...,
        message: str = ...,
        payload: dict[str, Any] | None = ...,
    ) -> dict[str, Any]: ...

    def watch(self, fn: Any) -> Any: ...


class HostEventBridge:
    def __init__(
        self, db: Database, notifications: Notifications, events: EventLog, server: str
    ) -> None:
        self.db = db
        self.events = events
        self.server = server  # shown to the other servers, e.g. "host:port"
        self.origin = uuid.uuid4().hex
        self._replaying = threading.local()
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(QUEUE_MAX)
        migrate(db, SCHEMA)
        notifications.on(CHANNEL, self._on_notify)
        self._unwatch = events.watch(self._on_local)
        self._writer = threading.Thread(
            target=self._write_loop, name="carnb-pg-events", daemon=True
        )
        self._writer.start()

    def close(self) -> None:
        self._unwatch()
        self._queue.put(None)
        self._writer.join(timeout=5)

    # -- this server's events -> the store ------------------------------------------------------
    def _on_local(self, event: dict[str, Any]) -> None:
        if getattr(self._replaying, "on", False) or event["kind"].startswith(LOCAL_ONLY_PREFIX):
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            log.warning("host event %s not shared: PostgreSQL is behind", event["kind"])

    def _write_loop(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                return
            try:
                with self.db.transaction() as conn:
                    row = conn.execute(
                        "INSERT INTO carnb_host_events (origin, server, kind, agent_id, message, "
                        "payload, ts) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
                        (
                            self.origin,
                            self.server,
                            event["kind"],
                            event.get("agent_id"),
                            event.get("message") or "",
                            json.dumps(event.get("payload") or {}),
                            event["timestamp"],
                        ),
                    ).fetchone()
                    assert row is not None
                    note = json.dumps({"id": row[0], "o": self.origin})
                    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, note))
            except Exception as exc:
                log.warning("host event %s not shared: %s", event["kind"], exc)

    # -- other servers' events -> this server's log ---------------------------------------------
    def _on_notify(self, note: dict[str, Any]) -> None:
        if note.get("o") == self.origin or not isinstance(note.get("id"), int):
            return
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT server, kind, agent_id, message, payload FROM carnb_host_events "
                "WHERE id = %s",
                (note["id"],),
            ).fetchone()
        if row is None:
            return
        server, kind, agent_id, message, payload = row
        self._replaying.on = True
        try:
            self.events.emit(
                kind,
                agent_id=agent_id,
                message=f"{message} (on {server})",
                payload={**json.loads(payload), "server": server},
            )
        finally:
            self._replaying.on = False

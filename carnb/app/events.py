"""Host events: a bounded, sequenced log of what happens on the server, pushed live to
subscribed sessions as ``host.event`` notifications (docs/protocol.md "Agents and host").

Thread-safe: :meth:`HostEvents.emit` may be called from any thread; delivery to sessions
happens through each session's ``notifier``, which the server makes loop-safe.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from carnb.config import EVENTS_KEPT
from carnb.protocol.session import ClientSession

log = logging.getLogger("carnb.app.events")

SESSION_ATTACHED = "session.attached"
SESSION_DETACHED = "session.detached"
AGENT_ATTACHED = "agent.attached"
AGENT_DETACHED = "agent.detached"
RUN_STARTED = "run.started"
RUN_ENDED = "run.ended"


class HostEvents:
    def __init__(self, maxlen: int = EVENTS_KEPT) -> None:
        self._log: deque[dict[str, Any]] = deque(maxlen=maxlen)
        self._seq = itertools.count(1)
        self._sequence = 0
        self._subscribers: dict[str, ClientSession] = {}
        self._watchers: list[Callable[[dict[str, Any]], None]] = []
        self._lock = threading.Lock()

    @property
    def sequence(self) -> int:
        return self._sequence

    def emit(
        self,
        kind: str,
        *,
        agent_id: str | None = None,
        message: str = "",
        payload: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            seq = next(self._seq)
            self._sequence = seq
            event = {
                "id": f"ev-{seq}",
                "sequence": seq,
                "timestamp": time.time(),
                "kind": kind,
                "agent_id": agent_id,
                "message": message,
                "payload": payload or {},
            }
            self._log.append(event)
            subscribers = list(self._subscribers.values())
            watchers = list(self._watchers)
        for session in subscribers:
            if session.notifier is not None and not session.closed:
                session.notifier("host.event", event)
        for fn in watchers:
            try:
                fn(event)
            except Exception:
                log.exception("host event watcher failed")
        return event

    def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            items = list(self._log)
        return items[-limit:] if limit > 0 else []

    def subscribe(self, session: ClientSession) -> None:
        with self._lock:
            self._subscribers[session.client_id] = session

    def unsubscribe(self, session: ClientSession) -> bool:
        with self._lock:
            return self._subscribers.pop(session.client_id, None) is not None

    def watch(self, fn: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """In-process observer (e.g. the notebook panel). Returns a remover."""
        with self._lock:
            self._watchers.append(fn)

        def remove() -> None:
            with self._lock:
                if fn in self._watchers:
                    self._watchers.remove(fn)

        return remove

"""Who is subscribed to which run's ``runs.trace.event`` notifications, and what they have seen."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from carnb.protocol.session import ClientSession


@dataclass
class _Watcher:
    session: ClientSession
    seen: int | None = None  # the last cursor this session has (None: snapshot not read yet)
    held: list[dict[str, Any]] = field(default_factory=list)  # events before the snapshot


class RunSubscriptions:
    """run_id -> sessions subscribed to it, each with the cursor it has already seen.

    Thread-safe (store listeners run in whichever thread wrote, or a store's own thread). A
    session is registered *before* its snapshot is read, with an unknown cursor, so no record
    can fall between the snapshot and the first notification. Events that arrive before the
    snapshot's cursor is known are held, and :meth:`seen` hands back those the snapshot does
    not hold (a store may announce a record after the snapshot already read it).
    """

    def __init__(self) -> None:
        self._by_run: dict[str, dict[str, _Watcher]] = {}  # run -> client -> watcher
        self._lock = threading.Lock()

    def add(self, run_id: str, s: ClientSession) -> None:
        with self._lock:
            self._by_run.setdefault(run_id, {})[s.client_id] = _Watcher(s)

    def watching(self, run_id: str) -> bool:
        """Is any session subscribed to ``run_id``?"""
        with self._lock:
            return bool(self._by_run.get(run_id))

    def seen(self, run_id: str, s: ClientSession, cursor: int) -> list[dict[str, Any]]:
        """The snapshot up to ``cursor`` was read: the held events after it, to send now."""
        with self._lock:
            entry = self._by_run.get(run_id, {}).get(s.client_id)
            if entry is None:
                return []
            held, entry.held = entry.held, []
            if entry.seen is None or cursor > entry.seen:
                entry.seen = cursor
            out = []
            for event in held:
                if event["cursor"] > entry.seen:
                    entry.seen = event["cursor"]
                    out.append(event)
            return out

    def remove(self, run_id: str, s: ClientSession) -> bool:
        with self._lock:
            subs = self._by_run.get(run_id)
            if not subs or s.client_id not in subs:
                return False
            del subs[s.client_id]
            if not subs:
                del self._by_run[run_id]
            return True

    def drop_session(self, s: ClientSession) -> None:
        with self._lock:
            for run_id in list(self._by_run):
                self._by_run[run_id].pop(s.client_id, None)
                if not self._by_run[run_id]:
                    del self._by_run[run_id]

    def due(
        self, run_id: str, cursor: int, event: dict[str, Any] | None = None
    ) -> list[ClientSession]:
        """Sessions that have not seen ``cursor`` yet (and mark it seen for them); with
        ``event``, sessions still reading their snapshot hold it for :meth:`seen` instead."""
        out = []
        with self._lock:
            for entry in self._by_run.get(run_id, {}).values():
                if entry.seen is None and event is not None:
                    entry.held.append(event)
                elif entry.seen is None or cursor > entry.seen:
                    entry.seen = cursor
                    out.append(entry.session)
        return out

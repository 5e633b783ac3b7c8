"""One LISTEN connection per server: PostgreSQL notifications to in-process callbacks.

Theory of operation: a daemon thread holds a dedicated autocommit connection, LISTENs on every
channel that has a callback and waits for notifications (in slices of ``poll_s``, so
:meth:`Notifications.close` returns promptly). Callbacks run in that thread, in the order
PostgreSQL delivers (commit order), and must be quick. When the connection breaks (PostgreSQL
restarted), the thread reconnects with a growing pause (up to 2 s) and then calls every
``on_reconnect`` callback, whose job is to catch up on what was committed meanwhile:
notifications sent while nobody listened are lost by design of LISTEN/NOTIFY.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import psycopg

from carnb.pgstore.setting import StoreSetting

log = logging.getLogger("carnb.pgstore.notify")

Callback = Callable[[dict[str, Any]], None]


class Notifications:
    def __init__(self, setting: StoreSetting, *, poll_s: float = 0.05) -> None:
        self._setting = setting
        self._poll_s = poll_s
        self._callbacks: dict[str, list[Callback]] = {}
        self._reconnects: list[Callable[[], None]] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = False

    def on(self, channel: str, fn: Callback) -> None:
        """Call ``fn(payload)`` for each JSON notification on ``channel`` (register before
        :meth:`start`)."""
        self._callbacks.setdefault(channel, []).append(fn)

    def on_reconnect(self, fn: Callable[[], None]) -> None:
        self._reconnects.append(fn)

    def start(self, wait_s: float = 5.0) -> None:
        """Start listening; returns once LISTEN is in place (or after ``wait_s``)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="carnb-pg-listen", daemon=True)
            self._thread.start()
        self._ready.wait(wait_s)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        pause, first = 0.05, True
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self._setting.dsn,
                    autocommit=True,
                    connect_timeout=2,
                    application_name="carnb-listen",
                ) as conn:
                    for channel in self._callbacks:
                        conn.execute(f"LISTEN {channel}")
                    self.connected, pause = True, 0.05
                    self._ready.set()
                    if not first:
                        log.warning("PostgreSQL store %s: listening again", self._setting.display())
                        self._call_reconnects()
                    first = False
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=self._poll_s):
                            self._dispatch(note.channel, note.payload)
            except psycopg.Error as exc:
                if self.connected:
                    log.warning(
                        "PostgreSQL store %s: notifications interrupted (%s); reconnecting",
                        self._setting.display(),
                        type(exc).__name__,
                    )
                self.connected = False
                self._stop.wait(pause)
                pause = min(2.0, pause * 2)
        self.connected = False

    def _dispatch(self, channel: str, payload: str) -> None:
        try:
            data = json.loads(payload)
        except ValueError:
            log.warning("ignored a malformed notification on %s", channel)
            return
        for fn in self._callbacks.get(channel, ()):
            try:
                fn(data)
            except Exception:
                log.exception("notification callback on %s failed", channel)

    def _call_reconnects(self) -> None:
        for fn in self._reconnects:
            try:
                fn()
            except Exception:
                log.exception("catch-up after reconnecting failed")

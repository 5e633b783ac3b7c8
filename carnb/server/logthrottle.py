"""Rate limits for repeated log records, so a flood of peers cannot flood the log.

Theory of operation. A :class:`Throttle` lets through the first ``burst`` records of one kind
(same logger, message template and exception type) in each ``window`` seconds and counts the
rest; the next record of that kind let through says how many were left out. It is used twice:
as the server loop's exception handler (asyncio reports each failed ``accept()`` there, with a
traceback, thousands of times a second when file handles run out) and as a filter on the
server's wire logger.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("carnb.server.loop")

Key = tuple[str, str, str]


class Throttle:
    def __init__(
        self, burst: int = 5, window: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.burst = burst
        self.window = window
        self.clock = clock
        self._seen: dict[Key, tuple[float, int, int]] = {}  # start, let through, held back
        self._lock = threading.Lock()

    def admit(self, key: Key) -> int | None:
        """``None``: drop this record; else let it through, with the count held back before."""
        now = self.clock()
        with self._lock:
            if len(self._seen) > 1000:  # many kinds: forget those whose window has passed
                self._seen = {
                    k: v for k, v in self._seen.items() if now - v[0] < self.window or v[2]
                }
            start, passed, held = self._seen.get(key, (now, 0, 0))
            if now - start >= self.window:
                start, passed = now, 0
            if passed >= self.burst:
                self._seen[key] = (start, passed, held + 1)
                return None
            self._seen[key] = (start, passed + 1, 0)
            return held


class ThrottleFilter(logging.Filter):
    """A logging filter that drops repeated warnings, errors and tracebacks beyond the
    throttle and notes how many it dropped (plain INFO/DEBUG records, which only show when
    asked for, pass)."""

    def __init__(self, throttle: Throttle | None = None) -> None:
        super().__init__()
        self.throttle = throttle or Throttle()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING and not record.exc_info:
            return True
        exc = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else ""
        held = self.throttle.admit((record.name, str(record.msg), exc))
        if held is None:
            return False
        if held:
            record.msg = f"{record.msg} ({held} more like this left out of the log)"
        return True


def loop_exception_handler(
    throttle: Throttle | None = None,
) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
    """An exception handler for the server's loop: asyncio's default report, throttled."""
    limiter = throttle or Throttle()

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        key = ("asyncio", str(context.get("message", "")), type(exc).__name__ if exc else "")
        held = limiter.admit(key)
        if held is None:
            return
        if held:
            log.warning("%d more %r reports were left out of the log", held, key[1])
        loop.default_exception_handler(context)

    return handle

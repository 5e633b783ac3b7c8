"""Work the application runs in the background for a session (``runs.fork`` drivers): the
tasks, how many each session has running, and cancelling them all when the server closes."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class Background:
    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()
        self.running: dict[str, int] = {}  # client_id -> tasks of that session running

    def start(self, owner: str, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        self.running[owner] = self.running.get(owner, 0) + 1

        def done(t: asyncio.Task[None]) -> None:
            self.tasks.discard(t)
            left = self.running.get(owner, 1) - 1
            if left:
                self.running[owner] = left
            else:
                self.running.pop(owner, None)

        task.add_done_callback(done)
        return task

    async def close(self) -> None:
        """Cancel every task and wait for them to end (each ends its own work)."""
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

"""One worker thread for the server's bulk work (parsing big frames, building large replies,
reading trace pages), shared fairly by the sessions.

Why one thread: the event loop shares the GIL with every worker thread, and each thread that is
busy at the same time adds up to a switch interval to every GIL hand-off the loop needs, so four
threads encoding megabytes at once slow every other client's round trip several-fold. The loop
competes with at most one bulk job.

Why fair: jobs are queued per owner (a session) and the thread takes them round robin, one job
per owner in turn. A session with many big jobs queued delays another session's job by at most
one job of its own, however many it sent. Each job is bounded (frame caps, reply pieces), so one
turn is short.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import weakref
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="carnb-bulk")


@dataclass
class _Job:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    done: asyncio.Future[Any]


class BulkLane:
    """The round-robin queue in front of the bulk thread, for one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queues: dict[Hashable, deque[_Job]] = {}
        self._turns: deque[Hashable] = deque()  # owners with queued jobs, next first
        self._busy = False

    async def run(self, owner: Hashable, fn: Callable[..., T], *args: Any) -> T:
        job = _Job(fn, args, self._loop.create_future())
        queue = self._queues.get(owner)
        if queue is None:
            queue = self._queues[owner] = deque()
            self._turns.append(owner)
        queue.append(job)
        self._next()
        result: T = await job.done
        return result

    def queued(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def _next(self) -> None:
        while not self._busy and self._turns:
            owner = self._turns.popleft()
            queue = self._queues[owner]
            job = queue.popleft()
            if queue:
                self._turns.append(owner)  # its next job waits for everyone else's turn
            else:
                del self._queues[owner]
            if job.done.cancelled():  # its caller went away before its turn
                continue
            self._busy = True
            work = _EXECUTOR.submit(job.fn, *job.args)
            work.add_done_callback(functools.partial(self._from_thread, job))

    def _from_thread(self, job: _Job, work: Future[Any]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            self._loop.call_soon_threadsafe(self._finished, work, job)

    def _finished(self, work: Future[Any], job: _Job) -> None:
        self._busy = False
        if not job.done.cancelled():
            exc = work.exception()
            if exc is not None:
                job.done.set_exception(exc)
            else:
                job.done.set_result(work.result())
        self._next()


_LANES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, BulkLane] = weakref.WeakKeyDictionary()


def lane() -> BulkLane:
    """The running loop's lane."""
    loop = asyncio.get_running_loop()
    found = _LANES.get(loop)
    if found is None:
        found = _LANES[loop] = BulkLane(loop)
    return found


async def run_bulk(owner: Hashable, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` on the bulk thread in ``owner``'s turn, without blocking the loop."""
    return await lane().run(owner, fn, *args)

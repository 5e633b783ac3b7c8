"""Run a service's inline handlers in worker threads, each session's calls one at a time, in order.

For an engine whose calls wait on something outside the process (the PostgreSQL store: network
round trips, and a connection that may stall), the host loop must not wait with them
(docs/architecture.md, Threading). :func:`off_loop` turns each inline handler that ``needs``
that service into a task-mode handler that runs the same function in a worker thread
(``asyncio.to_thread``). A session's calls still run in the order its frames arrived, one
after the other (an ``asyncio.Lock`` per session, which wakes waiters first come, first
served), so a client that pipelines ``runs.record_turns`` gets its turns appended in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from carnb.app.methods import Handler, Method, Params
from carnb.protocol.session import ClientSession

if TYPE_CHECKING:
    from carnb.app.services import Services


class _SessionQueues:
    """One lock per session with calls pending; dropped when its last call ends."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    async def run(self, fn: Handler, s: ClientSession, p: Params, svc: Services) -> Any:
        lock, pending = self._locks.get(s.client_id, (asyncio.Lock(), 0))
        self._locks[s.client_id] = (lock, pending + 1)
        try:
            async with lock:
                return await asyncio.to_thread(fn, s, p, svc)
        finally:
            lock, pending = self._locks[s.client_id]
            if pending <= 1:
                del self._locks[s.client_id]
            else:
                self._locks[s.client_id] = (lock, pending - 1)


def off_loop(methods: Iterable[Method], needs: str) -> list[Method]:
    """``methods`` with every inline handler of the ``needs`` service run off the loop."""
    queues = _SessionQueues()
    out = []
    for method in methods:
        if method.needs == needs and method.mode == "inline":
            method = replace(method, fn=_threaded(queues, method.fn), mode="task")
        out.append(method)
    return out


def _threaded(queues: _SessionQueues, fn: Handler) -> Handler:
    async def handler(s: ClientSession, p: Params, svc: Services) -> Any:
        return await queues.run(fn, s, p, svc)

    return handler

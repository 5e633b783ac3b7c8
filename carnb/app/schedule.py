"""Where a call runs: the one module that decides it.

Theory of operation. A method declares its ``mode`` (:mod:`carnb.app.methods`); :func:`start`
begins a call accordingly and everything a handler does that is not quick on the loop goes
through a function of this module:

* inline: the handler runs at once on the server loop, in frame order (microseconds: state,
  auth, small writes to a session's own graph). One that must wait returns a :class:`Later`.
* task: the handler is a coroutine, run as its own task so it never blocks other requests.
* a graph's :class:`Gate` (:func:`on_graph`, :func:`in_turn`): one call at a time per memory
  graph, in arrival order, whether inline or in a thread, so a reply is sent only once its
  write is committed and every later call sees it.
* a worker thread (:func:`in_thread`): CPU work linear in a client's input (parsing and
  verifying a proposal, checking a model's reply) and calls that wait on an engine.
* the bulk thread (:func:`in_bulk`, :mod:`carnb.app.bulk`): large replies and trace pages,
  one at a time, so the loop competes with at most one such job for the GIL.
* per session, in a thread (:class:`SessionQueues`, applied to a method table by
  :func:`~carnb.app.methods.off_loop`): for an engine whose calls wait on the network
  (the PostgreSQL store), each inline handler of that engine runs in a worker thread, one
  call of a session after the other in frame order (an ``asyncio.Lock`` per session wakes
  waiters first come, first served), so pipelined ``runs.record_turns`` stay in order.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, TypeVar

from carnb.app.bulk import run_bulk
from carnb.protocol.session import ClientSession

T = TypeVar("T")


class Later:
    """Returned by an ``inline`` handler that cannot answer without waiting (e.g. its graph is
    busy with a slow persist): the reader does not block; the reply is sent when ``coro`` ends."""

    __slots__ = ("coro",)

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.coro = coro


def start(mode: str, handler: Callable[..., Any], *args: Any) -> Any:
    """Begin a call of a handler declared with ``mode``: an inline handler's result, or a
    :class:`Later` for what must wait (a task handler's coroutine, or an inline handler that
    deferred)."""
    if mode == "task":
        return Later(handler(*args))
    return handler(*args)


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a worker thread (the loop keeps serving meanwhile)."""
    return await asyncio.to_thread(fn, *args)


async def in_thread_if(heavy: bool, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a worker thread when ``heavy``, else at once on the loop (work that
    takes microseconds costs less than the thread hop)."""
    return await asyncio.to_thread(fn, *args) if heavy else fn(*args)


async def in_bulk(owner: Hashable, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on the bulk thread, in ``owner``'s turn (a session: the thread takes
    the sessions with jobs queued round robin)."""
    return await run_bulk(owner, fn, *args)


# -- one memory graph's calls, one at a time ----------------------------------------------------
class Gate:
    """One graph's calls, one at a time in arrival order (``queued`` counts those waiting)."""

    __slots__ = ("lock", "queued", "__weakref__")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.queued = 0

    def idle(self) -> bool:
        return self.queued == 0 and not self.lock.locked()

    def later(self, work: Callable[[], T], *, thread: bool) -> Later:
        """Queue ``work`` behind the calls already queued (counted now, so a call arriving
        next cannot overtake it) and start it as a task; in a worker thread if ``thread``."""
        self.queued += 1
        waiting = True

        def leave() -> None:
            nonlocal waiting
            if waiting:
                waiting = False
                self.queued -= 1

        async def run() -> T:
            async with self.lock:
                leave()
                return await asyncio.to_thread(work) if thread else work()

        def done(task: asyncio.Task[T]) -> None:
            leave()
            if not task.cancelled():
                task.exception()  # retrieved here too: a caller that left is not waiting

        task = asyncio.ensure_future(run())
        task.add_done_callback(done)

        async def reply() -> T:
            return await asyncio.shield(task)  # a caller that leaves does not cancel the work

        return Later(reply())


_gates: weakref.WeakKeyDictionary[object, Gate] = weakref.WeakKeyDictionary()


def gate_of(graph: object) -> Gate:
    """The gate of ``graph`` (made on first use, gone with the graph)."""
    gate = _gates.get(graph)
    if gate is None:
        gate = _gates[graph] = Gate()
    return gate


def on_graph(graph: object, work: Callable[[], T], *, thread: bool = True) -> T | Later:
    """Run ``work`` on ``graph`` after the calls queued on it: inline now when ``thread`` is
    false and the graph is idle, else as a :class:`Later` (in a worker thread when ``thread``)."""
    gate = gate_of(graph)
    if not thread and gate.idle():
        return work()
    return gate.later(work, thread=thread)


async def in_turn(graph: object, work: Callable[..., T], *args: Any) -> T:
    """``work(*args)`` in a worker thread, in turn with ``graph``'s other calls."""
    later = gate_of(graph).later(functools.partial(work, *args), thread=True)
    result: T = await later.coro
    return result


def then(later: T | Later, after: Callable[[T], T]) -> T | Later:
    """``after(result)`` on the loop once ``later`` has a result (session updates)."""
    if not isinstance(later, Later):
        return after(later)
    coro = later.coro

    async def finish() -> T:
        result: T = await coro
        return after(result)

    return Later(finish())


# -- an engine that waits on the network: its handlers in threads, per session in order --------
class SessionQueues:
    """One lock per session with calls pending; dropped when its last call ends."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def threaded(self, handler: Callable[..., T]) -> Callable[..., Coroutine[Any, Any, T]]:
        """``handler(session, ...)`` as a coroutine that runs it in a worker thread, after the
        calls of the same session queued before it."""

        async def run(session: ClientSession, *args: Any) -> T:
            return await self.run(session, handler, session, *args)

        return run

    async def run(self, session: ClientSession, fn: Callable[..., T], *args: Any) -> T:
        key = session.client_id
        lock, pending = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, pending + 1)
        try:
            async with lock:
                return await asyncio.to_thread(fn, *args)
        finally:
            lock, pending = self._locks[key]
            if pending <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, pending - 1)

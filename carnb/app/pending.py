"""The one way the server waits for an answer it asked another party for.

Theory of operation. A :class:`Pending` maps the ids of calls the server is waiting on to a
future each, with whatever the caller keeps per call (a runner call's streamed text, a chat's
events) made beside the future by the ``state`` factory given to :meth:`Pending.open`. The
waiter bounds its wait with a deadline (:meth:`Pending.wait`); the party that answers resolves
or rejects the call by id, and an answer for an id nobody waits on, or one already answered,
changes nothing (``False``). When the answering party goes away :meth:`Pending.fail_all` fails
every call still open at once, so no waiter hangs. Who removes a call is the waiter's choice
(:meth:`Pending.discard`): a request/reply waiter removes it when its wait ends, a chat only
once it is over.

Used by the requests sent to a client (``tools.execute``, ``agent.chat``:
:class:`~carnb.app.peercalls.PeerCalls`), the calls of an inference runner
(:class:`~carnb.app.modelrunner.RunnerModel`) and open chats
(:class:`~carnb.app.chat.ChatRelay`). Everything here runs on the server loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

S = TypeVar("S")


class Pending(Generic[S]):
    """Calls waiting for an answer, by id, each with its future and its state."""

    def __init__(self) -> None:
        self._calls: dict[str, tuple[asyncio.Future[Any], S]] = {}

    def __len__(self) -> int:
        return len(self._calls)

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._calls

    def __iter__(self) -> Iterator[S]:
        return iter([state for _, state in self._calls.values()])

    def open(self, call_id: str, state: Callable[[asyncio.Future[Any]], S]) -> S:
        """Start waiting on ``call_id``; ``state(future)`` is what :meth:`get` returns for it."""
        if call_id in self._calls:
            raise ValueError(f"call {call_id} is already pending")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        kept = state(future)
        self._calls[call_id] = (future, kept)
        return kept

    def get(self, call_id: object) -> S | None:
        """The state of ``call_id`` while it is unanswered (None: unknown or answered)."""
        entry = self._calls.get(call_id) if isinstance(call_id, str) else None
        if entry is None or entry[0].done():
            return None
        return entry[1]

    def state(self, call_id: str) -> S | None:
        """The state of ``call_id``, answered or not (None: unknown)."""
        entry = self._calls.get(call_id)
        return None if entry is None else entry[1]

    def answered(self, call_id: str) -> bool:
        entry = self._calls.get(call_id)
        return entry is not None and entry[0].done()

    async def wait(self, call_id: str, timeout: float | None, *, keep_open: bool = False) -> Any:
        """The answer to ``call_id``; :class:`TimeoutError` once ``timeout`` seconds pass. A
        waiter that times out or is cancelled ends the call, unless ``keep_open`` (a chat goes
        on after its waiter gave up)."""
        future = self._calls[call_id][0]
        waited = asyncio.shield(future) if keep_open else future
        if timeout is None:  # the caller keeps the deadline (or there is none)
            return await waited
        async with asyncio.timeout(timeout):
            return await waited

    def resolve(self, call_id: object, result: Any) -> bool:
        """Answer ``call_id`` with ``result``; ``False`` if it is unknown or already answered."""
        future = self._future(call_id)
        if future is None:
            return False
        future.set_result(result)
        return True

    def reject(self, call_id: object, error: BaseException) -> bool:
        """Fail ``call_id`` with ``error``; ``False`` if it is unknown or already answered."""
        future = self._future(call_id)
        if future is None:
            return False
        future.set_exception(error)
        return True

    def discard(self, call_id: str) -> None:
        """Stop tracking ``call_id`` (answered or not)."""
        entry = self._calls.pop(call_id, None)
        if entry is not None and entry[0].done() and not entry[0].cancelled():
            entry[0].exception()  # retrieved: an answer nobody awaits is not an error

    def fail_all(self, error: Callable[[], BaseException]) -> None:
        """The answering party is gone: every unanswered call fails with ``error()``."""
        for future, _ in self._calls.values():
            if not future.done():
                future.set_exception(error())

    def _future(self, call_id: object) -> asyncio.Future[Any] | None:
        entry = self._calls.get(call_id) if isinstance(call_id, str) else None
        if entry is None or entry[0].done():
            return None
        return entry[0]

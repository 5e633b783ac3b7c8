"""Requests the server sends to one peer (``tools.execute``) and the answers it waits for.

Theory of operation. Each socket session has one :class:`PeerCalls`, made by the connection
(``carnb/server/ws.py``) with a function that queues a text frame to that peer. A call gets an
id from the server's own id space (``cb-1``, ``cb-2``, ...: strings, so they never mix with the
peer's own request ids, which only travel the other way) and waits with a deadline in a
:class:`~carnb.app.pending.Pending`; the deadline also bounds writing the request (the
connection may write it from the caller's task, which then waits while the peer's socket is
full). The peer's response frame, a JSON-RPC object with
``result`` or ``error`` and no ``method``, reaches :meth:`PeerCalls.resolve` through
:meth:`~carnb.server.dispatch.Dispatcher.receive`; a response nobody waits for (late,
duplicated, invented) is logged and dropped. A call that times out or whose waiter is
cancelled (the proposal was abandoned, its action ran out of time) sends the peer a
``tools.cancel`` notification with the same ``request_id``. When the connection ends every
pending call fails at once with :class:`PeerGone`.

Everything here runs on the server loop.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from carnb.app.pending import Pending
from carnb.config import MAX_PENDING_CALLS
from carnb.errors import CallFailed, CallTimeout, PeerGone
from carnb.protocol.jsonrpc import Response, notification_text, request_text

log = logging.getLogger("carnb.app.peercalls")


class PeerCalls:
    """The server-to-peer request channel of one connection."""

    def __init__(
        self,
        send: Callable[[str], bool],
        *,
        name: str = "",
        send_now: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        self._send = send  # queues one text frame; False when the peer cannot take it
        # Delivers a request from the caller's own task (the connection writes it at once when
        # nothing is queued before it, saving the writer's turn of the loop); else ``send``.
        self._send_now = send_now
        self._name = name
        self._ids = itertools.count(1)
        self._pending: Pending[None] = Pending()
        self.closed = False

    def __len__(self) -> int:
        return len(self._pending)

    async def request(
        self,
        method: str,
        params: dict[str, Any],
        *,
        timeout: float | None,
        cancel_params: dict[str, Any] | None = None,
    ) -> Any:
        """Send ``method`` to the peer and return its ``result``.

        ``params`` gets ``request_id`` (equal to the frame's id). Raises :class:`CallFailed`,
        :class:`CallTimeout` or :class:`PeerGone`; on timeout or cancellation the peer is told
        with ``tools.cancel {request_id, reason, **cancel_params}``."""
        if self.closed:
            raise PeerGone(f"the client {self._name} has disconnected")
        if len(self._pending) >= MAX_PENDING_CALLS:
            raise CallFailed(f"the client {self._name} already owes {MAX_PENDING_CALLS} answers")
        request_id = f"cb-{next(self._ids)}"
        self._pending.open(request_id, _no_state)
        try:
            text = request_text(request_id, method, {**params, "request_id": request_id})
            try:
                async with asyncio.timeout(timeout):  # delivering the request counts too
                    if not await self._deliver(text):
                        raise PeerGone(f"the client {self._name} is not reading its messages")
                    return await self._pending.wait(request_id, None)
            except TimeoutError:
                reason = f"{method} callback timed out after {timeout:g} s"
                self._cancel(request_id, reason, cancel_params)
                raise CallTimeout(
                    f"the client did not answer {method} within {timeout:g} s"
                ) from None
            except asyncio.CancelledError:
                self._cancel(request_id, f"{method} callback was cancelled", cancel_params)
                raise
        finally:
            self._pending.discard(request_id)

    async def _deliver(self, text: str) -> bool:
        if self._send_now is None:
            return self._send(text)
        return await self._send_now(text)

    def _cancel(self, request_id: str, reason: str, extra: dict[str, Any] | None) -> None:
        if not self.closed:
            params = {"request_id": request_id, **(extra or {}), "reason": reason}
            self._send(notification_text("tools.cancel", params))

    def resolve(self, response: Response) -> bool:
        """Hand the peer's answer to its waiter; ``False`` (and nothing else) for a stray one."""
        if response.error is not None:
            message = response.error.get("message")
            error = CallFailed(str(message) if message else "error without message")
            answered = self._pending.reject(response.id, error)
        else:
            answered = self._pending.resolve(response.id, response.result)
        if not answered:
            log.debug("dropped a response from %s to no pending request", self._name)
        return answered

    def close(self) -> None:
        """The connection ended: fail every pending call with :class:`PeerGone`."""
        self.closed = True
        name = self._name
        self._pending.fail_all(
            lambda: PeerGone(f"the client {name} disconnected before it answered")
        )


def _no_state(future: asyncio.Future[Any]) -> None:
    return None

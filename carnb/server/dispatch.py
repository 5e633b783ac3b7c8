"""The dispatcher: one frame in, one outcome out; the auth gate; one path from a handler's
result or error to a reply.

Theory of operation. :meth:`Dispatcher.receive` takes a frame as the socket delivered it and
returns exactly one :data:`Outcome`: a :class:`Reply` to send now (or nothing, for a
notification, or for the peer's response to a server request, which goes to its waiter), a
:class:`Deferred` reply whose coroutine the connection runs as a task, or a
:class:`Close` (send the reply, then close the socket). It never raises and does no I/O, so it
can be tested without a socket. :meth:`Dispatcher.invoke` is the same path for the notebook's
socketless session: it returns the result or raises the typed error.

The gate is the same for sockets and for the notebook session: unauthenticated sessions may
only call ``session.auth`` (anything else is ``-32001`` and, on a socket, the connection is
closed); host-only methods need ``is_host``; methods flagged ``needs_handshake`` need a prior
``server.handshake`` (``-32005``). Error codes come from :data:`carnb.errors.RPC_CODES`.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from carnb.app.methods import Method, MethodTable
from carnb.app.schedule import Later, in_bulk, start
from carnb.app.services import Services
from carnb.config import MAX_REPLY_BYTES
from carnb.errors import (
    AuthRequired,
    CarnbError,
    Forbidden,
    HandshakeRequired,
    InternalError,
    InvalidRequest,
    MethodNotFound,
    ReplyTooLarge,
)
from carnb.protocol.jsonrpc import (
    Invalid,
    Message,
    Notification,
    Request,
    Response,
    capped_result_text,
    error_reply,
    params_object,
    parse_frame,
    result_text,
)
from carnb.protocol.session import ClientSession

log = logging.getLogger("carnb.server.dispatch")

BINARY_REPLY = error_reply(
    None,
    InvalidRequest(
        "invalid request: binary frames are not supported; send each JSON-RPC object as a "
        "text frame"
    ),
)
POLICY_VIOLATION = 1008  # WebSocket close code


@dataclass(slots=True)
class Reply:
    """Send ``text`` now; ``None``: nothing to send (a notification is never answered)."""

    text: str | None


@dataclass(slots=True)
class Deferred:
    """The reply comes when ``reply`` ends (its text, or ``None`` for a notification); the
    connection awaits it as a task so the reader never blocks."""

    reply: Coroutine[Any, Any, str | None]
    handler: Coroutine[Any, Any, Any]  # the handler's own coroutine, which ``reply`` awaits

    def discard(self) -> None:
        """Drop the call unstarted (the connection ended before it could run)."""
        self.reply.close()
        self.handler.close()


@dataclass(slots=True)
class Close:
    """Send ``text`` (unless ``None``), then close the connection with ``code`` and ``reason``."""

    text: str | None
    code: int
    reason: str


# Plain dataclasses, like the messages (:mod:`carnb.protocol.jsonrpc`): one is made per frame,
# and a frozen one's ``__init__`` costs three times as much. Nothing changes them once made.
Outcome = Reply | Deferred | Close
Call = Request | Notification


class Dispatcher:
    """Routes the calls of every session (socket or notebook) to handlers; one per server."""

    def __init__(
        self, services: Services, table: MethodTable, max_reply_bytes: int = MAX_REPLY_BYTES
    ) -> None:
        self.services = services
        self.table = table
        self.max_reply_bytes = max_reply_bytes

    # -- the gate ------------------------------------------------------------------------------
    def resolve(self, session: ClientSession, name: str) -> Method:
        """The method ``session`` may call by ``name``, or the typed error saying why not."""
        if not session.authenticated and name != "session.auth":
            raise AuthRequired(
                f"auth required: call session.auth with the launch token before {name} "
                "(CAR_AUTH_TOKEN; `%car server` or the connection file shows it)"
            )
        method = self.table.get(name)
        if method is None:
            raise MethodNotFound(
                f"unknown method: {name}; capabilities.list shows the methods this server offers"
            )
        if not method.visible_to(session):
            raise Forbidden(
                f"forbidden: {name} needs the host role; authenticate with "
                "session.auth {host_token}",
                data={"reason": "forbidden"},
            )
        if method.needs_handshake and not session.handshaken:
            raise HandshakeRequired(f"handshake required: call server.handshake before {name}")
        return method

    # -- one frame in, one outcome out -----------------------------------------------------------
    def receive(self, session: ClientSession, frame: str | bytes) -> Outcome:
        """Turn one frame from ``session``'s peer into what to send back. Never raises."""
        if isinstance(frame, bytes):
            return Reply(BINARY_REPLY)
        return self.receive_message(session, parse_frame(frame))

    def receive_message(self, session: ClientSession, msg: Message) -> Outcome:
        """:meth:`receive` for a frame already parsed (the connection parses big frames off
        the loop). Never raises."""
        if isinstance(msg, Invalid):
            return Reply(msg.reply)
        if isinstance(msg, Response):  # the peer answering tools.execute: never replied to
            if session.callbacks is not None:
                session.callbacks.resolve(msg)
            return Reply(None)
        try:
            return self._dispatch(session, msg)
        except Exception as exc:  # a bug here must not take the connection down
            return Reply(_reply_error(msg, _internal(msg.method, exc)))

    def _dispatch(self, session: ClientSession, msg: Call) -> Outcome:
        try:
            method = self.resolve(session, msg.method)
        except AuthRequired as exc:
            return Close(_reply_error(msg, exc), POLICY_VIOLATION, "auth required")
        except CarnbError as exc:
            return Reply(_reply_error(msg, exc))
        try:
            started = self._start(method, session, msg.params)
        except Exception as exc:
            return Reply(_reply_error(msg, _typed(method.name, exc)))
        if isinstance(started, Later):
            return Deferred(self._finish(session, method, msg, started.coro), started.coro)
        if method.large_reply:
            ready = _ready(started)
            return Deferred(self._finish(session, method, msg, ready), ready)
        return Reply(self._reply_result(method, msg, started))

    async def _finish(
        self, session: ClientSession, method: Method, msg: Call, coro: Coroutine[Any, Any, Any]
    ) -> str | None:
        try:
            result = await coro
        except Exception as exc:
            return _reply_error(msg, _typed(method.name, exc))
        if method.large_reply:
            return await in_bulk(session, self._reply_result, method, msg, result, True)
        return self._reply_result(method, msg, result)

    def _reply_result(
        self, method: Method, msg: Call, result: Any, in_pieces: bool = False
    ) -> str | None:
        """The result reply, or a ReplyTooLarge error reply when it is over the cap."""
        if isinstance(msg, Notification):
            return None
        cap = self.max_reply_bytes
        # in pieces, building stops as soon as the characters alone are over the cap
        text = capped_result_text(msg.id, result, cap) if in_pieces else result_text(msg.id, result)
        # characters are a lower bound of the bytes; count bytes only when it may matter
        if text is not None and (len(text) * 4 <= cap or len(text.encode("utf-8")) <= cap):
            return text
        error = ReplyTooLarge(
            f"the reply to {method.name} would be over {cap} bytes, the limit per reply: ask "
            "for less (a smaller k or limit, a page of the trace with cursor)",
            data={"limit": cap},
        )
        return error_reply(msg.id, error)

    # -- the socketless path -------------------------------------------------------------------
    async def invoke(self, session: ClientSession, name: str, params: Any = None) -> Any:
        """Full path for one call; returns the result or raises :class:`CarnbError`."""
        method = self.resolve(session, name)
        try:
            started = self._start(method, session, params)
            if isinstance(started, Later):
                return await started.coro
            return started
        except CarnbError:
            raise
        except Exception as exc:
            raise _internal(name, exc) from exc

    # -- shared --------------------------------------------------------------------------------
    def _start(self, method: Method, session: ClientSession, params: Any) -> Any:
        """Begin a resolved call: an inline handler's result, or a :class:`Later` for what
        must wait (a task-mode handler's coroutine, or an inline handler that deferred)."""
        if type(params) is dict:  # the usual case, without a call
            args: dict[str, Any] = params
        elif isinstance(params, list) and method.array_params is not None:
            args = {method.array_params: params}
        else:
            args = params_object(params)
        return start(method.mode, method.fn, session, args, self.services)


def _typed(method: str, exc: Exception) -> CarnbError:
    """A handler's failure as a typed error: carnb's own as is, anything else is a bug."""
    return exc if isinstance(exc, CarnbError) else _internal(method, exc)


def _internal(method: str, exc: Exception) -> InternalError:
    log.error("handler %s failed", method, exc_info=exc)
    return InternalError(f"internal error in {method}: {type(exc).__name__}: {exc}")


def _reply_error(msg: Call, error: CarnbError) -> str | None:
    if isinstance(msg, Notification):
        log.info("notification %s failed: %s", msg.method, error.message)
        return None
    return error_reply(msg.id, error)


async def _ready(result: Any) -> Any:
    return result

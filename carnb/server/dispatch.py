"""The dispatcher: method table, the auth gate, and turning handler outcomes into replies.

Theory of operation. Every handler is registered with a *mode*:
- ``inline``: a plain function run at once on the host loop (microseconds: state, auth, ...).
  The connection reader runs these in frame order.
  An inline handler that must wait (its graph is busy) returns a :class:`Later` instead.
- ``async``: a coroutine function, run as its own task so it never blocks other requests
  (handlers push slow synchronous work to a worker thread themselves).
The gate is the same for sockets and for the notebook's socketless session:
unauthenticated sessions may only call ``session.auth`` (anything else is ``-32001`` and, on a
socket, the connection is closed); host-only methods need ``is_host``; methods flagged
``needs_handshake`` need a prior ``server.handshake`` (``-32005``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from carnb.errors import (
    AUTH_REQUIRED,
    HANDSHAKE_REQUIRED,
    INTERNAL_ERROR,
    METHOD_NOT_FOUND,
    CarnbError,
)
from carnb.protocol.jsonrpc import (
    Notification,
    Request,
    RpcError,
    error_text,
    params_object,
    result_text,
)
from carnb.protocol.session import ClientSession
from carnb.server.services import Services

log = logging.getLogger("carnb.server.dispatch")

ROLES = ("operator", "agent", "owner", "host")


class AuthRequired(RpcError):
    """Raised for any call on an unauthenticated session; sockets are closed after it."""

    def __init__(self, method: str) -> None:
        super().__init__(
            f"auth required: call session.auth with the launch token before {method} "
            "(CAR_AUTH_TOKEN; `%car server` or the connection file shows it)",
            code=AUTH_REQUIRED,
        )


Handler = Callable[..., Any]


class Later:
    """Returned by an ``inline`` handler that cannot answer without waiting (e.g. its graph is
    busy with a slow persist): the reader does not block; the reply is sent when ``coro`` ends."""

    __slots__ = ("coro",)

    def __init__(self, coro: Any) -> None:
        self.coro = coro


@dataclass(frozen=True)
class Method:
    name: str
    fn: Handler
    mode: str = "inline"  # inline | async
    role: str = "operator"  # operator | agent | owner | host (who can call it)
    needs_handshake: bool = False
    summary: str = ""
    params: dict[str, str] = field(default_factory=dict)
    result: str = ""

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.name,
            "role": self.role,
            "summary": self.summary,
            "params": dict(self.params),
            "result": self.result,
            "needs_handshake": self.needs_handshake,
        }


class MethodTable:
    def __init__(self) -> None:
        self._methods: dict[str, Method] = {}

    def add(self, method: Method) -> None:
        if method.mode not in ("inline", "async"):
            raise ValueError(f"bad mode {method.mode!r} for {method.name}")
        if method.role not in ROLES:
            raise ValueError(f"bad role {method.role!r} for {method.name}")
        self._methods[method.name] = method

    def method(self, name: str, **kw: Any) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.add(Method(name, fn, **kw))
            return fn

        return deco

    def get(self, name: str) -> Method | None:
        return self._methods.get(name)

    def __iter__(self) -> Any:
        return iter(sorted(self._methods.values(), key=lambda m: m.name))

    def __contains__(self, name: object) -> bool:
        return name in self._methods


def visible_to(method: Method, session: ClientSession) -> bool:
    return method.role != "host" or session.is_host


class Dispatcher:
    """Routes requests of any session to handlers (one per server)."""

    def __init__(self, services: Services, table: MethodTable) -> None:
        self.services = services
        self.table = table

    # -- the gate ------------------------------------------------------------------------
    def resolve(self, session: ClientSession, name: str) -> Method:
        if not session.authenticated and name != "session.auth":
            raise AuthRequired(name)
        method = self.table.get(name)
        if method is None:
            raise RpcError(
                f"unknown method: {name}; capabilities.list shows the methods this server offers",
                code=METHOD_NOT_FOUND,
            )
        if method.role == "host" and not session.is_host:
            raise RpcError(
                f"forbidden: {name} needs the host role; authenticate with "
                "session.auth {host_token}",
                code=INTERNAL_ERROR,
                data={"reason": "forbidden"},
            )
        if method.needs_handshake and not session.handshaken:
            raise RpcError(
                f"handshake required: call server.handshake before {name}",
                code=HANDSHAKE_REQUIRED,
            )
        return method

    # -- running ---------------------------------------------------------------------------
    async def invoke(self, session: ClientSession, name: str, params: Any = None) -> Any:
        """Full path for one call; returns the result or raises :class:`CarnbError`."""
        method = self.resolve(session, name)
        args = params_object(params)
        return await self.run(method, session, args)

    async def run(self, method: Method, session: ClientSession, args: dict[str, Any]) -> Any:
        """Run a resolved method; its result, or :class:`CarnbError` (unexpected failures are
        logged and become ``-32603 internal error in METHOD``)."""
        try:
            if method.mode == "inline":
                result = method.fn(session, args, self.services)
                if isinstance(result, Later):
                    return await result.coro
                return result
            return await method.fn(session, args, self.services)
        except CarnbError:
            raise
        except Exception as exc:
            log.exception("handler %s failed", method.name)
            raise RpcError(
                f"internal error in {method.name}: {type(exc).__name__}: {exc}",
                code=INTERNAL_ERROR,
            ) from exc

    def run_inline(
        self, method: Method, session: ClientSession, req: Request | Notification
    ) -> str | Later | None:
        """Answer an inline method synchronously (the fast path for the socket reader).

        Returns the reply text; ``None`` for a notification (executed, never answered); or a
        :class:`Later` whose coroutine yields the reply text (or ``None``) when the handler had
        to wait, which the caller runs as a task so the reader never blocks.
        """
        try:
            result = method.fn(session, params_object(req.params), self.services)
        except Exception as exc:
            return self._failure(method, req, exc)
        if isinstance(result, Later):
            return Later(self._finish(method, req, result.coro))
        if isinstance(req, Notification):
            return None
        return result_text(req.id, result)

    async def _finish(self, method: Method, req: Request | Notification, coro: Any) -> str | None:
        try:
            result = await coro
        except Exception as exc:
            return self._failure(method, req, exc)
        return None if isinstance(req, Notification) else result_text(req.id, result)

    @staticmethod
    def _failure(method: Method, req: Request | Notification, exc: Exception) -> str | None:
        if isinstance(req, Notification):
            log.info("notification %s failed: %s", method.name, exc)
            return None
        if isinstance(exc, CarnbError):
            return error_text(req.id, exc.code, exc.message, exc.data)
        log.exception("handler %s failed", method.name)
        return error_text(
            req.id, INTERNAL_ERROR, f"internal error in {method.name}: {type(exc).__name__}: {exc}"
        )

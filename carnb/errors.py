"""The one error root of carnb, the errors every layer may raise, and their JSON-RPC codes.

Errors are typed by blame (as h11 does): :class:`InvalidParams` (and the other protocol
errors below) mean the remote caller sent something wrong and can fix it; any other
:class:`CarnbError` is a failure carnb explains in its message. Lower layers (memgine, runs,
browser) raise these types without knowing about the wire; :data:`RPC_CODES` is the one place
that says which JSON-RPC error code each type is answered with.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

# JSON-RPC error codes used by carnb (docs/protocol.md, "Errors").
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
AUTH_REQUIRED = -32001
HANDSHAKE_REQUIRED = -32005
VERSION_MISMATCH = -32006
CONTENT_REFUSED = -32007
CAPABILITY_UNSUPPORTED = -32008


class CarnbError(Exception):
    """Root of every error carnb raises on purpose.

    ``message`` is what the peer reads; ``data`` is optional structured detail for the error
    object; :attr:`code` is looked up in :data:`RPC_CODES` by type.
    """

    def __init__(self, message: str, *, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data

    @property
    def code(self) -> int:
        """The JSON-RPC error code this error is answered with."""
        return rpc_code(self)


# -- the caller's fault ----------------------------------------------------------------------
class ParseError(CarnbError):
    """A frame is not (strict) JSON."""


class InvalidRequest(CarnbError):
    """A frame is JSON but not a JSON-RPC request carnb can dispatch."""


class MethodNotFound(CarnbError):
    """No such method on this server (or not offered by it)."""


class InvalidParams(CarnbError):
    """The caller's params are wrong. The message names the field: ``invalid params: X ...``."""

    def __init__(self, detail: str, *, data: Any = None) -> None:
        text = detail if detail.startswith("invalid params") else f"invalid params: {detail}"
        super().__init__(text, data=data)


class ReplyTooLarge(InvalidParams):
    """The answer to a call would exceed the reply cap; the caller must ask for less."""


class AuthRequired(CarnbError):
    """A call other than ``session.auth`` on an unauthenticated session (sockets are closed)."""


class AuthFailed(CarnbError):
    """``session.auth`` was given a token that does not match."""


class HandshakeRequired(CarnbError):
    """The method needs a prior ``server.handshake``."""


class VersionMismatch(CarnbError):
    """``server.handshake`` asked for a protocol version this server does not speak."""


class CapabilityUnsupported(CarnbError):
    """``server.handshake`` required a capability this server does not offer."""


class Forbidden(CarnbError):
    """The caller is authenticated but not allowed to do this."""


class StateFull(InvalidParams):
    """A state write would take the session past its key count or its byte budget."""


class PathRejected(CarnbError):
    """A user-supplied path escapes its sandbox (``..``, absolute outside it, symlink out)."""


# -- carnb's own failures ----------------------------------------------------------------------
class NotFound(CarnbError):
    """A named thing (fact, run, agent, file) does not exist."""


class BrowserUnavailable(CarnbError):
    """No Chromium could be found or launched; the message says how to install one."""


class LoopThreadError(CarnbError):
    """The loop thread is not running or a call to it failed to complete."""


class ContentRefused(CarnbError):
    """A model (or what stands in front of it) declined the request's content: a policy
    refusal, not a fault; the caller should not retry. Its message starts ``content refused:``."""

    def __init__(self, detail: str = "", *, data: Any = None) -> None:
        text = detail if detail.startswith("content refused") else f"content refused: {detail}"
        super().__init__(text, data=data)


class InternalError(CarnbError):
    """A handler failed in a way nobody planned for (a bug); the message names the method."""


# The one table from error type to JSON-RPC code. A type not listed takes the code of its
# nearest listed base class; every CarnbError not listed otherwise is -32603 (docs/protocol.md
# section 4: a forbidden call and a failed auth are -32603 too, told apart by message/data).
RPC_CODES: Final[Mapping[type[CarnbError], int]] = MappingProxyType(
    {
        ParseError: PARSE_ERROR,
        InvalidRequest: INVALID_REQUEST,
        MethodNotFound: METHOD_NOT_FOUND,
        InvalidParams: INVALID_PARAMS,
        AuthRequired: AUTH_REQUIRED,
        HandshakeRequired: HANDSHAKE_REQUIRED,
        VersionMismatch: VERSION_MISMATCH,
        CapabilityUnsupported: CAPABILITY_UNSUPPORTED,
        ContentRefused: CONTENT_REFUSED,
        AuthFailed: INTERNAL_ERROR,
        Forbidden: INTERNAL_ERROR,
        CarnbError: INTERNAL_ERROR,
    }
)


def rpc_code(error: CarnbError) -> int:
    """The JSON-RPC code for ``error``: its type's entry in :data:`RPC_CODES`, or its nearest
    listed base class's."""
    for cls in type(error).__mro__:
        if cls in RPC_CODES and issubclass(cls, CarnbError):
            return RPC_CODES[cls]
    return INTERNAL_ERROR  # unreachable: CarnbError itself is listed

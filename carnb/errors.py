"""The one error root of carnb, and the errors every layer may raise.

Errors are split by blame (as h11 does): :class:`InvalidParams` means the remote caller sent
something wrong and can fix it; any other :class:`CarnbError` is a failure carnb explains in its
message. Each carries the JSON-RPC ``code`` the dispatcher answers with, so lower layers
(memgine, runs, browser) can raise them without knowing about the wire.
"""

from __future__ import annotations

from typing import Any

# JSON-RPC error codes used by carnb (docs/protocol.md, "Errors").
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
AUTH_REQUIRED = -32001
HANDSHAKE_REQUIRED = -32005
VERSION_MISMATCH = -32006
CAPABILITY_UNSUPPORTED = -32008


class CarnbError(Exception):
    """Root of every error carnb raises on purpose.

    ``code`` is the JSON-RPC error code a handler failure of this kind is answered with;
    ``data`` is optional structured detail for the error object.
    """

    code: int = INTERNAL_ERROR

    def __init__(self, message: str, *, data: Any = None, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data
        if code is not None:
            self.code = code


class InvalidParams(CarnbError):
    """The caller's params are wrong. The message names the field: ``invalid params: X ...``."""

    code = INVALID_PARAMS

    def __init__(self, detail: str, *, data: Any = None) -> None:
        text = detail if detail.startswith("invalid params") else f"invalid params: {detail}"
        super().__init__(text, data=data)


class NotFound(CarnbError):
    """A named thing (fact, run, agent, file) does not exist."""


class Forbidden(CarnbError):
    """The caller is authenticated but not allowed to do this."""


class PathRejected(CarnbError):
    """A user-supplied path escapes its sandbox (``..``, absolute outside it, symlink out)."""


class BrowserUnavailable(CarnbError):
    """No Chromium could be found or launched; the message says how to install one."""


class HostThreadError(CarnbError):
    """The host thread is not running or a call to it failed to complete."""

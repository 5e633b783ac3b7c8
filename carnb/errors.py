"""The one error root of carnb, the errors every layer may raise, and their JSON-RPC codes.

Every error type carnb defines lives here, typed by blame (as h11 does): a
:class:`CallerFault` means the remote caller sent something wrong, may not do it or named what
is not there, and can fix its call; a :class:`ServerFault` is carnb's own failure on this
machine; an :class:`OutsideFault` is another party's (a tool, a model, an agent, the
database). Lower layers (memgine, runs, agentir, browser) raise these types without knowing
about the wire; :data:`RPC_CODES` is the one place that says which JSON-RPC error code each
type is answered with.
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


# -- blame ----------------------------------------------------------------------------------
class CallerFault(CarnbError):
    """The caller's fault: it sent something wrong, may not do this, or asked for what is not
    there; it can fix the call and retry."""


class ServerFault(CarnbError):
    """carnb's own failure on this machine (a thread, a bound, a missing install); the caller
    did nothing wrong and the operator can fix it."""


class OutsideFault(CarnbError):
    """Another party failed: a peer's tool, a model, an agent, a runner, the database or
    another connection to it. Neither the caller nor carnb is at fault; the message says who."""


# -- the caller's fault: the wire --------------------------------------------------------------
class ParseError(CallerFault):
    """A frame is not (strict) JSON."""


class InvalidRequest(CallerFault):
    """A frame is JSON but not a JSON-RPC request carnb can dispatch."""


class MethodNotFound(CallerFault):
    """No such method on this server (or not offered by it)."""


class InvalidParams(CallerFault):
    """The caller's params are wrong. The message names the field: ``invalid params: X ...``."""

    def __init__(self, detail: str, *, data: Any = None) -> None:
        text = detail if detail.startswith("invalid params") else f"invalid params: {detail}"
        super().__init__(text, data=data)


class ReplyTooLarge(InvalidParams):
    """The answer to a call would exceed the reply cap; the caller must ask for less."""


class StateFull(InvalidParams):
    """A state write would take the session past its key count or its byte budget."""


class RunnerTooLarge(InvalidParams):
    """A runner sent more than ``MAX_RUNNER_CALL_CHARS`` for one call."""


class NothingToReplay(InvalidParams):
    """The run has no model turn: nothing to replay or fork."""


# -- the caller's fault: who may do what ----------------------------------------------------------
class AuthRequired(CallerFault):
    """A call other than ``session.auth`` on an unauthenticated session (sockets are closed)."""


class AuthFailed(CallerFault):
    """``session.auth`` was given a token that does not match."""


class AgentElsewhere(CallerFault):
    """The agent is registered in the team store, but this server never saw its token (the
    agent must authenticate on a server that registered it)."""


class HandshakeRequired(CallerFault):
    """The method needs a prior ``server.handshake``."""


class VersionMismatch(CallerFault):
    """``server.handshake`` asked for a protocol version this server does not speak."""


class CapabilityUnsupported(CallerFault):
    """``server.handshake`` required a capability this server does not offer."""


class Forbidden(CallerFault):
    """The caller is authenticated but not allowed to do this."""


class SupervisionRefused(Forbidden):
    """The caller may not supervise (a session bound to an agent)."""


class PathRejected(CallerFault):
    """A user-supplied path escapes its sandbox (``..``, absolute outside it, symlink out)."""


class TooManyProposals(CallerFault):
    """The session already runs ``MAX_RUNNING_PROPOSALS`` proposals."""


class TooManyForks(CallerFault):
    """This session already drives as many forks as it may."""


# -- the caller's fault: what it named -------------------------------------------------------
class NotFound(CallerFault):
    """A named thing (fact, run, agent, file) does not exist."""


class ModelNotFound(NotFound):
    """``infer`` named a model this server does not have (the message lists those it has)."""


class IntentGone(NotFound):
    """The intent is unknown, already decided or timed out, or not waiting on this caller."""


class RunTerminal(CallerFault):
    """The run already ended; the first terminal outcome wins."""


# -- carnb's own failures ----------------------------------------------------------------------
class BrowserUnavailable(ServerFault):
    """No Chromium could be found or launched; the message says how to install one."""


class LoopThreadError(ServerFault):
    """The loop thread is not running or a call to it failed to complete."""


class PoolClosed(ServerFault):
    """A worker pool was asked to run a call after it closed (carnb is shutting down)."""


class GraphLimit(ServerFault):
    """A graph cannot be opened without exceeding the open-graph or descriptor bounds."""


class OtelUnavailable(ServerFault):
    """An endpoint is set but the exporter is not installed."""


class InternalError(ServerFault):
    """A handler failed in a way nobody planned for (a bug); the message names the method."""


# -- an outside party's failures --------------------------------------------------------------
class ToolError(OutsideFault):
    """A tool call failed (the tool's fault, not carnb's): the message is the action's error."""


class ToolTimeout(ToolError):
    """A tool call ran past its ``timeout_ms``."""


class Unreachable(ToolError):
    """A fork's tool call has nowhere to go."""


class ModelFailed(OutsideFault):
    """The model raised, returned a malformed reply, or its runner failed or went away."""


class ModelTimeout(ModelFailed):
    """The model did not answer within its timeout."""


class RunnerGone(ModelFailed):
    """The model's runner disconnected before it answered."""


class ContentRefused(OutsideFault):
    """A model (or what stands in front of it) declined the request's content: a policy
    refusal, not a fault; the caller should not retry. Its message starts ``content refused:``."""

    def __init__(self, detail: str = "", *, data: Any = None) -> None:
        text = detail if detail.startswith("content refused") else f"content refused: {detail}"
        super().__init__(text, data=data)


class CallFailed(OutsideFault):
    """The peer answered a server request with an error (its message is kept)."""


class CallTimeout(OutsideFault):
    """The peer did not answer a server request in time (``tools.cancel`` was sent)."""


class PeerGone(OutsideFault):
    """The peer disconnected (or could not be written to) before it answered."""


class ChatRefused(OutsideFault):
    """The agent did not accept the chat turn."""


class StoreUnavailable(OutsideFault):
    """PostgreSQL cannot be reached (or broke off): nothing was written; retry later."""


class SchemaError(OutsideFault):
    """The database holds a schema this carnb cannot use (newer, or foreign)."""


class GraphBusy(OutsideFault):
    """Another connection held the graph's write lock longer than ``LOCK_WAIT_S``."""


class FactIdTaken(OutsideFault):
    """A batch of loaded facts holds an id another connection stored meanwhile."""


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

"""Each session's tools and policies, and how a proposal's tool calls reach the code behind
them (``tools.*``, ``policy.*``, ``verify``, ``proposal.submit``).

Theory of operation. A session's tools are schemas (:class:`~carnb.agentir.ToolRegistry`).
A tool a *socket* session registered runs in that session's client: each call is a
``tools.execute`` request over the connection's :class:`~carnb.app.peercalls.PeerCalls`.
A tool of the *notebook's* session is a Python callable (``@carnb.tool``): it runs in a worker
thread of this hub's own pool, never on the server loop, so a busy cell or a slow tool holds
neither the server nor the other sessions. A notebook tool may be shared: with every session
(``share=True``) or with the sessions bound to given agent ids; a session's toolset is its own
tools plus the shared ones it may see (its own win on a name clash). Policies are per session,
like the real daemon's per-connection runtime.

Each call has a deadline: the action's ``timeout_ms`` (the executor enforces it; a remote call
also waits ``TOOL_GRACE_S`` longer for the answer), else the hub's ``default_timeout``. A notebook
tool past its deadline is abandoned, not killed (Python threads cannot be): its result is
ignored and its worker stays busy until the function returns.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from carnb.agentir import PolicySet, ProgressCallback, ProgressEvent, ToolRegistry, ToolSchema
from carnb.app.workers import WorkerPool
from carnb.config import MAX_TOOLS, TOOL_GRACE_S, TOOL_TIMEOUT_S, TOOL_WORKERS
from carnb.errors import CallFailed, CallTimeout, PeerGone, PoolClosed, ToolError, ToolTimeout
from carnb.protocol.session import ClientSession

log = logging.getLogger("carnb.app.toolhub")


Share = bool | frozenset[str]
ProgressWatcher = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class LocalTool:
    """A Python callable serving one tool of the notebook's session."""

    schema: ToolSchema
    fn: Callable[..., Any]
    timeout: float | None = None  # seconds; None: the hub's default
    share: Share = False  # False: its own session only; True: all; a set: these agent ids
    approve: bool = False  # every call waits for a supervisor's decision (or the ledger's)

    def visible_to(self, session: ClientSession) -> bool:
        if self.share is True:
            return True
        if self.share is False:
            return False
        return session.agent_id is not None and session.agent_id in self.share


@dataclass
class SessionTools:
    """What one session registered: tool schemas, the callables behind its local tools,
    its policies."""

    schemas: ToolRegistry = field(default_factory=ToolRegistry)
    local: dict[str, LocalTool] = field(default_factory=dict)
    policies: PolicySet = field(default_factory=PolicySet)
    running: int = 0  # proposals of this session running now


class ToolHub:
    def __init__(
        self, *, default_timeout: float = TOOL_TIMEOUT_S, workers: int = TOOL_WORKERS
    ) -> None:
        self.default_timeout = default_timeout
        self._pool = WorkerPool(workers, "carnb-tool")
        self._sessions: dict[str, SessionTools] = {}
        self._owners: dict[str, ClientSession] = {}
        self._watchers: list[ProgressWatcher] = []

    # -- progress --------------------------------------------------------------------------
    def watch(self, fn: ProgressWatcher) -> Callable[[], None]:
        """Call ``fn(event)`` on the server loop for each action that starts or finishes in any
        session's proposal; returns the (idempotent) remover. ``event``: ``{session_id,
        proposal_id, kind: "action_started" | "action_finished", action_id, tool, action_type,
        attempt, result}`` (``tool`` the tool a ``tool_call`` calls, else ``None``; ``result``
        the ActionResult when finished, else ``None``)."""
        self._watchers.append(fn)

        def remove() -> None:
            if fn in self._watchers:
                self._watchers.remove(fn)

        return remove

    def progress(self, session: ClientSession, proposal_id: str) -> ProgressCallback | None:
        """The executor's progress callback for one proposal (``None`` if nobody watches)."""
        if not self._watchers:
            return None

        def emit(event: ProgressEvent) -> None:
            record = {
                "session_id": session.client_id,
                "proposal_id": proposal_id,
                "kind": event.kind,
                "action_id": event.action_id,
                "tool": event.tool,
                "action_type": event.action_type,
                "attempt": event.attempt,
                "result": event.result,
            }
            for fn in list(self._watchers):
                try:
                    fn(record)
                except Exception:  # a broken view must not break the proposal
                    log.exception("proposal watcher failed")

        return emit

    # -- registries ------------------------------------------------------------------------
    def of(self, session: ClientSession) -> SessionTools:
        tools = self._sessions.get(session.client_id)
        if tools is None:
            tools = self._sessions[session.client_id] = SessionTools()
            self._owners[session.client_id] = session
        return tools

    def drop(self, session: ClientSession) -> None:
        """The session ended: its tools and policies go (shared ones included)."""
        self._sessions.pop(session.client_id, None)
        self._owners.pop(session.client_id, None)

    def add_local(self, session: ClientSession, tool: LocalTool) -> None:
        own = self.of(session)
        if tool.schema.name not in own.schemas and len(own.schemas) >= MAX_TOOLS:
            raise ToolError(f"this session already has {MAX_TOOLS} tools")
        own.schemas.add(tool.schema)
        own.local[tool.schema.name] = tool

    def toolset(self, session: ClientSession) -> tuple[ToolRegistry, dict[str, LocalTool]]:
        """A snapshot of the tools in force for ``session``: schemas and local callables."""
        registry = ToolRegistry()
        local: dict[str, LocalTool] = {}
        for owner_id, owned in self._sessions.items():
            if owner_id == session.client_id:
                continue
            for name, tool in owned.local.items():
                if tool.visible_to(session):
                    registry.add(tool.schema)
                    local[name] = tool
        own = self._sessions.get(session.client_id)
        if own is not None:
            for name in own.schemas.names():
                schema = own.schemas.get(name)
                assert schema is not None
                registry.add(schema)
                local.pop(name, None)
            local.update(own.local)
        return registry, local

    def runner(self, session: ClientSession, local: dict[str, LocalTool]) -> SessionRunner:
        return SessionRunner(self, session, local)

    # -- notebook tools --------------------------------------------------------------------
    async def run_local(
        self, tool: LocalTool, parameters: dict[str, Any], timeout_ms: int | None
    ) -> Any:
        if timeout_ms is not None:
            timeout = timeout_ms / 1000
        else:
            timeout = tool.timeout if tool.timeout is not None else self.default_timeout
        try:
            future = self._pool.submit(_call_local, tool, parameters)
        except PoolClosed:
            raise ToolError("the tool runner is closed") from None
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.wrap_future(future)
        except TimeoutError:
            future.cancel()
            raise ToolTimeout(
                f"tool '{tool.schema.name}' timed out after {timeout:g} s (its thread is "
                "abandoned, not stopped)"
            ) from None

    def close(self) -> None:
        self._pool.close()


class SessionRunner:
    """The :class:`~carnb.agentir.ToolRunner` of one proposal submitted by ``session``."""

    def __init__(self, hub: ToolHub, session: ClientSession, local: dict[str, LocalTool]) -> None:
        self.hub = hub
        self.session = session
        self.local = local

    async def call(
        self,
        tool: str,
        parameters: dict[str, Any],
        *,
        action_id: str,
        attempt: int,
        timeout_ms: int | None,
    ) -> Any:
        local = self.local.get(tool)
        if local is not None:
            return await self.hub.run_local(local, parameters, timeout_ms)
        calls = self.session.callbacks
        if calls is None:
            raise ToolError(
                f"tool '{tool}' has no code behind it in this session: register a Python "
                "function with @carnb.tool"
            )
        timeout = (
            timeout_ms / 1000 + TOOL_GRACE_S if timeout_ms is not None else self.hub.default_timeout
        )
        params = {
            "action_id": action_id,
            "tool": tool,
            "parameters": parameters,
            "timeout_ms": timeout_ms,
            "attempt": attempt,
            "session_id": self.session.client_id,
        }
        try:
            return await calls.request(
                "tools.execute", params, timeout=timeout, cancel_params={"action_id": action_id}
            )
        except CallFailed as exc:
            raise ToolError(f"tool '{tool}' failed: {exc.message}") from None
        except CallTimeout as exc:
            raise ToolTimeout(f"tool '{tool}': {exc.message}") from None
        except PeerGone as exc:
            raise ToolError(f"tool '{tool}' did not finish: {exc.message}") from None


def _call_local(tool: LocalTool, parameters: dict[str, Any]) -> Any:
    """Run a notebook tool in a worker thread; its failure is the action's error."""
    name = tool.schema.name
    try:
        value = tool.fn(**parameters)
        if inspect.isawaitable(value):
            value = asyncio.run(_awaited(value))
    except Exception as exc:
        raise ToolError(f"tool '{name}' raised {type(exc).__name__}: {exc}") from None
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        raise ToolError(
            f"tool '{name}' returned a {type(value).__name__}, which is not JSON"
        ) from None
    return value


async def _awaited(value: Any) -> Any:
    return await value

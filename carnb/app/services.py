"""What the application is given by the composition root (``carnb.runtime``).

The application never imports memgine, runs or browser (docs/architecture.md): it receives
objects that satisfy the protocols in :mod:`carnb.app.ports` and calls them. A service left as
``None`` is not offered: its methods are not in the table and do not appear in
``capabilities.list``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

from carnb.app.approvals import ApprovalLedger
from carnb.app.background import Background
from carnb.app.chat import ChatRelay
from carnb.app.events import (
    AGENT_ATTACHED,
    AGENT_DETACHED,
    SESSION_ATTACHED,
    SESSION_DETACHED,
    HostEvents,
)
from carnb.app.metering import Meter
from carnb.app.models import ModelHub
from carnb.app.ports import BrowserProvider, Graph, MemoryProvider, RunLog, SpanExport
from carnb.app.recording import InferenceRecorder
from carnb.app.schedule import in_thread
from carnb.app.subscriptions import RunSubscriptions
from carnb.app.supervision import Supervision
from carnb.app.toolhub import ToolHub
from carnb.protocol.auth import Credentials
from carnb.protocol.session import ClientSession

log = logging.getLogger("carnb.server.sessions")


SessionCloser = Callable[[ClientSession], Awaitable[None] | None]


@dataclass
class Services:
    credentials: Credentials
    server_version: str
    events: HostEvents = field(default_factory=HostEvents)
    memory: MemoryProvider | None = None
    runs: RunLog | None = None
    browsers: BrowserProvider | None = None
    run_subscriptions: RunSubscriptions = field(default_factory=RunSubscriptions)
    tools: ToolHub = field(default_factory=ToolHub)  # tools and policies of every session
    models: ModelHub = field(default_factory=ModelHub)  # the models infer and embed reach
    chats: ChatRelay = field(default_factory=ChatRelay)  # agents.chat turns being relayed
    meter: Meter = field(default_factory=Meter)  # tokens, cost and the audit event log
    spans: SpanExport | None = None  # the OpenTelemetry exporter, when an endpoint is set
    supervision: Supervision = field(default_factory=Supervision)  # the admission gate
    approvals: ApprovalLedger | None = None  # the durable approval ledger
    recordings: InferenceRecorder = field(default_factory=InferenceRecorder)  # infer, for runs
    forks: Background = field(default_factory=Background)  # runs.fork drivers running
    sessions: SessionHub = field(init=False)

    def __post_init__(self) -> None:
        self.sessions = SessionHub(self)

    def capabilities(self) -> frozenset[str]:
        caps = {"state", "host", "agents", "tools", "proposals", "inference"}
        if self.memory is not None:
            caps.add("memory")
        if self.runs is not None:
            caps.add("runs")
        if self.browsers is not None:
            caps.add("browser")
        if self.approvals is not None:
            caps.add("approvals")
        return frozenset(caps)


class SessionHub:
    """Every live session, their attach/detach lifecycle and their resource bindings."""

    def __init__(self, services: Services) -> None:
        self._svc = services
        self._sessions: dict[str, ClientSession] = {}
        self._closers: list[SessionCloser] = []  # run when a session ends
        self._announced: set[str] = set()  # sessions that entered the event log
        self._filling: set[asyncio.Future[None]] = set()  # fact counts being read

    def __iter__(self) -> Iterator[ClientSession]:
        return iter(list(self._sessions.values()))

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, client_id: str) -> ClientSession | None:
        return self._sessions.get(client_id)

    def on_close(self, fn: SessionCloser) -> None:
        """Register ``fn(session)`` (sync or async) to run when any session ends."""
        self._closers.append(fn)

    def open(self, session: ClientSession) -> None:
        """Track a new session. It enters the host event log only once it is authenticated
        (at once for the notebook's own session), so peers without a token cannot push real
        events out of the bounded log by connecting."""
        self._sessions[session.client_id] = session
        if session.authenticated:
            self._announce(session)

    def _announce(self, session: ClientSession) -> None:
        if session.client_id in self._announced:
            return
        self._announced.add(session.client_id)
        self._svc.events.emit(
            SESSION_ATTACHED,
            message=f"session {session.client_id} attached ({session.kind})",
            payload={"session_id": session.client_id, "kind": session.kind, "peer": session.peer},
        )

    async def close(self, session: ClientSession) -> None:
        """End a session: end its open run, close its browser slot and graphs, say so."""
        if session.closed:
            return
        session.closed = True
        self._svc.events.unsubscribe(session)
        for fn in self._closers:
            try:
                res = fn(session)
                if inspect.isawaitable(res):
                    await res
            except Exception:
                log.exception("cleanup of session %s failed", session.client_id)
        if session.memgine is not None:
            try:
                session.memgine.close()
            except Exception:
                log.exception("closing the ephemeral graph of %s failed", session.client_id)
            session.memgine = None
        if session.agent_id is not None:
            self._svc.events.emit(
                AGENT_DETACHED,
                agent_id=session.agent_id,
                message=f"agent {session.agent_id} detached from {session.client_id}",
                payload={"session_id": session.client_id},
            )
        self._sessions.pop(session.client_id, None)  # gone only once cleaned up
        if session.client_id in self._announced:
            self._announced.discard(session.client_id)
            self._svc.events.emit(
                SESSION_DETACHED,
                message=f"session {session.client_id} detached",
                payload={"session_id": session.client_id, "kind": session.kind},
            )
        session.emit()

    def authenticate(
        self,
        session: ClientSession,
        *,
        is_host: bool,
        agent_id: str | None,
        namespace: str | None,
        agent_proven: bool = True,
    ) -> None:
        """Make ``session`` what a successful ``session.auth`` granted, all or nothing: the
        graph is opened first (its failure changes nothing); a session whose role or binding
        changes loses the host, run and supervision subscriptions it held under the old one."""
        memory = self._svc.memory
        bound: Graph | None = None
        if memory is not None:
            if namespace is not None:
                bound = memory.namespace_graph(namespace)
            elif agent_id is not None:
                bound = memory.agent_graph(agent_id)
        graph = bound if bound is not None else session.memgine
        # Never wait on the loop for a graph another call holds, nor for a database round trip:
        # the count is then read in a worker thread and filled in when it arrives.
        count: int | None
        if graph is None:
            count = 0 if memory is not None else None
        elif bound is not None and memory is not None and memory.remote:
            count = None
        else:
            count = graph.fact_count_if_idle()
        # nothing has changed up to here; from here on nothing can fail
        previous_agent = session.agent_id
        was = (session.authenticated, session.is_host, previous_agent, session.memory_namespace)
        if was[0] and was[1:] != (is_host, agent_id, namespace):
            self._svc.events.unsubscribe(session)
            self._svc.run_subscriptions.drop_session(session)
            self._svc.supervision.unsubscribe(session.client_id)
        session.bound_memgine = bound
        session.update(
            authenticated=True,
            is_host=is_host,
            agent_id=agent_id,
            memory_namespace=namespace,
            fact_count=count,
            agent_proven=agent_proven,
        )
        session.emit()
        self._announce(session)
        if count is None and graph is not None:
            task = asyncio.ensure_future(self._fill_fact_count(session, graph))
            self._filling.add(task)
            task.add_done_callback(self._filling.discard)
        if previous_agent is not None and previous_agent != agent_id:
            self._svc.events.emit(
                AGENT_DETACHED,
                agent_id=previous_agent,
                message=f"agent {previous_agent} detached from {session.client_id}",
                payload={"session_id": session.client_id},
            )
        if agent_id is not None and agent_id != previous_agent:
            self._svc.events.emit(
                AGENT_ATTACHED,
                agent_id=agent_id,
                message=f"agent {agent_id} attached to {session.client_id}",
                payload={"session_id": session.client_id, "memory_namespace": namespace},
            )

    async def _fill_fact_count(self, session: ClientSession, graph: Graph) -> None:
        """Read ``graph``'s count in a worker thread and show it, unless the session moved to
        another graph or learnt a count meanwhile (a write publishes its own)."""
        try:
            count = await in_thread(graph.fact_count)
        except Exception as exc:  # the panel shows no count; the next memory call sets it
            log.info("fact count of %s not read: %s", session.client_id, exc)
            return
        if not session.closed and session.effective_memgine is graph and session.fact_count is None:
            session.update(fact_count=count)

    def sessions_of_agent(self, agent_id: str) -> list[str]:
        return [
            s.client_id for s in self._sessions.values() if s.agent_id == agent_id and not s.closed
        ]

    def ensure_ephemeral(self, session: ClientSession) -> Graph | None:
        """The session's own graph, created on first use (None without a memory service)."""
        if session.memgine is None and self._svc.memory is not None:
            session.memgine = self._svc.memory.ephemeral()
        graph: Graph | None = session.memgine
        return graph

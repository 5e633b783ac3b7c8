"""What the notebook's widgets read: session snapshots, the tools in force, and watchers of
sessions, proposals, intents and run records (``carnb.kernel.view.RuntimeView``).

:class:`RuntimeViews` is a base of :class:`carnb.runtime.Runtime`, which provides its hooks:
the services, the notebook's session, :meth:`_invoke_as` (a call as any session through the
dispatcher, so a graph's gate is respected) and :meth:`call_soon` (run on the server loop).
Listeners may fire on any thread, so they only hand over to the loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from carnb.app.services import Services
from carnb.config import COUNT_TIMEOUT_S
from carnb.errors import CarnbError, ServerFault
from carnb.protocol.session import ClientSession

log = logging.getLogger("carnb.app.views")


class RuntimeViews:
    services: Services | None
    session: ClientSession | None

    # -- the hooks the runtime provides ------------------------------------------------------
    def _invoke_as(
        self, session: ClientSession, method: str, params: Any
    ) -> Coroutine[Any, Any, Any]:
        raise NotImplementedError

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        raise NotImplementedError

    # -- snapshots ---------------------------------------------------------------------------
    def notebook(self) -> dict[str, Any]:
        """The notebook session's snapshot (``{}`` before start)."""
        return self.session.snapshot() if self.session is not None else {}

    def snapshots(self) -> list[dict[str, Any]]:
        """Every live session's snapshot (plain data, never a token)."""
        if self.services is None:
            return []
        return [s.snapshot() for s in self.services.sessions]

    async def asnapshots(self) -> list[dict[str, Any]]:
        """On the server loop: :meth:`snapshots` with every fact count known.

        A session without a graph yet has 0 facts (its graph starts empty). A count a session
        with a graph does not hold yet is asked for as that session (``memory.fact_count``
        through the dispatcher, so the graph's lock is respected) for at most
        ``COUNT_TIMEOUT_S`` seconds; a graph busy longer (a long ``memory.load``) shows no
        count. ``tools`` lists the names of the tools in force for each session
        (:meth:`session_tools`); ``run_usage`` the current run's calls, tokens and cost.
        """
        services = self.services
        if services is None:
            return []
        snaps = []
        for session in services.sessions:
            snap = session.snapshot()
            if snap.get("fact_count") is None and services.memory is not None:
                if session.effective_memgine is None:
                    snap["fact_count"] = 0
                else:
                    snap["fact_count"] = await self._count(session)
            snap["tools"] = [t["name"] for t in self.session_tools(session)]
            rid = session.current_run_id
            snap["run_usage"] = services.meter.run_totals([rid]).get(rid) if rid else None
            snaps.append(snap)
        return snaps

    async def _count(self, session: ClientSession) -> int | None:
        """``memory.fact_count`` as ``session``, or None when its graph does not answer in time."""
        try:
            call = self._invoke_as(session, "memory.fact_count", {})
            value = await asyncio.wait_for(call, COUNT_TIMEOUT_S)
        except (TimeoutError, CarnbError) as exc:
            log.debug("fact count of %s unavailable: %s", session.client_id, exc)
            return None
        return value if isinstance(value, int) else None

    # -- tools -------------------------------------------------------------------------------
    def session_tools(self, session: ClientSession) -> list[dict[str, Any]]:
        """On the server loop: the tools in force for ``session`` (its own plus the notebook's
        shared with it), sorted by name: the ``tools.list`` entry plus ``shared`` (``None``
        for a session's own client tool; for a notebook tool, ``True``, ``False`` or its
        sorted agent ids) and ``from_notebook``."""
        if self.services is None:
            return []
        registry, local = self.services.tools.toolset(session)
        rows = []
        for name in registry.names():
            schema = registry.get(name)
            if schema is None:
                continue
            row = schema.to_wire()
            tool = local.get(name)
            share = None if tool is None else tool.share
            row["shared"] = sorted(share) if isinstance(share, frozenset) else share
            row["from_notebook"] = tool is not None
            rows.append(row)
        return rows

    async def atools(self) -> list[dict[str, Any]]:
        """On the server loop: every live session with its tools
        (``{client_id, kind, agent_id, tools: [...]}``, see :meth:`session_tools`)."""
        if self.services is None:
            return []
        return [
            {
                "client_id": s.client_id,
                "kind": s.kind,
                "agent_id": s.agent_id,
                "tools": self.session_tools(s),
            }
            for s in self.services.sessions
        ]

    # -- watchers ----------------------------------------------------------------------------
    def _started(self) -> Services:
        if self.services is None:
            raise ServerFault("the carnb runtime is not started")
        return self.services

    def watch(self, on_change: Callable[[], None]) -> Callable[[], None]:
        """Call ``on_change()`` on the server loop whenever a session changes, attaches or
        detaches. Call this on the server loop; it returns the (idempotent) remover."""
        return _SessionWatch(self._started(), self.call_soon, on_change).remove

    def watch_proposals(self, fn: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``fn(event)`` on the server loop as actions of any session's proposal start and
        finish (see :meth:`carnb.app.toolhub.ToolHub.watch`); returns the remover."""
        return self._started().tools.watch(fn)

    def watch_intents(self, fn: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``fn(intent)`` on the server loop as proposals are parked at the gate, decided
        and released (the intent with full parameters and its decisions); returns the
        remover."""
        return self._started().supervision.watch(lambda intent: fn(intent.detail()))

    def watch_runs(self, on_record: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``on_record(event)`` on the server loop for every record the run store commits
        (``{run_id, agent_id, record, cursor, status}``, any run; callers filter). Safe from
        any thread; returns the (idempotent) remover."""
        store = self.services.runs if self.services is not None else None
        if store is None:
            raise ServerFault("run tracing is off in this runtime (Settings(runs=False))")
        call_soon = self.call_soon

        def forward(event: dict[str, Any]) -> None:  # in the writing thread, store lock held
            call_soon(on_record, event)

        return store.add_listener(forward)


class _SessionWatch:
    """One observer of every session: a listener on each live session (added as sessions
    attach, removed as they detach) and a host-event watcher; each change calls ``on_change``
    on the server loop. Listeners may fire on any thread, so they only hand over to the loop."""

    def __init__(
        self,
        services: Services,
        call_soon: Callable[..., None],
        on_change: Callable[[], None],
    ) -> None:
        self._services = services
        self._call_soon = call_soon
        self._on_change = on_change
        self._listeners: dict[str, Callable[[], None]] = {}
        self._closed = False
        for session in services.sessions:
            self._add(session)
        self._unwatch_events = services.events.watch(self._on_event)
        # a metered call changes its run's tokens and cost, not its session
        self._unwatch_meter = services.meter.watch(lambda: call_soon(self._changed))

    def remove(self) -> None:
        self._closed = True
        self._unwatch_events()
        self._unwatch_meter()
        for remove in list(self._listeners.values()):
            remove()
        self._listeners.clear()

    def _add(self, session: ClientSession) -> None:
        if session.client_id not in self._listeners and not session.closed:
            self._listeners[session.client_id] = session.add_listener(self._on_session)

    def _on_session(self, session: ClientSession, snap: dict[str, Any]) -> None:
        self._call_soon(self._changed)

    def _on_event(self, event: dict[str, Any]) -> None:
        self._call_soon(self._host_event, event)

    def _host_event(self, event: dict[str, Any]) -> None:
        client_id = (event.get("payload") or {}).get("session_id")
        if isinstance(client_id, str) and not self._closed:
            if event.get("kind") == "session.attached":
                session = self._services.sessions.get(client_id)
                if session is not None:
                    self._add(session)
            elif event.get("kind") == "session.detached":
                remove = self._listeners.pop(client_id, None)
                if remove is not None:
                    remove()
        self._changed()

    def _changed(self) -> None:
        if not self._closed:
            self._on_change()

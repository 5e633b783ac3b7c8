"""The application of one launch: its services, the engines wired into them and the method
table, each engine opened with its close beside it.

:class:`Assembly` runs on the server loop. :meth:`Assembly.open` builds the services from the
settings, opens the observers (price table, OpenTelemetry), the team store when one is set, the
memory home, the run store, the browser pool and the approval ledger, registering each one's
close on an exit stack as it opens; :meth:`Assembly.close` ends the forks and sessions, then
closes the engines in reverse order (a close that fails is logged and the rest still close).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from carnb._version import __version__
from carnb.app.approvals import ApprovalLedger
from carnb.app.handlers import build_table
from carnb.app.methods import MethodTable, off_loop
from carnb.app.prices import read_prices
from carnb.app.services import Services
from carnb.browser import BrowserPool
from carnb.config import Settings
from carnb.ledger.sqlite import SqliteLedger
from carnb.memgine import MemoryHome
from carnb.memgine.home import GRAPH_SUFFIX
from carnb.protocol.auth import Credentials
from carnb.protocol.session import ClientSession, new_client_id
from carnb.runs import RunStore
from carnb.runs.access import NAME_PREFIX

if TYPE_CHECKING:
    from carnb.pgstore.store import PostgresStore

log = logging.getLogger("carnb.assembly")


class Assembly:
    def __init__(
        self, settings: Settings, credentials: Credentials, call_soon: Callable[..., None]
    ) -> None:
        self.settings = settings
        self.credentials = credentials
        self._call_soon = call_soon  # onto the server loop, from any thread
        self.services: Services | None = None
        self.memory_home: MemoryHome | None = None
        self.run_store: RunStore | None = None
        self.notebook_session: ClientSession | None = None
        # called on the server loop after a write by any server to the notebook session's graph
        self._memory_watchers: list[Callable[[], None]] = []
        self._stack = contextlib.AsyncExitStack()

    def _on_close(self, close: Callable[[], Any]) -> None:
        """Close with ``close()`` (sync or async) when the assembly closes; a failure is logged."""

        async def run() -> None:
            try:
                res = close()
                if hasattr(res, "__await__"):
                    await res
            except Exception:
                log.exception("closing a carnb engine failed")

        self._stack.push_async_callback(run)

    # -- open -------------------------------------------------------------------------------
    def open(self) -> tuple[Services, MethodTable]:
        """On the server loop: the services with every engine the settings ask for, and the
        table of the methods they offer."""
        s = self.settings
        services = Services(self.credentials, server_version=f"carnb {__version__}")
        services.tools.default_timeout = s.tool_timeout
        self._on_close(services.tools.close)
        services.models.default_timeout = s.model_timeout
        services.recordings.enabled = s.record_inference
        self._on_close(services.models.close)
        services.supervision.decision_timeout_s = s.decision_timeout
        self._open_observers(services)
        self._open_engines(services)
        self.services = services
        table = build_table(services)
        if s.store_setting.is_postgresql:  # its calls wait on the network
            table = MethodTable(off_loop(table, "runs"))
        return services, table

    def _open_observers(self, services: Services) -> None:
        """The price table (``Settings.prices``) and the OpenTelemetry exporter, closed last so
        it sends the records of the runs that end while the server stops."""
        s = self.settings
        if s.prices is not None:
            services.meter.prices.set(read_prices(s.prices))
        if s.otel_endpoint:
            from carnb.otel import open_export

            export = open_export(s.otel_endpoint, content=s.otel_content)
            services.spans = export
            self._on_close(lambda: asyncio.to_thread(export.close))

    def _open_engines(self, services: Services) -> None:
        """Wire memgine, the run store and the browser pool (each can be switched off)."""
        s = self.settings
        team = self._open_team_store(services) if s.store_setting.is_postgresql else None
        if s.memory:
            graphs = team.graphs() if team is not None else None
            memory = MemoryHome(s.home, graphs)
            services.memory = self.memory_home = memory
            self._on_close(memory.close)
            if graphs is not None:  # counts follow writes made through any server
                graphs.watch(lambda key, count: self._call_soon(self._graph_counted, key, count))
        if s.runs:
            if team is not None:
                runs = team.runs()
                # turns of runs followed here or started here (the meter's) are read
                watching, metered = services.run_subscriptions.watching, services.meter.follows
                runs.interest = lambda run_id: watching(run_id) or metered(run_id)
                services.runs = self.run_store = runs
            else:
                store = RunStore(s.home / "runs.sqlite3")
                self._on_close(store.close)
                services.runs = self.run_store = store
        if s.browser:
            pool = BrowserPool(
                executable=s.chromium, headless=s.headless, op_timeout_ms=s.browser_timeout_ms
            )
            services.browsers = pool
            self._on_close(pool.close)
        ledger = team.ledger() if team is not None else SqliteLedger(s.home / "approvals.sqlite3")
        if isinstance(ledger, SqliteLedger):
            self._on_close(ledger.close)
        services.approvals = ApprovalLedger(ledger, services.events)
        if team is not None:
            team.listen()  # every engine has registered its channels

    def _open_team_store(self, services: Services) -> PostgresStore:
        """Open the PostgreSQL store and share agent identities through it."""
        from carnb.pgstore.store import PostgresStore  # psycopg only when it is used

        team = PostgresStore(self.settings.store_setting).open()
        self._on_close(team.close)
        team.share_events(services.events, f"{socket.gethostname()}:{os.getpid()}")
        for agent_id in self.credentials.agents.attach(team.agents()):
            log.warning(
                "agent %s was registered in the team store by another server: it "
                "authenticates with the token it was given there",
                agent_id,
            )
        return team

    def _graph_counted(self, key: tuple[str, str], count: int) -> None:
        """On the server loop: a write (through any server of the team store) left the graph
        ``key`` with ``count`` facts; the sessions here bound to it show that count."""
        services, home = self.services, self.memory_home
        if services is None or home is None:
            return
        graph = home.cached_graph(key)
        if graph is None:
            return
        for session in services.sessions:
            if session.effective_memgine is graph:
                session.update(fact_count=count)
        notebook = self.notebook_session
        if notebook is not None and notebook.effective_memgine is graph:
            for fn in list(self._memory_watchers):
                try:
                    fn()
                except Exception:  # one broken watcher must not keep the others stale
                    log.exception("memory watcher failed")

    def watch_memory(self, on_write: Callable[[], None]) -> Callable[[], None]:
        """Call ``on_write()`` on the server loop after every write, through any server of the
        team store (PostgreSQL notifications), to the notebook session's graph: an edit,
        a pin or a delete as well as a new fact. Returns the (idempotent) remover."""
        self._memory_watchers.append(on_write)

        def remove() -> None:
            if on_write in self._memory_watchers:
                self._memory_watchers.remove(on_write)

        return remove

    def open_notebook_session(self) -> ClientSession:
        """On the server loop: the notebook's own socketless session, authenticated as host."""
        assert self.services is not None, "open() first"
        session = ClientSession(
            client_id=new_client_id("nb"), kind="notebook", authenticated=True, is_host=True
        )
        self.services.sessions.open(session)
        self.notebook_session = session
        return session

    # -- close ------------------------------------------------------------------------------
    async def close(self) -> None:
        """On the server loop: end the forks and every session, then close the engines in the
        reverse of the order they opened."""
        services = self.services
        if services is not None:
            await services.forks.close()
            for session in list(services.sessions):
                await services.sessions.close(session)
        await self._stack.aclose()

    # -- what the data directory holds ---------------------------------------------------------
    def agents_on_disk(self) -> dict[str, dict[str, Any]]:
        """Agents the data directory knows, registered in this process or not:
        ``{agent_id: {"graph": bool, "runs": int}}`` (a memory graph, runs in the store).
        Runs owned by a ``name:`` label are not an agent's. Reads file names and one grouped
        query; safe from any thread."""
        found: dict[str, dict[str, Any]] = {}
        home = self.memory_home
        if home is not None:
            names = (
                graph_names(home.graphs_dir / "agents")
                if home.store is None
                else home.store.names("agents")
            )
            for agent_id in names:
                found[agent_id] = {"graph": True, "runs": 0}
        store = self.run_store
        if store is not None and not store.closed:
            for owner, count in store.run_counts_by_agent().items():
                if not owner.startswith(NAME_PREFIX):
                    found.setdefault(owner, {"graph": False, "runs": 0})["runs"] = count
        return found


def graph_names(folder: Path) -> list[str]:
    """The names of the graphs stored in ``folder``: the inverse of
    :func:`~carnb.memgine.home.graph_file_name` (names cut to a hash cannot be recovered and are
    left out)."""
    names = []
    try:
        entries = sorted(folder.glob("*" + GRAPH_SUFFIX))
    except OSError:
        return []
    for path in entries:
        stem = path.name[: -len(GRAPH_SUFFIX)]
        if "~" in stem:
            continue
        try:
            names.append(unquote(stem, errors="strict"))
        except UnicodeDecodeError:
            continue
    return names

"""The composition root: the loop thread, the application, the server, engines, connection file.

A :class:`Runtime` is what ``%load_ext carnb`` and ``python -m carnb serve`` start. It mints the
launch secrets, starts the loop thread and the WebSocket server on it, gives the notebook its
own socketless session (authenticated as host), writes the connection file, and tears all of
that down again in :meth:`Runtime.close` (idempotent; a ``weakref.finalize`` in the loop thread
is the backstop).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from carnb._version import __version__
from carnb.agentir import ToolSchema
from carnb.agentir.pyschema import schema_of_function
from carnb.app.approvals import ApprovalLedger
from carnb.app.handlers import build_table
from carnb.app.handlers.inference import context_source, record_served
from carnb.app.methods import MethodTable, off_loop
from carnb.app.models import PythonModel
from carnb.app.prices import read_prices
from carnb.app.services import Services
from carnb.app.supervision import Filter, function_supervisor
from carnb.app.toolhub import LocalTool
from carnb.browser import BrowserPool
from carnb.config import COUNT_TIMEOUT_S, SUPERVISOR_FN_TIMEOUT_S, Settings
from carnb.errors import CarnbError
from carnb.ledger.sqlite import SqliteLedger
from carnb.memgine import MemoryHome
from carnb.memgine.home import GRAPH_SUFFIX
from carnb.private_file import write_private_json
from carnb.protocol.auth import Credentials
from carnb.protocol.session import ClientSession, new_client_id
from carnb.runs import RunStore
from carnb.runs.access import NAME_PREFIX
from carnb.server.dispatch import Dispatcher
from carnb.server.loopthread import LoopThread
from carnb.server.ws import ServerConfig, SessionServer

if TYPE_CHECKING:
    from carnb.pgstore.store import PostgresStore

log = logging.getLogger("carnb.runtime")

_current: Runtime | None = None
_current_lock = threading.Lock()


def current() -> Runtime:
    """The runtime started by ``%load_ext carnb`` in this process."""
    rt = _current
    if rt is None or not rt.running:
        raise CarnbError("carnb is not loaded: run `%load_ext carnb` first")
    return rt


def set_current(rt: Runtime | None) -> None:
    global _current
    with _current_lock:
        _current = rt


class Runtime:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.loop_thread = LoopThread()
        self.credentials = Credentials(auth_enabled=self.settings.auth)
        for name in self.settings.agents:
            self.credentials.agents.register(name)
        self.services: Services | None = None
        self.server: SessionServer | None = None
        self.dispatcher: Dispatcher | None = None
        self.session: ClientSession | None = None
        self.connection_file: Path | None = None
        self._closers: list[Any] = []
        # called on the loop thread after a write by any server to the notebook session's graph
        self._memory_watchers: list[Callable[[], None]] = []
        self._lock = threading.RLock()
        self._memory_home: MemoryHome | None = None
        self._run_store: RunStore | None = None

    # -- properties ------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.server is not None and self.loop_thread.running

    @property
    def url(self) -> str:
        if self.server is None:
            raise CarnbError("the carnb runtime is not started")
        return self.server.url

    @property
    def port(self) -> int:
        if self.server is None or self.server.port is None:
            raise CarnbError("the carnb runtime is not started")
        return self.server.port

    @property
    def token(self) -> str:
        return self.credentials.token

    @property
    def host_token(self) -> str:
        return self.credentials.host_token

    @property
    def home(self) -> Path:
        return self.settings.home

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> Runtime:
        with self._lock:
            if self.running:
                return self
            home = self.settings.home
            home.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.loop_thread.start()
            try:
                self.loop_thread.call(self._astart(), timeout=60)
                self._write_connection_file()
            except BaseException:
                self.close()
                raise
            return self

    async def _astart(self) -> None:
        services = Services(self.credentials, server_version=f"carnb {__version__}")
        services.tools.default_timeout = self.settings.tool_timeout
        self._closers.append(services.tools.close)
        services.models.default_timeout = self.settings.model_timeout
        services.recordings.enabled = self.settings.record_inference
        self._closers.append(services.models.close)
        services.supervision.decision_timeout_s = self.settings.decision_timeout
        self._attach_observers(services)
        self._attach_engines(services)
        self.services = services
        table = build_table(services)
        if self.settings.store_setting.is_postgresql:  # its calls wait on the network
            table = MethodTable(off_loop(table, "runs"))
        self.dispatcher = Dispatcher(services, table)
        s = self.settings
        server = SessionServer(
            ServerConfig(
                bind_address=s.bind_address,
                port=s.port,
                allowed_origins=tuple(s.allowed_origins),
                max_frame_bytes=s.max_frame_bytes,
                ping_interval=s.ping_interval,
                ping_timeout=s.ping_interval,
            ),
            self.dispatcher,
        )
        await server.start()
        self.server = server
        session = ClientSession(
            client_id=new_client_id("nb"), kind="notebook", authenticated=True, is_host=True
        )
        services.sessions.open(session)
        self.session = session

    def _attach_observers(self, services: Services) -> None:
        """The price table (``Settings.prices``) and the OpenTelemetry exporter, closed last so
        it sends the records of the runs that end while the server stops."""
        s = self.settings
        if s.prices is not None:
            services.meter.prices.set(read_prices(s.prices))
        if s.otel_endpoint:
            from carnb.otel import open_export

            export = open_export(s.otel_endpoint, content=s.otel_content)
            services.spans = export
            self._closers.append(lambda: asyncio.to_thread(export.close))

    def _attach_engines(self, services: Services) -> None:
        """Wire memgine, the run store and the browser pool (each can be switched off)."""
        s = self.settings
        team = self._open_team_store(services) if s.store_setting.is_postgresql else None
        if s.memory:
            graphs = team.graphs() if team is not None else None
            memory = MemoryHome(s.home, graphs)
            services.memory = memory
            self._memory_home = memory
            self._closers.append(memory.close)
            if graphs is not None:  # counts follow writes made through any server
                graphs.watch(lambda key, count: self.call_soon(self._graph_counted, key, count))
        if s.runs:
            if team is not None:
                runs = team.runs()
                # turns of runs followed here or started here (the meter's) are read
                watching, metered = services.run_subscriptions.watching, services.meter.follows
                runs.interest = lambda run_id: watching(run_id) or metered(run_id)
                services.runs = runs
                self._run_store = runs
            else:
                store = RunStore(s.home / "runs.sqlite3")
                self._closers.append(store.close)
                services.runs = store
                self._run_store = store
        if s.browser:
            pool = BrowserPool(
                executable=s.chromium,
                headless=s.headless,
                op_timeout_ms=s.browser_timeout_ms,
            )
            services.browsers = pool
            self._closers.append(pool.close)
        ledger = team.ledger() if team is not None else SqliteLedger(s.home / "approvals.sqlite3")
        if isinstance(ledger, SqliteLedger):
            self._closers.append(ledger.close)
        services.approvals = ApprovalLedger(ledger, services.events)
        if team is not None:
            team.listen()  # every engine has registered its channels

    def _graph_counted(self, key: tuple[str, str], count: int) -> None:
        """On the server loop: a write (through any server of the team store) left the graph
        ``key`` with ``count`` facts; the sessions here bound to it show that count."""
        services, home = self.services, self._memory_home
        if services is None or home is None:
            return
        graph = home.cached_graph(key)
        if graph is None:
            return
        for session in services.sessions:
            if session.effective_memgine is graph:
                session.update(fact_count=count)
        if self.session is not None and self.session.effective_memgine is graph:
            for fn in list(self._memory_watchers):
                try:
                    fn()
                except Exception:  # one broken watcher must not keep the others stale
                    log.exception("memory watcher failed")

    def watch_memory(self, on_write: Callable[[], None]) -> Callable[[], None]:
        """Call ``on_write()`` on the loop thread after every write, through any server of the
        team store (PostgreSQL notifications), to the notebook session's graph: an edit,
        a pin or a delete as well as a new fact. Returns the (idempotent) remover."""
        self._memory_watchers.append(on_write)

        def remove() -> None:
            if on_write in self._memory_watchers:
                self._memory_watchers.remove(on_write)

        return remove

    def _open_team_store(self, services: Services) -> PostgresStore:
        """Open the PostgreSQL store and share agent identities through it."""
        from carnb.pgstore.store import PostgresStore  # psycopg only when it is used

        team = PostgresStore(self.settings.store_setting).open()
        self._closers.append(team.close)
        team.share_events(services.events, f"{socket.gethostname()}:{os.getpid()}")
        for agent_id in self.credentials.agents.attach(team.agents()):
            log.warning(
                "agent %s was registered in the team store by another server: it "
                "authenticates with the token it was given there",
                agent_id,
            )
        return team

    @property
    def store_display(self) -> str:
        """The store in use, for people (a PostgreSQL URL without its password)."""
        return self.settings.store_setting.display()

    def close(self) -> None:
        """Stop the server, end every session, close engines and browsers, stop the thread."""
        with self._lock:
            if self.loop_thread.running:
                try:
                    self.loop_thread.call(self._aclose(), timeout=30)
                except Exception:
                    log.exception("carnb runtime did not stop cleanly")
            self.loop_thread.stop()
            self.server = None
            self._remove_connection_file()
            if _current is self:
                set_current(None)

    async def _aclose(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            await server.close()
        services = self.services
        if services is None:
            return
        await services.forks.close()
        for session in list(services.sessions):
            await services.sessions.close(session)
        for closer in reversed(self._closers):
            try:
                res = closer()
                if hasattr(res, "__await__"):
                    await res
            except Exception:
                log.exception("closing a carnb engine failed")
        self._closers.clear()

    def __enter__(self) -> Runtime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls -----------------------------------------------------------------------------
    def call(self, method: str, params: Any = None, *, timeout: float | None = 120) -> Any:
        """Call a method as the notebook's session, from any thread but the loop thread."""
        return self.loop_thread.call(self._invoke(method, params), timeout=timeout)

    async def acall(self, method: str, params: Any = None) -> Any:
        """The same from async code (an async cell on the kernel's loop)."""
        return await self.loop_thread.wrap(self._invoke(method, params))

    def _invoke(self, method: str, params: Any) -> Coroutine[Any, Any, Any]:
        if self.dispatcher is None or self.session is None:
            raise CarnbError("the carnb runtime is not started")
        return self.dispatcher.invoke(self.session, method, params)

    def run_on_loop(self, coro: Coroutine[Any, Any, Any], timeout: float | None = 120) -> Any:
        """Run ``coro`` on the server loop and wait (Ctrl-C and the timeout cancel it)."""
        return self.loop_thread.call(coro, timeout=timeout)

    def submit(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        """Schedule ``coro`` on the server loop without waiting."""
        return self.loop_thread.submit(coro)

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the server loop (inline if already there; dropped once stopped)."""
        self.loop_thread.call_soon(fn, *args)

    # -- notebook tools --------------------------------------------------------------------
    def register_tool(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        parameters: dict[str, Any] | None = None,
        share: bool | Iterable[str] = False,
        timeout: float | None = None,
        approve: bool = False,
    ) -> ToolSchema:
        """Make ``fn`` a tool of the notebook's session (what ``@carnb.tool`` does).

        The schema comes from ``fn``'s signature and docstring unless ``parameters`` (a JSON
        Schema object) is given. ``share=True`` offers it to every session, a list of agent ids
        to the sessions bound to those agents; by default only the notebook's own proposals
        see it. Calls run in a worker thread, each bounded by its action's ``timeout_ms``, else
        ``timeout`` seconds, else ``Settings.tool_timeout``. Registering a name again replaces
        the tool. ``approve=True``: every proposal calling it waits for a supervisor's
        decision, or the approval ledger's when nobody supervises. Returns the schema
        registered."""
        if timeout is not None and (isinstance(timeout, bool) or not timeout > 0):
            raise CarnbError(f"timeout must be a positive number of seconds, got {timeout!r}")
        schema = schema_of_function(fn, name=name, description=description, parameters=parameters)
        if isinstance(share, bool):
            shared: bool | frozenset[str] = share
        elif isinstance(share, str):
            shared = frozenset([share])
        else:
            shared = frozenset(share)
            if not all(isinstance(a, str) for a in shared):
                raise CarnbError("share must be True, False or a list of agent ids")
        tool = LocalTool(schema, fn, timeout=timeout, share=shared, approve=bool(approve))
        self._on_loop(self._add_tool, tool)
        return schema

    def watch_proposals(self, fn: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``fn(event)`` on the server loop as actions of any session's proposal start and
        finish (see :meth:`carnb.app.toolhub.ToolHub.watch`); returns the remover."""
        if self.services is None:
            raise CarnbError("the carnb runtime is not started")
        return self.services.tools.watch(fn)

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

    def unregister_tool(self, name: str) -> int:
        """Remove a notebook tool; returns how many were removed (0 or 1)."""
        removed: int = self.call("tools.unregister", {"name": name})["removed"]
        return removed

    def _add_tool(self, tool: LocalTool) -> None:
        if self.services is None or self.session is None:
            raise CarnbError("the carnb runtime is not started")
        self.services.tools.add_local(self.session, tool)

    # -- supervision -----------------------------------------------------------------------
    def add_supervisor(
        self,
        fn: Callable[[dict[str, Any]], Any],
        *,
        name: str | None = None,
        tools: Iterable[str] | None = None,
        sessions: Iterable[str] | None = None,
        min_reversibility: str | None = None,
        timeout: float = SUPERVISOR_FN_TIMEOUT_S,
    ) -> str:
        """Make ``fn(intent) -> decision`` a supervisor of every session's proposals (what
        ``carnb.supervisor`` does); returns its key. ``intent`` holds the full parameters;
        ``fn`` returns ``"allow"``, ``("deny", reason)``, ``{"kind": "escalate", "reason":
        ...}``; it runs in a worker thread, and an exception or no answer within ``timeout``
        seconds is a deny. The same name again replaces it."""
        flt = Filter.parse(
            {
                k: v
                for k, v in (
                    ("tools", None if tools is None else list(tools)),
                    ("sessions", None if sessions is None else list(sessions)),
                    ("min_reversibility", min_reversibility),
                )
                if v is not None
            }
        )
        if isinstance(timeout, bool) or not timeout > 0:
            raise CarnbError(f"timeout must be a positive number of seconds, got {timeout!r}")
        key = f"python:{name or getattr(fn, '__name__', 'supervisor')}"
        services = self._services()
        notify = function_supervisor(services.supervision, key, fn, timeout)
        self._on_loop(services.supervision.add, key, flt, notify)
        return key

    def watch_intents(self, fn: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``fn(intent)`` on the server loop as proposals are parked at the gate, decided
        and released (the intent with full parameters and its decisions); returns the
        remover."""
        supervision = self._services().supervision
        return supervision.watch(lambda intent: fn(intent.detail()))

    def remove_supervisor(self, key: str) -> bool:
        """Stop a supervisor ``add_supervisor`` made; what it left parked fails closed."""
        return bool(self._on_loop(self._services().supervision.unsubscribe, key))

    def _services(self) -> Services:
        if self.services is None:
            raise CarnbError("the carnb runtime is not started")
        return self.services

    def _on_loop(self, fn: Callable[..., Any], *args: Any) -> Any:
        async def run() -> Any:
            return fn(*args)

        return self.loop_thread.call(run(), timeout=30)

    # -- notebook models -------------------------------------------------------------------
    def register_model(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        default: bool = False,
        timeout: float | None = None,
        embed: Callable[..., Any] | None = None,
    ) -> str:
        """Make ``fn(request) -> reply`` (sync or ``async def``) a model of this server, so
        ``infer`` reaches it (what ``carnb.model`` does). ``name`` defaults to the function's
        name; the first model registered (or one with ``default=True``) answers requests that
        name no model. ``embed(texts) -> vectors`` serves ``embed``. Each call runs in a worker
        thread, bounded by ``timeout`` seconds (else ``Settings.model_timeout``). Registering
        a name again replaces the model. Returns the name."""
        if not callable(fn):
            raise CarnbError(f"a model must be callable, got {type(fn).__name__}")
        if timeout is not None and (isinstance(timeout, bool) or not timeout > 0):
            raise CarnbError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if embed is not None and not callable(embed):
            raise CarnbError("embed must be callable (texts -> list of vectors)")
        model_name = name or getattr(fn, "__name__", None) or "model"
        if self.services is None:
            raise CarnbError("the carnb runtime is not started")
        backend = PythonModel(fn, self.services.models.pool, embed_fn=embed, timeout=timeout)
        models = self.services.models
        self._on_loop(lambda: models.add(model_name, backend, default=default))
        return model_name

    def unregister_model(self, name: str) -> bool:
        """Remove a model; ``False`` if there was none of that name."""
        if self.services is None:
            raise CarnbError("the carnb runtime is not started")
        removed: bool = self._on_loop(self.services.models.remove, name)
        return removed

    def models(self) -> dict[str, Any]:
        """``{default, models: [{name, kind, default, embed, timeout_s}]}``."""
        described: dict[str, Any] = self.call("models.list")
        return described

    def set_default_model(self, name: str) -> None:
        self.call("models.set_default", {"name": name})

    def infer(self, params: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        """``infer`` as the notebook's session, also returning the request the model was given
        (``{"reply": ..., "request": ...}``: its ``context`` is what ``context_query`` added)."""
        services, session = self.services, self.session
        if services is None or session is None:
            raise CarnbError("the carnb runtime is not started")

        async def run() -> dict[str, Any]:
            reply, request = await services.models.infer(params, context_source(services, session))
            await record_served(services, session, request, reply)  # as for a client's infer
            return {"reply": reply, "request": request}

        result: dict[str, Any] = self.loop_thread.call(run(), timeout=timeout)
        return result

    def chat(
        self, agent_id: str, prompt: str, *, timeout: float = 300, **extra: Any
    ) -> list[dict[str, Any]]:
        """``agents.chat`` as the notebook's session: send ``prompt`` to the attached agent and
        return its events (``{kind, delta, ...}``) once it says ``done`` or ``error``."""
        services, dispatcher, session = self.services, self.dispatcher, self.session
        if services is None or dispatcher is None or session is None:
            raise CarnbError("the carnb runtime is not started")

        async def run() -> list[dict[str, Any]]:
            params = {"agent_id": agent_id, "prompt": prompt, **extra}
            ack = await dispatcher.invoke(session, "agents.chat", params)
            return await services.chats.wait(ack["session_id"], timeout)

        events: list[dict[str, Any]] = self.loop_thread.call(run(), timeout=timeout + 5)
        return events

    # -- agents ----------------------------------------------------------------------------
    def register_agent(self, name: str) -> str:
        token = self.credentials.agents.register(name)
        self._write_connection_file()
        return token

    def agents_on_disk(self) -> dict[str, dict[str, Any]]:
        """Agents the data directory knows, registered in this process or not:
        ``{agent_id: {"graph": bool, "runs": int}}`` (a memory graph, runs in the store).
        Runs owned by a ``name:`` label are not an agent's. Reads file names and one grouped
        query; safe from any thread."""
        found: dict[str, dict[str, Any]] = {}
        home = self._memory_home
        if home is not None:
            names = (
                graph_names(home.graphs_dir / "agents")
                if home.store is None
                else home.store.names("agents")
            )
            for agent_id in names:
                found[agent_id] = {"graph": True, "runs": 0}
        store = self._run_store
        if store is not None and not store.closed:
            for owner, count in store.run_counts_by_agent().items():
                if not owner.startswith(NAME_PREFIX):
                    found.setdefault(owner, {"graph": False, "runs": 0})["runs"] = count
        return found

    def client_env(self, agent: str | None = None) -> dict[str, str]:
        """The environment a client process needs to attach (``car-runtime`` reads these)."""
        env = {"CAR_DAEMON_URL": self.url}
        if agent is not None:
            token = self.credentials.agents.token_for(agent)
            if token is None and agent in self.credentials.agents:
                raise CarnbError(
                    f"agent {agent!r} was registered by another server of the team store; "
                    "its token is in that server's connection file (the store keeps only hashes)"
                )
            if token is None:
                raise CarnbError(
                    f"unknown agent {agent!r}: register it with `%car agent add {agent}`"
                )
            env["CAR_AGENT_ID"] = agent
            env["CAR_AGENT_TOKEN"] = token
        elif self.credentials.auth_enabled:
            env["CAR_AUTH_TOKEN"] = self.token
        return env

    # -- views (the notebook's panel and explorer read through these) ------------------------
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
        services, dispatcher = self.services, self.dispatcher
        if services is None or dispatcher is None:
            return []
        snaps = []
        for session in services.sessions:
            snap = session.snapshot()
            if snap.get("fact_count") is None and services.memory is not None:
                if session.effective_memgine is None:
                    snap["fact_count"] = 0
                else:
                    snap["fact_count"] = await _count(dispatcher, session)
            snap["tools"] = [t["name"] for t in self.session_tools(session)]
            rid = session.current_run_id
            snap["run_usage"] = services.meter.run_totals([rid]).get(rid) if rid else None
            snaps.append(snap)
        return snaps

    def watch(self, on_change: Callable[[], None]) -> Callable[[], None]:
        """Call ``on_change()`` on the server loop whenever a session changes, attaches or
        detaches. Call this on the server loop; it returns the (idempotent) remover."""
        if self.services is None:
            raise CarnbError("the carnb runtime is not started")
        return _SessionWatch(self.services, self.loop_thread, on_change).remove

    def watch_runs(self, on_record: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``on_record(event)`` on the server loop for every record the run store commits
        (``{run_id, agent_id, record, cursor, status}``, any run; callers filter). Safe from
        any thread; returns the (idempotent) remover."""
        store = self._run_store
        if store is None:
            raise CarnbError("run tracing is off in this runtime (Settings(runs=False))")
        loop_thread = self.loop_thread

        def forward(event: dict[str, Any]) -> None:  # in the writing thread, store lock held
            loop_thread.call_soon(on_record, event)

        return store.add_listener(forward)

    # -- connection file --------------------------------------------------------------------
    def _write_connection_file(self) -> None:
        if self.server is None:
            return
        path = self.settings.connection_file
        if path is None:
            path = self.settings.home / "run" / f"carnb-{os.getpid()}-{self.port}.json"
        path = Path(path).expanduser()
        info = {
            "url": self.url,
            "token": self.token if self.credentials.auth_enabled else None,
            "host_token": self.host_token,
            "auth_enabled": self.credentials.auth_enabled,
            "pid": os.getpid(),
            "home": str(self.settings.home),
            "agents": self.credentials.agents.as_mapping(),
        }
        write_private_json(path, info)
        self.connection_file = path

    def _remove_connection_file(self) -> None:
        path, self.connection_file = self.connection_file, None
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


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


async def _count(dispatcher: Dispatcher, session: ClientSession) -> int | None:
    """``memory.fact_count`` as ``session``, or None when its graph does not answer in time."""
    try:
        value = await asyncio.wait_for(
            dispatcher.invoke(session, "memory.fact_count", {}), COUNT_TIMEOUT_S
        )
    except (TimeoutError, CarnbError) as exc:
        log.debug("fact count of %s unavailable: %s", session.client_id, exc)
        return None
    return value if isinstance(value, int) else None


class _SessionWatch:
    """One observer of every session: a listener on each live session (added as sessions
    attach, removed as they detach) and a host-event watcher; each change calls ``on_change``
    on the server loop. Listeners may fire on any thread, so they only hand over to the loop."""

    def __init__(
        self, services: Services, loop_thread: LoopThread, on_change: Callable[[], None]
    ) -> None:
        self._services = services
        self._loop_thread = loop_thread
        self._on_change = on_change
        self._listeners: dict[str, Callable[[], None]] = {}
        self._closed = False
        for session in services.sessions:
            self._add(session)
        self._unwatch_events = services.events.watch(self._on_event)
        # a metered call changes its run's tokens and cost, not its session
        self._unwatch_meter = services.meter.watch(lambda: loop_thread.call_soon(self._changed))

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
        self._loop_thread.call_soon(self._changed)

    def _on_event(self, event: dict[str, Any]) -> None:
        self._loop_thread.call_soon(self._host_event, event)

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

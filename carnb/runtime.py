"""The composition root: the loop thread, the application, the server and the connection file.

A :class:`Runtime` (what ``%load_ext carnb`` and ``python -m carnb serve`` start) mints the
launch secrets, starts the loop thread, assembles the application on it (:mod:`carnb.assembly`),
starts the server, opens the notebook's session and writes the connection file; :meth:`close`
undoes it all. Its bases: the notebook's API (:mod:`carnb.app.notebook`) and the widgets' views
(:mod:`carnb.app.views`)."""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from carnb.app.notebook import NotebookSession
from carnb.app.services import Services
from carnb.app.views import RuntimeViews
from carnb.assembly import Assembly
from carnb.config import Settings
from carnb.connection import remove_connection_file, write_connection_file
from carnb.errors import CallerFault, ServerFault
from carnb.protocol.auth import Credentials
from carnb.protocol.session import ClientSession
from carnb.server.dispatch import Dispatcher
from carnb.server.loopthread import LoopThread
from carnb.server.ws import ServerConfig, SessionServer

log = logging.getLogger("carnb.runtime")

_current: Runtime | None = None
_current_lock = threading.Lock()


def current() -> Runtime:
    """The runtime started by ``%load_ext carnb`` in this process."""
    rt = _current
    if rt is None or not rt.running:
        raise CallerFault("carnb is not loaded: run `%load_ext carnb` first")
    return rt


def set_current(rt: Runtime | None) -> None:
    global _current
    with _current_lock:
        _current = rt


class Runtime(NotebookSession, RuntimeViews):
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.loop_thread = LoopThread()
        self.credentials = Credentials(auth_enabled=self.settings.auth)
        for name in self.settings.agents:
            self.credentials.agents.register(name)
        self.assembly = Assembly(self.settings, self.credentials, self.call_soon)
        self.services: Services | None = None
        self.server: SessionServer | None = None
        self.dispatcher: Dispatcher | None = None
        self.session: ClientSession | None = None
        self.connection_file: Path | None = None
        self._lock = threading.RLock()

    # -- properties ------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.server is not None and self.loop_thread.running

    @property
    def url(self) -> str:
        if self.server is None:
            raise ServerFault("the carnb runtime is not started")
        return self.server.url

    @property
    def port(self) -> int:
        if self.server is None or self.server.port is None:
            raise ServerFault("the carnb runtime is not started")
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

    @property
    def store_display(self) -> str:
        """The store in use, for people (a PostgreSQL URL without its password)."""
        return self.settings.store_setting.display()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> Runtime:
        with self._lock:
            if self.running:
                return self
            self.settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.loop_thread.start()
            try:
                self.loop_thread.call(self._astart(), timeout=60)
                self._write_connection_file()
            except BaseException:
                self.close()
                raise
            return self

    async def _astart(self) -> None:
        services, table = self.assembly.open()
        self.services = services
        self.dispatcher = Dispatcher(services, table)
        server = SessionServer(ServerConfig.of(self.settings), self.dispatcher)
        await server.start()
        self.server = server
        self.session = self.assembly.open_notebook_session()

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
            remove_connection_file(self.connection_file)
            self.connection_file = None
            if _current is self:
                set_current(None)

    async def _aclose(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            await server.close()
        await self.assembly.close()

    def __enter__(self) -> Runtime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- onto the server loop --------------------------------------------------------------
    async def acall(self, method: str, params: Any = None) -> Any:
        """:meth:`call` from async code (an async cell on the kernel's loop)."""
        return await self.loop_thread.wrap(self._invoke(method, params))

    def _invoke(self, method: str, params: Any) -> Coroutine[Any, Any, Any]:
        return self._invoke_as(self.session, method, params)

    def _invoke_as(
        self, session: ClientSession | None, method: str, params: Any
    ) -> Coroutine[Any, Any, Any]:
        if self.dispatcher is None or session is None:
            raise ServerFault("the carnb runtime is not started")
        return self.dispatcher.invoke(session, method, params)

    def run_on_loop(self, coro: Coroutine[Any, Any, Any], timeout: float | None = 120) -> Any:
        """Run ``coro`` on the server loop and wait (Ctrl-C and the timeout cancel it)."""
        return self.loop_thread.call(coro, timeout=timeout)

    def submit(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        """Schedule ``coro`` on the server loop without waiting."""
        return self.loop_thread.submit(coro)

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the server loop (inline if already there; dropped once stopped)."""
        self.loop_thread.call_soon(fn, *args)

    # -- agents ----------------------------------------------------------------------------
    def register_agent(self, name: str) -> str:
        token = self.credentials.agents.register(name)
        self._write_connection_file()
        return token

    def agents_on_disk(self) -> dict[str, dict[str, Any]]:
        """See :meth:`carnb.assembly.Assembly.agents_on_disk`."""
        return self.assembly.agents_on_disk()

    def watch_memory(self, on_write: Callable[[], None]) -> Callable[[], None]:
        """See :meth:`carnb.assembly.Assembly.watch_memory`."""
        return self.assembly.watch_memory(on_write)

    def client_env(self, agent: str | None = None) -> dict[str, str]:
        """The environment a client process needs to attach (``car-runtime`` reads these)."""
        return self.credentials.client_env(self.url, agent)

    # -- connection file --------------------------------------------------------------------
    def _write_connection_file(self) -> None:
        if self.server is not None:
            path = write_connection_file(self.settings, self.credentials, self.url, self.port)
            self.connection_file = path

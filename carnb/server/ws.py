"""The WebSocket side of the session server: one connection, one ``ClientSession``.

Runs on the host loop (``websockets`` asyncio API). Per connection: frames are read in order;
``inline`` methods are answered at once, others run as tasks (at most ``max_in_flight`` at a
time, so a client that floods requests is slowed down rather than buffered without bound) and
are answered when done, out of order, matched by ``id``. Notifications to the peer go through a
bounded queue; a peer that does not read them is disconnected rather than buffered forever.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from carnb.errors import INVALID_REQUEST, CarnbError
from carnb.protocol.jsonrpc import (
    Invalid,
    Notification,
    Request,
    error_text,
    notification_text,
    params_object,
    parse_frame,
    result_text,
)
from carnb.protocol.session import ClientSession, new_client_id
from carnb.server.dispatch import AuthRequired, Dispatcher, Method

log = logging.getLogger("carnb.server.ws")

BINARY_REPLY = error_text(
    None,
    INVALID_REQUEST,
    "invalid request: binary frames are not supported; send each JSON-RPC object as a text frame",
)


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 0
    allowed_origins: tuple[str, ...] = ()
    max_frame_bytes: int = 16 * 1024 * 1024
    ping_interval: float | None = 30.0
    ping_timeout: float | None = 30.0
    close_timeout: float = 3.0
    max_in_flight: int = 64
    max_queued_notifications: int = 1024


class SessionServer:
    """Owns the listening socket and every live connection."""

    def __init__(self, config: ServerConfig, dispatcher: Dispatcher) -> None:
        self.config = config
        self.dispatcher = dispatcher
        self.services = dispatcher.services
        self._server: Server | None = None
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the server is not started")
        host = self.config.host
        if ":" in host:
            host = f"[{host}]"
        return f"ws://{host}:{self.port}/"

    async def start(self) -> None:
        if self._server is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        origins: list[Any] = [None, *self.config.allowed_origins]
        self._server = await serve(
            self._handle,
            self.config.host,
            self.config.port,
            origins=origins,
            max_size=self.config.max_frame_bytes,
            ping_interval=self.config.ping_interval,
            ping_timeout=self.config.ping_timeout,
            close_timeout=self.config.close_timeout,
            compression=None,
            server_header="carnb",
        )
        sock = next(iter(self._server.sockets))
        self.port = sock.getsockname()[1]
        log.info("carnb session server listening on %s", self.url)

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close(close_connections=True)
        await server.wait_closed()
        log.info("carnb session server stopped")

    # -- one connection --------------------------------------------------------------------
    async def _handle(self, ws: ServerConnection) -> None:
        peer = ws.remote_address
        session = ClientSession(
            client_id=new_client_id("c"),
            kind="socket",
            peer=f"{peer[0]}:{peer[1]}" if peer else "",
            authenticated=not self.services.credentials.auth_enabled,
        )
        outbox: asyncio.Queue[str] = asyncio.Queue(self.config.max_queued_notifications)
        writer = asyncio.create_task(self._write_notifications(ws, outbox))
        session.notifier = self._notifier(ws, session, outbox)
        hub = self.services.sessions
        hub.open(session)
        in_flight = asyncio.Semaphore(self.config.max_in_flight)
        tasks: set[asyncio.Task[None]] = set()
        try:
            async for frame in ws:
                if isinstance(frame, bytes):
                    await ws.send(BINARY_REPLY)
                    continue
                msg = parse_frame(frame)
                if isinstance(msg, Invalid):
                    await ws.send(msg.reply)
                    continue
                try:
                    method = self.dispatcher.resolve(session, msg.method)
                except AuthRequired as exc:
                    if isinstance(msg, Request):
                        await ws.send(error_text(msg.id, exc.code, exc.message))
                    await ws.close(1008, "auth required")
                    break
                except CarnbError as exc:
                    if isinstance(msg, Request):
                        await ws.send(error_text(msg.id, exc.code, exc.message, exc.data))
                    continue
                if method.mode == "inline":
                    reply = self.dispatcher.run_inline(method, session, msg)
                    if reply is not None:
                        await ws.send(reply)
                    continue
                await in_flight.acquire()
                task = asyncio.create_task(self._run(ws, session, method, msg, in_flight))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except ConnectionClosed:
            pass
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            session.notifier = None
            await hub.close(session)
            log.debug("connection %s closed (code %s)", session.client_id, ws.close_code)

    async def _run(
        self,
        ws: ServerConnection,
        session: ClientSession,
        method: Method,
        msg: Request | Notification,
        in_flight: asyncio.Semaphore,
    ) -> None:
        try:
            try:
                result = await self.dispatcher._run(method, session, params_object(msg.params))
                text = result_text(msg.id, result) if isinstance(msg, Request) else None
            except CarnbError as exc:
                text = (
                    error_text(msg.id, exc.code, exc.message, exc.data)
                    if isinstance(msg, Request)
                    else None
                )
        finally:
            in_flight.release()
        if text is not None:
            try:
                await ws.send(text)
            except ConnectionClosed:
                log.debug("peer of %s left before the reply to %s", session.client_id, msg.method)

    def _notifier(
        self, ws: ServerConnection, session: ClientSession, outbox: asyncio.Queue[str]
    ) -> Any:
        loop = self._loop
        assert loop is not None

        def put(text: str) -> None:
            if session.closed:
                return
            try:
                outbox.put_nowait(text)
            except asyncio.QueueFull:
                log.warning(
                    "session %s does not read its notifications; disconnecting it",
                    session.client_id,
                )
                asyncio.ensure_future(ws.close(1008, "notifications not read"))

        def notify(method: str, params: Any) -> None:
            text = notification_text(method, params)
            if threading.get_ident() == self._loop_thread:
                put(text)
            else:
                loop.call_soon_threadsafe(put, text)

        return notify

    @staticmethod
    async def _write_notifications(ws: ServerConnection, outbox: asyncio.Queue[str]) -> None:
        try:
            while True:
                text = await outbox.get()
                await ws.send(text)
        except ConnectionClosed:
            return

"""The WebSocket side of the session server: one connection, one ``ClientSession``.

Runs on the server loop (``websockets`` asyncio API). This module only moves frames: each frame
read goes to :meth:`~carnb.server.dispatch.Dispatcher.receive` in order (frames longer than
``PARSE_OFF_LOOP_CHARS`` are parsed on the bulk thread first), and its outcome is carried
out: a reply is sent at once, by the reader itself (most frames: no task or coroutine of their
own); a deferred reply runs as a task (at most
``max_in_flight`` at a time, so a client that floods requests is slowed down rather than
buffered without bound) and is sent when done, out of order, matched by ``id``; a close sends
its reply and closes the socket. A connection that has not authenticated within
``auth_timeout`` seconds is closed (1008), and until it authenticates its frames may be at most
``max_frame_bytes_before_auth`` (bigger: close 1009 as soon as the frame header arrives, before
any of it is read or parsed); the configured ``max_frame_bytes`` applies from the moment
``session.auth`` succeeds (set before its reply is sent). Notifications to the peer go through
a bounded outbox; a peer that does not read them is disconnected rather than buffered forever.
Requests the server sends the peer (``tools.execute``) go through the connection's
:class:`~carnb.app.peercalls.PeerCalls`: written at once from the caller's task when nothing is
queued before them (a turn of the loop sooner than the writer would), else into the same outbox
behind what is queued; when the connection ends its pending calls fail.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from carnb.app.peercalls import PeerCalls
from carnb.app.schedule import in_bulk
from carnb.config import (
    AUTH_TIMEOUT_S,
    BIND_ADDRESS,
    CLOSE_TIMEOUT_S,
    MAX_FRAME_BYTES,
    MAX_FRAME_BYTES_BEFORE_AUTH,
    MAX_IN_FLIGHT,
    MAX_QUEUED_NOTIFICATION_CHARS,
    MAX_QUEUED_NOTIFICATIONS,
    PARSE_OFF_LOOP_CHARS,
    PING_INTERVAL_S,
)
from carnb.protocol.jsonrpc import MAX_FRAME_VALUES, Message, notification_text, parse_frame
from carnb.protocol.session import ClientSession, new_client_id
from carnb.server.dispatch import Close, Deferred, Dispatcher, Outcome, Reply
from carnb.server.logthrottle import ThrottleFilter, loop_exception_handler
from carnb.server.quickack import ack_now

log = logging.getLogger("carnb.server.ws")


class _NoFrameDumps(logging.LoggerAdapter):  # type: ignore[type-arg]
    """websockets' connection logger minus its DEBUG output: websockets dumps every frame at
    DEBUG, and frames carry tokens (``session.auth``) and user data. INFO and up pass through
    to ``carnb.server.wire`` as usual."""

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and self.logger.isEnabledFor(level)


_wire_logger = logging.getLogger("carnb.server.wire")
_wire_logger.addFilter(ThrottleFilter())  # a flood of failing peers must not flood the log
wire_log = _NoFrameDumps(_wire_logger, {})

AUTH_TIMEOUT_REASON = "auth timeout: call session.auth first"


@dataclass(frozen=True)
class ServerConfig:
    """The listening socket and the limits of each connection (defaults: :mod:`carnb.config`)."""

    bind_address: str = BIND_ADDRESS
    port: int = 0
    allowed_origins: tuple[str, ...] = ()
    max_frame_bytes: int = MAX_FRAME_BYTES
    max_frame_bytes_before_auth: int = MAX_FRAME_BYTES_BEFORE_AUTH  # until session.auth succeeds
    ping_interval: float | None = PING_INTERVAL_S
    ping_timeout: float | None = PING_INTERVAL_S
    close_timeout: float = CLOSE_TIMEOUT_S
    max_in_flight: int = MAX_IN_FLIGHT
    max_queued_notifications: int = MAX_QUEUED_NOTIFICATIONS
    max_queued_notification_chars: int = MAX_QUEUED_NOTIFICATION_CHARS
    auth_timeout: float | None = AUTH_TIMEOUT_S  # None: no deadline


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
        host = self.config.bind_address
        if ":" in host:
            host = f"[{host}]"
        return f"ws://{host}:{self.port}/"

    async def start(self) -> None:
        if self._server is not None:
            return
        self._loop = asyncio.get_running_loop()
        if self._loop.get_exception_handler() is None:
            # e.g. accept() failing when file handles run out: reported once per failed accept
            self._loop.set_exception_handler(loop_exception_handler())
        self._loop_thread = threading.get_ident()
        origins: list[Any] = [None, *self.config.allowed_origins]
        self._server = await serve(
            self._handle,
            self.config.bind_address,
            self.config.port,
            origins=origins,
            # the limit of a fresh connection; _allow_full_frames lifts it after session.auth
            max_size=self._first_frame_limit(),
            ping_interval=self.config.ping_interval,
            ping_timeout=self.config.ping_timeout,
            close_timeout=self.config.close_timeout,
            compression=None,
            server_header="carnb",
            logger=wire_log,
        )
        sock = next(iter(self._server.sockets))
        self.port = sock.getsockname()[1]
        log.info("carnb session server listening on %s", self.url)

    def _first_frame_limit(self) -> int:
        if not self.services.credentials.auth_enabled:
            return self.config.max_frame_bytes
        return min(self.config.max_frame_bytes_before_auth, self.config.max_frame_bytes)

    def _allow_full_frames(self, ws: ServerConnection) -> None:
        """Lift the frame limit to the configured one once the session has authenticated.
        websockets reads the limit when the next frame's first byte arrives, so frames sent
        after the ``session.auth`` reply get the new limit."""
        ws.protocol.max_message_size = self.config.max_frame_bytes

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
        outbox = Outbox(
            self.config.max_queued_notifications, self.config.max_queued_notification_chars
        )
        writer = asyncio.create_task(self._write_notifications(ws, outbox))
        session.notifier = self._notifier(ws, session, outbox)
        session.callbacks = PeerCalls(
            lambda text: self._queue(ws, session, outbox, text),
            name=session.client_id,
            send_now=lambda text: self._send_now(ws, session, outbox, text),
        )
        hub = self.services.sessions
        hub.open(session)
        in_flight = asyncio.Semaphore(self.config.max_in_flight)
        tasks: set[asyncio.Task[None]] = set()
        deadline = self._auth_deadline(ws, session)
        try:
            async for frame in ws:
                was_authenticated = session.authenticated
                if isinstance(frame, str) and len(frame) > PARSE_OFF_LOOP_CHARS:
                    # frames are handled in order, so the next frame of this peer waits;
                    # others do not
                    msg = await in_bulk(session, _parse_big_frame, frame)
                    outcome = self.dispatcher.receive_message(session, msg)
                else:
                    outcome = self.dispatcher.receive(session, frame)
                if session.authenticated and not was_authenticated:
                    self._allow_full_frames(ws)
                if type(outcome) is Reply and outcome.text is not None:  # most frames
                    await ws.send(outcome.text)
                elif not await self._carry_out(ws, outcome, in_flight, tasks):
                    break
        except ConnectionClosed:
            pass
        finally:
            session.callbacks.close()
            if deadline is not None:
                deadline.cancel()
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            session.notifier = None
            await hub.close(session)
            log.debug("connection %s closed (code %s)", session.client_id, ws.close_code)

    async def _carry_out(
        self,
        ws: ServerConnection,
        outcome: Outcome,
        in_flight: asyncio.Semaphore,
        tasks: set[asyncio.Task[None]],
    ) -> bool:
        """Carry out the outcome of one incoming frame other than a reply to send now (the
        reader sends those itself); ``False`` ends the connection."""
        if isinstance(outcome, Deferred) or outcome.text is None:
            ack_now(ws)  # no reply now to carry the TCP ACK; a Nagle peer would wait for it
        if isinstance(outcome, Deferred):
            try:
                await in_flight.acquire()
            except BaseException:
                outcome.discard()
                raise
            task = asyncio.create_task(self._send_later(ws, outcome, in_flight))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            return True
        if outcome.text is not None:
            await ws.send(outcome.text)
        if isinstance(outcome, Close):
            await ws.close(outcome.code, outcome.reason)
            return False
        return True

    def _auth_deadline(
        self, ws: ServerConnection, session: ClientSession
    ) -> asyncio.TimerHandle | None:
        """Close a connection that has not authenticated within ``auth_timeout`` seconds, so
        idle or stalled peers without a token cannot hold sockets and buffers forever."""
        timeout = self.config.auth_timeout
        if session.authenticated or timeout is None:
            return None

        def expire() -> None:
            if not session.authenticated and not session.closed:
                log.info(
                    "session %s did not authenticate within %s s; closing it",
                    session.client_id,
                    timeout,
                )
                asyncio.ensure_future(ws.close(1008, AUTH_TIMEOUT_REASON))

        return asyncio.get_running_loop().call_later(timeout, expire)

    @staticmethod
    async def _send_later(
        ws: ServerConnection, deferred: Deferred, in_flight: asyncio.Semaphore
    ) -> None:
        try:
            text = await deferred.reply
        finally:
            in_flight.release()
        if text is not None:
            try:
                await ws.send(text)
            except ConnectionClosed:
                log.debug("peer left before its reply was sent")

    def _notifier(
        self, ws: ServerConnection, session: ClientSession, outbox: Outbox
    ) -> Callable[[str, Any], None]:
        loop = self._loop
        assert loop is not None

        def put(text: str) -> None:
            self._queue(ws, session, outbox, text)

        def notify(method: str, params: Any) -> None:
            text = notification_text(method, params)
            if threading.get_ident() == self._loop_thread:
                put(text)
            else:
                loop.call_soon_threadsafe(put, text)

        return notify

    async def _send_now(
        self, ws: ServerConnection, session: ClientSession, outbox: Outbox, text: str
    ) -> bool:
        """Write one request to the peer from the caller's task when nothing is queued before
        it (one turn of the loop sooner than the writer would); else queue it. ``False``: the
        peer does not read. A connection found closing takes the queue too, so the call ends as
        any call the peer leaves unanswered does, when the connection ends."""
        if session.closed or not outbox.idle():
            return self._queue(ws, session, outbox, text)
        try:
            await ws.send(text)
        except ConnectionClosed:
            return self._queue(ws, session, outbox, text)
        return True

    @staticmethod
    def _queue(ws: ServerConnection, session: ClientSession, outbox: Outbox, text: str) -> bool:
        """Queue one frame to the peer (on the server loop); a peer that does not read is
        disconnected and ``False`` returned."""
        if session.closed or outbox.overflowed:
            return False
        if outbox.offer(text):
            return True
        log.warning(
            "session %s does not read its notifications (%d queued, %d characters); "
            "disconnecting it",
            session.client_id,
            outbox.queue.qsize(),
            outbox.size,
        )
        asyncio.ensure_future(ws.close(1008, "notifications not read"))
        return False

    @staticmethod
    async def _write_notifications(ws: ServerConnection, outbox: Outbox) -> None:
        try:
            while True:
                text = await outbox.queue.get()
                try:
                    await ws.send(text)
                finally:
                    outbox.size -= len(text)
        except ConnectionClosed:
            return


def _parse_big_frame(frame: str) -> Message:
    return parse_frame(frame, max_values=MAX_FRAME_VALUES)


class Outbox:
    """Notifications waiting to be written to one peer, bounded in count and in total size.

    A peer that does not read fills it; :meth:`offer` then refuses (and keeps refusing), and the
    server disconnects that peer instead of holding an unbounded backlog in memory. One
    notification is always accepted into an empty outbox, whatever its size."""

    def __init__(self, max_items: int, max_chars: int) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.max_items = max_items
        self.max_chars = max_chars
        self.size = 0  # characters queued or being written
        self.overflowed = False

    def idle(self) -> bool:
        """Nothing queued or being written (and the peer was never found not reading)."""
        return self.size == 0 and not self.overflowed and self.queue.qsize() == 0

    def offer(self, text: str) -> bool:
        busy = self.queue.qsize() > 0 or self.size > 0
        too_big = busy and self.size + len(text) > self.max_chars
        if self.queue.qsize() >= self.max_items or too_big:
            self.overflowed = True
            return False
        self.queue.put_nowait(text)
        self.size += len(text)
        return True

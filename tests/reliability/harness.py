"""Test harness for the reliability suite: a `python -m carnb serve` process whose log goes to a
file (so a chatty server never blocks on a full pipe), an asyncio JSON-RPC client that matches
replies by id, and small helpers (server RSS, raw sockets, fd limits, counters for the report).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import resource
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import read_banner, serve_command

REPO = Path(__file__).resolve().parents[2]

# Figures for the report: every test adds what it did; conftest.py prints them in the terminal
# summary, so a CI log shows the connections, calls, frames and faults behind a green run.
FIGURES: dict[str, Any] = {}


def add(name: str, n: int = 1) -> None:
    FIGURES[name] = int(FIGURES.get(name, 0)) + n


def note(name: str, value: Any) -> None:
    FIGURES[name] = value


def raise_fd_limit(want: int = 4096) -> int:
    """Raise this process's soft fd limit (children inherit it); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


class ServerProc:
    """A real `python -m carnb serve` process with its stderr log in a file."""

    def __init__(
        self,
        home: Path,
        *args: str,
        log_level: str = "WARNING",
        env: dict[str, str] | None = None,
        umask: int | None = None,
        side_dir: Path | None = None,
    ) -> None:
        self.home = home
        self.args = args
        side = side_dir or home.parent  # connection file and log (outside home if home may fill up)
        self.conn_file = side / f"{home.name}-conn.json"
        self.log_path = side / f"{home.name}-server-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop())
        cmd = self.command(home, self.conn_file, *args, log_level=log_level)
        preexec = (lambda: os.umask(umask)) if umask is not None else None  # noqa: E731
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            cwd=REPO,
            env={**os.environ, **(env or {})},
            preexec_fn=preexec,
        )
        self.stdout_lines, self.url, self.info = read_banner(
            self.proc, self.conn_file, self.log_text
        )
        self.ps = psutil.Process(self.proc.pid)

    @staticmethod
    def command(home: Path, conn_file: Path, *args: str, log_level: str = "WARNING") -> list[str]:
        return serve_command(home, conn_file, "--log-level", log_level, *args)

    @staticmethod
    def cwd() -> Path:
        return REPO

    @property
    def token(self) -> str:
        return str(self.info["token"])

    @property
    def host_token(self) -> str:
        return str(self.info["host_token"])

    def agent_token(self, name: str) -> str:
        return str(self.info["agents"][name])

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].strip("/"))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind runs in the server."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        with contextlib.suppress(Exception):
            assert self.proc.stdout is not None
            self.proc.stdout.close()
        self._log.close()
        return rc


class RpcFailed(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.code = error.get("code")
        self.message = error.get("message")
        self.error = error


def well_formed_error(err: Any) -> bool:
    """docs/protocol.md: error objects are always ``{code: int, message: str, data?}``."""
    return (
        isinstance(err, dict)
        and isinstance(err.get("code"), int)
        and not isinstance(err.get("code"), bool)
        and isinstance(err.get("message"), str)
        and set(err) <= {"code", "message", "data"}
    )


class AClient:
    """An asyncio JSON-RPC client on a real socket; a reader task matches replies by id, so
    several requests may be in flight on one connection."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self.notifications: list[dict[str, Any]] = []
        self.unmatched: list[Any] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str, **kw: Any) -> AClient:
        kw.setdefault("open_timeout", 30)
        kw.setdefault("max_size", None)
        kw.setdefault("ping_interval", None)
        ws = await connect(url, **kw)
        return cls(ws)

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                msg = json.loads(frame)
                if isinstance(msg, dict) and "method" in msg and "id" not in msg:
                    self.notifications.append(msg)
                    continue
                key = msg.get("id") if isinstance(msg, dict) else None
                fut = self._pending.pop(key, None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
                else:
                    self.unmatched.append(msg)
        except ConnectionClosed:
            pass
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError(f"connection closed ({self.ws.close_code})"))
                    fut.add_done_callback(lambda f: f.exception())  # nobody may be waiting
            self._pending.clear()

    async def request(
        self, method: str, params: Any = None, *, timeout: float = 30, id_: Any = None
    ) -> dict[str, Any]:
        if id_ is None:
            id_ = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[id_] = fut
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": id_, "method": method}
        if params is not None:
            msg["params"] = params
        await self.ws.send(json.dumps(msg))
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._pending.pop(id_, None)

    async def call(self, method: str, params: Any = None, *, timeout: float = 30) -> Any:
        reply = await self.request(method, params, timeout=timeout)
        if "error" in reply:
            raise RpcFailed(reply["error"])
        return reply["result"]

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.gather(self._reader, return_exceptions=True)


def raw_upgrade(port: int, *, origin: str | None = None, timeout: float = 5) -> socket.socket:
    """A TCP socket that completed the WebSocket upgrade and then does nothing."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    extra = f"Origin: {origin}\r\n" if origin else ""
    s.sendall(
        (
            "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"{extra}\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head[:200]
    return s


def masked_frame(payload: bytes, opcode: int = 0x1, fin: bool = True) -> bytes:
    """One client-to-server WebSocket frame (masked, as RFC 6455 requires)."""
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        head = bytes([first, 0x80 | n])
    elif n < 65536:
        head = bytes([first, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([first, 0x80 | 127]) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


def raw_auth(sock: socket.socket, token: str, bufsize: int = 65536) -> None:
    """Send ``session.auth`` as one masked text frame on a raw upgraded socket; check the ok."""
    request = {"jsonrpc": "2.0", "id": 0, "method": "session.auth", "params": {"token": token}}
    sock.sendall(masked_frame(json.dumps(request).encode()))
    assert b'"ok":true' in sock.recv(bufsize)


def wait_until(pred: Any, timeout: float = 10, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return bool(pred())


def mib(n: int) -> float:
    return round(n / (1024 * 1024), 1)

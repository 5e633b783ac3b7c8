"""Kernel-side fixtures: an in-process IPython shell with carnb's home in tmp_path, a real
ipykernel started through jupyter_client, and a small web page served on 127.0.0.1."""

from __future__ import annotations

import functools
import http.server
import os
import queue
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from carnb.config import Settings
from carnb.kernel.engine import NotebookEngine
from carnb.kernel.parser import build_parser, parse
from tests.conftest import REPO

PAGE = """<!doctype html>
<html><head><title>carnb demo page</title></head>
<body>
<h1 id="greeting">Hello</h1>
<label>Name <input id="name" placeholder="your name"></label>
<button id="go" onclick="document.getElementById('greeting').textContent =
  'Hi ' + document.getElementById('name').value">Greet</button>
<a href="/second.html">Second page</a>
</body></html>
"""
SECOND = """<!doctype html><html><head><title>second</title></head>
<body><p>This is the second page.</p><a href="/">Back home</a></body></html>"""


def port_is_free(port: int) -> bool:
    """No socket listens on the port: a new server (SO_REUSEADDR, as asyncio's) can bind it.
    (Connections the server closed may linger in TIME_WAIT; they do not hold the port.)"""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            return False
    return True


def chromium_path() -> str | None:
    env = os.environ.get("CARNB_CHROMIUM")
    if env and os.access(env, os.X_OK):
        return env
    try:
        from carnb.browser import find_chromium

        return find_chromium()
    except Exception:
        return shutil.which("chromium")


needs_chromium = pytest.mark.skipif(chromium_path() is None, reason="no Chromium installed")


# -- in-process shell ----------------------------------------------------------------------------
@pytest.fixture
def shell(tmp_path: Path) -> Iterator[Any]:
    """IPython's in-process shell with carnb's data directory in tmp_path (not yet loaded)."""
    from IPython.core.interactiveshell import InteractiveShell

    from carnb.kernel import extension

    ip = InteractiveShell.instance()
    home = tmp_path / "carnb-home"
    ip.config.CarMagics.home = str(home)
    ip.config.CarMagics.port = 0
    ip.config.CarMagics.auth = True
    ip.config.CarMagics.allowed_origins = []
    ip.config.CarMagics.chromium = None
    ip.config.CarMagics.switch_interval = None
    yield ip
    if extension.active() is not None:
        ip.run_line_magic("unload_ext", "carnb")
    ip.extension_manager.loaded.discard("carnb")
    ip.magics_manager.magics["line"].pop("car", None)
    ip.magics_manager.magics["cell"].pop("car", None)


@pytest.fixture
def loaded(shell: Any, capsys: pytest.CaptureFixture[str]) -> Any:
    shell.run_line_magic("load_ext", "carnb")
    capsys.readouterr()
    return shell


# -- a page served on localhost ------------------------------------------------------------------
class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "site"
    root.mkdir()
    (root / "index.html").write_text(PAGE)
    (root / "second.html").write_text(SECOND)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root))
    )
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


# -- a real kernel -------------------------------------------------------------------------------
@dataclass
class Executed:
    status: str
    stdout: str = ""
    stderr: str = ""
    outputs: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)  # update_display_data contents
    error: dict[str, Any] | None = None

    @property
    def text(self) -> str:
        """Every text/plain output and stream, joined."""
        parts = [self.stdout, self.stderr]
        for out in self.outputs:
            data = out.get("data") or {}
            if "text/plain" in data:
                parts.append(data["text/plain"])
        if self.error:
            parts.append("\n".join(self.error.get("traceback", [])))
        return "\n".join(parts)

    def data(self, mime: str) -> list[Any]:
        return [o["data"][mime] for o in self.outputs if mime in (o.get("data") or {})]


class Kernel:
    """A real ipykernel (the venv's python) driven over jupyter_client's blocking client."""

    def __init__(
        self,
        home: Path,
        extra_arguments: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        from jupyter_client.manager import KernelManager

        self.home = home
        kenv = {
            **os.environ,
            "CARNB_HOME": str(home),
            "PYTHONPATH": str(REPO),
            "CAR_NO_VERSION_WARNING": "1",
            **(env or {}),
        }
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(extra_arguments=extra_arguments or [], env=kenv, cwd=str(REPO))
        self.kc = self.km.blocking_client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        self.comm_msgs: list[dict[str, Any]] = []

    @property
    def pid(self) -> int:
        return self.km.provisioner.process.pid  # type: ignore[union-attr]

    def submit(self, code: str) -> str:
        return self.kc.execute(code, store_history=True)

    def collect(self, msg_id: str, timeout: float = 60) -> Executed:
        deadline = time.monotonic() + timeout
        res = Executed(status="?")
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"cell did not finish within {timeout} s: {res}")
            try:
                msg = self.kc.get_iopub_msg(timeout=remaining)
            except queue.Empty:
                continue
            kind = msg["msg_type"]
            if kind.startswith("comm_"):
                self.comm_msgs.append(msg)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            content = msg["content"]
            if kind == "stream":
                if content["name"] == "stdout":
                    res.stdout += content["text"]
                else:
                    res.stderr += content["text"]
            elif kind in ("display_data", "execute_result"):
                res.outputs.append(content)
            elif kind == "update_display_data":
                res.updates.append(content)
            elif kind == "error":
                res.error = content
            elif kind == "status" and content["execution_state"] == "idle":
                break
        reply = self.kc.get_shell_msg(timeout=max(1.0, deadline - time.monotonic()))
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.kc.get_shell_msg(timeout=max(1.0, deadline - time.monotonic()))
        res.status = reply["content"]["status"]
        return res

    def run(self, code: str, timeout: float = 60) -> Executed:
        return self.collect(self.submit(code), timeout)

    def ok(self, code: str, timeout: float = 60) -> Executed:
        res = self.run(code, timeout)
        assert res.status == "ok", res.text
        return res

    def value(self, expr: str, timeout: float = 30) -> Any:
        import ast

        res = self.ok(f"print(repr({expr}))", timeout)
        return ast.literal_eval(res.stdout.strip())

    def wait_widget_text(self, marker: str, timeout: float = 15) -> None:
        """Wait until a widget message (``comm_open``/``comm_msg``) carrying ``marker`` reaches
        the frontend, with no cell running."""
        seen = ""
        deadline = time.monotonic() + timeout
        while marker not in seen:
            assert time.monotonic() < deadline, "no widget update reached the frontend"
            try:
                msg = self.kc.get_iopub_msg(timeout=1)
            except queue.Empty:
                continue
            if msg["msg_type"] in ("comm_open", "comm_msg"):
                seen += str(msg["content"])

    def interrupt(self) -> None:
        self.km.interrupt_kernel()

    def shutdown(self) -> None:
        try:
            self.kc.stop_channels()
        finally:
            if self.km.is_alive():
                self.km.shutdown_kernel(now=False)


@pytest.fixture
def start_kernel(tmp_path: Path) -> Iterator[Any]:
    kernels: list[Kernel] = []

    def start(
        extra_arguments: list[str] | None = None,
        env: dict[str, str] | None = None,
        home: Path | None = None,
    ) -> Kernel:
        k = Kernel(home or tmp_path / "kernel-home", extra_arguments, env)
        kernels.append(k)
        return k

    yield start
    for k in kernels:
        k.shutdown()


@pytest.fixture
def kernel(start_kernel: Any) -> Kernel:
    return start_kernel()


def python() -> str:
    return sys.executable


@pytest.fixture
def nb(home: Path) -> Iterator[NotebookEngine]:
    """The IPython-free notebook engine over a real runtime in ``home`` (no browser)."""
    engine = NotebookEngine()
    engine.start(Settings(home=home, browser=False))
    yield engine
    engine.close()


def car(nb: NotebookEngine, line: str) -> Any:
    """``%car LINE`` on ``nb``: what the magic returns."""
    args = parse(build_parser(), line)
    return args.func(nb, args)

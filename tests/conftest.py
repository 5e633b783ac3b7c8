"""Shared fixtures: a started carnb runtime on 127.0.0.1:0 with its data in tmp_path, and a
small synchronous JSON-RPC client over a real WebSocket."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from carnb.config import Settings
from carnb.runtime import Runtime

os.environ.setdefault("CAR_NO_VERSION_WARNING", "1")
os.environ.pop("CARNB_STORE", None)  # each test picks its store itself (default: SQLite)
REPO = Path(__file__).resolve().parents[1]


class RpcFailed(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.code = error.get("code")
        self.message = error.get("message")
        self.error = error


class Client:
    """A plain JSON-RPC client on a real socket (sync websockets API)."""

    def __init__(self, url: str, **kw: Any) -> None:
        self.ws: ClientConnection = connect(url, open_timeout=10, max_size=None, **kw).__enter__()
        self._ids = itertools.count(1)
        self.notifications: list[dict[str, Any]] = []

    def send(self, obj: Any) -> None:
        self.ws.send(obj if isinstance(obj, (str, bytes)) else json.dumps(obj))

    def recv(self, timeout: float = 10) -> dict[str, Any]:
        return json.loads(self.ws.recv(timeout=timeout))

    def recv_reply(self, id_: Any, timeout: float = 10) -> dict[str, Any]:
        """Next reply with this id; notifications on the way are kept in .notifications."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.recv(max(0.01, deadline - time.monotonic()))
            if "id" in msg and msg["id"] == id_:
                return msg
            self.notifications.append(msg)

    def request(self, method: str, params: Any = None, timeout: float = 10) -> dict[str, Any]:
        id_ = next(self._ids)
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": id_, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        return self.recv_reply(id_, timeout)

    def call(self, method: str, params: Any = None, timeout: float = 10) -> Any:
        reply = self.request(method, params, timeout)
        if "error" in reply:
            raise RpcFailed(reply["error"])
        return reply["result"]

    def full_trace(self, run_id: str, timeout: float = 10) -> dict[str, Any]:
        """``runs.get_trace`` read page by page (``next_cursor``): every record of the run."""
        page = self.call("runs.get_trace", {"run_id": run_id}, timeout)
        records = list(page.get("records", []))
        while page.get("next_cursor") is not None:
            params = {"run_id": run_id, "cursor": page["next_cursor"]}
            page = self.call("runs.get_trace", params, timeout)
            records.extend(page["records"])
        return {**page, "records": records}

    def wait_notification(self, method: str, timeout: float = 5) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for i, n in enumerate(self.notifications):
                if n.get("method") == method:
                    return self.notifications.pop(i)
            self.notifications.append(self.recv(max(0.01, deadline - time.monotonic())))

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "carnb-home"
    h.mkdir()
    return h


@pytest.fixture
def make_runtime(home: Path) -> Iterator[Any]:
    started: list[Runtime] = []

    def make(**kw: Any) -> Runtime:
        kw.setdefault("home", home)
        rt = Runtime(Settings(**kw)).start()
        started.append(rt)
        return rt

    yield make
    for rt in started:
        rt.close()


@pytest.fixture
def runtime(make_runtime: Any) -> Runtime:
    return make_runtime(agents=("alice", "bob"))


@pytest.fixture
def connect_client(runtime: Runtime) -> Iterator[Any]:
    clients: list[Client] = []

    def make(auth: str | dict[str, Any] | None = "token", url: str | None = None) -> Client:
        c = Client(url or runtime.url)
        clients.append(c)
        if auth == "token":
            c.call("session.auth", {"token": runtime.token})
        elif auth == "host":
            c.call("session.auth", {"host_token": runtime.host_token})
        elif isinstance(auth, dict):
            c.call("session.auth", auth)
        return c

    yield make
    for c in clients:
        c.close()


def agent_auth(runtime: Runtime, agent: str, **extra: Any) -> dict[str, Any]:
    token = runtime.credentials.agents.token_for(agent)
    assert token is not None
    return {"token": token, "agent_id": agent, **extra}


def serve_command(home: Path, conn_file: Path, *args: str) -> list[str]:
    """The command line of a `python -m carnb serve` with its data in ``home``."""
    return [
        sys.executable,
        "-m",
        "carnb",
        "serve",
        "--home",
        str(home),
        "--connection-file",
        str(conn_file),
        *args,
    ]


def read_banner(
    proc: subprocess.Popen[str], conn_file: Path, why: Any
) -> tuple[list[str], str, dict[str, Any]]:
    """Read serve's two start-up lines: (lines, url, connection info). If it did not start,
    kill it and raise with ``why()`` (its stderr or log) in the message."""
    assert proc.stdout is not None
    lines = [proc.stdout.readline().strip(), proc.stdout.readline().strip()]
    if not lines[0].startswith("carnb serving on "):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"serve did not start: {lines} {why()}")
    return lines, lines[0].removeprefix("carnb serving on "), json.loads(conn_file.read_text())


class ServeProcess:
    """A real `python -m carnb serve` process."""

    def __init__(self, home: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.conn_file = home / "conn.json"
        self.proc = subprocess.Popen(
            serve_command(home, self.conn_file, *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, **(env or {})},
        )
        self.lines, self.url, self.info = read_banner(
            self.proc, self.conn_file, lambda: self.proc.stderr.read() if self.proc.stderr else ""
        )

    def stop(self, sig: int | None = None) -> int:
        import signal as _signal

        if self.proc.poll() is None:
            self.proc.send_signal(sig or _signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@pytest.fixture
def serve_process(home: Path) -> Iterator[Any]:
    procs: list[ServeProcess] = []

    def start(
        *args: str, env: dict[str, str] | None = None, home_dir: Path | None = None
    ) -> ServeProcess:
        p = ServeProcess(home_dir or home, *args, env=env)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.stop()


# -- PostgreSQL: one throw-away server per test session, one database per test ------------------
_pg_databases = itertools.count(1)
PG_TEMPLATE = "carnb_template"


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A PostgreSQL server from the machine's binaries (:mod:`carnb.testing.postgres`), started
    once, with a template database that already holds carnb's schemas."""
    from carnb.pgstore.events import SCHEMA as EVENTS_SCHEMA
    from carnb.pgstore.setting import parse_store
    from carnb.pgstore.store import PostgresStore
    from carnb.testing.postgres import TempPostgres, find_bindir

    if find_bindir() is None:
        pytest.skip("PostgreSQL binaries not found: run tools/ensure-postgresql")
    server = TempPostgres().start()
    try:
        server.create_database(PG_TEMPLATE)
        pg = PostgresStore(parse_store(server.dsn(PG_TEMPLATE))).open()
        pg.runs()
        pg.agents()
        pg.migrate(EVENTS_SCHEMA)
        pg.graphs()
        pg.close()
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(postgres: Any) -> str:
    """A fresh database of its own (copied from the template) for this test."""
    return str(postgres.create_database(f"t{next(_pg_databases)}", template=PG_TEMPLATE))

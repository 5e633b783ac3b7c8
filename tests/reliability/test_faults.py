"""Faults against a live `python -m carnb serve`: clients that vanish mid-request or mid-frame,
a client that never reads its replies or its notifications (the server must not buffer without
bound), and Chromium killed under a session (the next ``browser.run`` relaunches it)."""

from __future__ import annotations

import json
import random
import socket
import struct
import threading
import time
from typing import Any

import psutil
import pytest

from tests.conftest import Client
from tests.reliability.harness import (
    add,
    masked_frame,
    mib,
    note,
    raw_auth,
    raw_upgrade,
    wait_until,
)

pytestmark = pytest.mark.reliability


class Witness(threading.Thread):
    """A connection that keeps making checked calls while faults happen elsewhere."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.c = Client(url)
        self.c.call("session.auth", {"token": token})
        self.calls = 0
        self.failures: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.calls += 1
                v = {"n": self.calls}
                if self.c.call("state.set", {"key": "w", "value": v}) != "ok":
                    self.failures.append("state.set")
                if self.c.call("state.get", {"key": "w"}) != v:
                    self.failures.append("state.get")
                time.sleep(0.005)
        except Exception as exc:  # a dropped or stalled witness is the failure we look for
            self.failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            self.c.close()

    def finish(self) -> None:
        self.stop.set()
        self.join(30)
        add("faults: witness calls checked", self.calls)
        assert self.failures == [], self.failures[:5]


def tcp_buffer_max(name: str, default: int = 6 << 20) -> int:
    """The largest TCP buffer the kernel may give a socket (Linux), in bytes."""
    try:
        with open(f"/proc/sys/net/ipv4/{name}") as fh:
            return int(fh.read().split()[2])
    except (OSError, ValueError, IndexError):
        return default


def rst_close(sock: socket.socket) -> None:
    """Vanish: an abortive close (RST), no close frame, no FIN handshake."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def host_client(srv: Any) -> Client:
    h = Client(srv.url)
    h.call("session.auth", {"host_token": srv.host_token})
    return h


def socket_sessions(h: Client) -> tuple[int, int]:
    events = h.call("host.events", {"limit": 10_000})["events"]
    attached = sum(
        1 for e in events if e["kind"] == "session.attached" and e["payload"]["kind"] == "socket"
    )
    detached = sum(
        1 for e in events if e["kind"] == "session.detached" and e["payload"]["kind"] == "socket"
    )
    return attached, detached


# -- clients that vanish -----------------------------------------------------------------------
def test_clients_that_vanish_mid_request_or_mid_frame(start_server, tmp_path) -> None:
    srv = start_server("--agent", "big")
    memory = srv.home / "memory" / "agents" / "big"  # agent big's own snapshot folder
    memory.mkdir(parents=True, exist_ok=True)
    facts = [
        {"fact_id": f"b{i}", "subject": f"topic {i % 300}", "body": f"body {i} alpha beta {i % 41}"}
        for i in range(20_000)
    ]
    (memory / "big.json").write_text(json.dumps({"format": "carnb.memgine/1", "facts": facts}))
    agent = {"token": srv.agent_token("big"), "agent_id": "big"}
    setup = Client(srv.url)
    setup.call("session.auth", agent)
    assert setup.call("memory.load", {"path": "big.json"}, timeout=120) == 20_000
    setup.close()

    witness = Witness(srv.url, srv.token)
    witness.start()
    rng = random.Random(11)
    kinds = ["load", "persist", "context", "half-frame", "half-handshake"]
    vanished = 0
    for i in range(25):
        kind = kinds[i % len(kinds)]
        if kind == "half-handshake":
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: webs")
            time.sleep(rng.uniform(0, 0.1))
            rst_close(s)
            vanished += 1
            continue
        s = raw_upgrade(srv.port)
        auth = {"token": srv.token} if kind == "load" else agent
        s.sendall(
            masked_frame(
                json.dumps(
                    {"jsonrpc": "2.0", "id": 0, "method": "session.auth", "params": auth}
                ).encode()
            )
        )
        assert b'"ok":true' in s.recv(65536)
        if kind == "load":
            req = {"method": "memory.load", "params": {"path": "big.json"}}
        elif kind == "persist":
            req = {"method": "memory.persist", "params": {"path": f"out/p{i}.json"}}
        elif kind == "context":
            req = {"method": "memory.build_context", "params": {"query": "alpha beta topic 7"}}
        else:
            req = {"method": "state.set", "params": {"key": "k", "value": "v" * 100_000}}
        frame = masked_frame(json.dumps({"jsonrpc": "2.0", "id": 1, **req}).encode())
        if kind == "half-frame":
            frame = frame[: len(frame) // 2]
        s.sendall(frame)
        time.sleep(rng.uniform(0, 0.3))  # somewhere inside the request
        rst_close(s)
        vanished += 1
    h = host_client(srv)
    # every socket session that got as far as attaching is detached again (but the two live ones)
    assert wait_until(lambda: socket_sessions(h)[0] - socket_sessions(h)[1] == 2, timeout=60), (
        socket_sessions(h)
    )
    witness.finish()
    add("faults: clients vanished mid-request/frame/handshake", vanished)

    # persist is atomic: a vanished client leaves a complete file or none, and no temporary files
    # (a persist already running in its worker thread finishes after its session is gone)
    def temporary() -> list[str]:
        return [p.name for p in memory.rglob("*") if p.is_file() and not p.name.endswith(".json")]

    assert wait_until(lambda: temporary() == [], timeout=30), temporary()
    out = sorted((memory / "out").glob("*")) if (memory / "out").exists() else []
    for path in out:
        assert path.suffix == ".json", f"left behind: {path.name}"
        assert len(json.loads(path.read_text())["facts"]) == 20_000
    # the agent graph is intact and the server still serves it
    c = Client(srv.url)
    c.call("session.auth", agent)
    assert c.call("memory.fact_count") == 20_000
    c.close()
    h.close()
    assert srv.alive()
    assert "Traceback" not in srv.log_text(), srv.log_text()[-3000:]


# -- clients that never read -------------------------------------------------------------------
def test_a_client_that_never_reads_its_replies_is_not_buffered_without_bound(start_server) -> None:
    """The server stops reading from a peer whose replies pile up (TCP backpressure) instead of
    queueing replies in memory; everyone else is served meanwhile."""
    srv = start_server()
    big = "x" * (1024 * 1024)  # every state.get reply is 1 MiB
    s = raw_upgrade(srv.port)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    raw_auth(s, srv.token)
    s.sendall(
        masked_frame(
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "state.set",
                    "params": {"key": "big", "value": big},
                }
            ).encode()
        )
    )
    time.sleep(0.3)
    rss_before = srv.rss()
    witness = Witness(srv.url, srv.token)
    witness.start()
    # 64 KiB per request (an ignored extra field), 1 MiB per reply: if the server kept reading
    # and queueing replies, 3000 requests would cost it 3 GiB.
    req = masked_frame(
        json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "state.get",
                "params": {"key": "big", "pad": "y" * 65536},
            }
        ).encode()
    )
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    s.setblocking(False)
    sent_requests = 0
    stalled_since: float | None = None
    deadline = time.monotonic() + 60
    pending = b""
    # Send without ever reading; stop when the server has not read from us for one second.
    while sent_requests < 3000 and time.monotonic() < deadline:
        if not pending:
            pending = req
        try:
            n = s.send(pending)
            pending = pending[n:]
            if not pending:
                sent_requests += 1
            stalled_since = None
        except BlockingIOError:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > 1.0:
                break
            time.sleep(0.01)
    rss_stalled = srv.rss()
    witness.finish()
    assert stalled_since is not None, f"the server read all {sent_requests} requests"
    # what got in is bounded by the kernel's socket buffers and websockets' 16-frame queue,
    # not by server memory (3000 requests would be 192 MiB)
    bound = tcp_buffer_max("tcp_rmem") + tcp_buffer_max("tcp_wmem") + 16 * len(req) + (8 << 20)
    assert sent_requests * len(req) < bound, (sent_requests, bound)
    growth = rss_stalled - rss_before
    assert growth < 64 * 1024 * 1024, f"server grew {mib(growth)} MiB for an unread peer"
    add("faults: requests a non-reading client got in before backpressure", sent_requests)
    note("faults: server RSS growth for a non-reading client (MiB)", mib(growth))
    rst_close(s)
    h = host_client(srv)
    assert wait_until(lambda: socket_sessions(h)[0] - socket_sessions(h)[1] == 1, timeout=30)
    h.close()
    assert srv.alive()


def test_a_subscriber_that_never_reads_notifications_is_cut_off_not_buffered(start_server) -> None:
    """A host subscribed to a run that never reads: the server's notification queue for it is
    bounded (in count and in bytes); when it overflows, that subscriber is disconnected, the
    writer and everyone else carry on, and the server's memory stays bounded."""
    srv = start_server("--agent", "writer")
    w = Client(srv.url)
    w.call("session.auth", {"token": srv.agent_token("writer"), "agent_id": "writer"})
    rid = w.call("runs.start", {"intent": "big turns"})["run_id"]
    s = raw_upgrade(srv.port)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    for i, (method, params) in enumerate(
        [
            ("session.auth", {"host_token": srv.host_token}),
            ("runs.subscribe", {"run_id": rid}),
        ]
    ):
        s.sendall(
            masked_frame(
                json.dumps({"jsonrpc": "2.0", "id": i, "method": method, "params": params}).encode()
            )
        )
    time.sleep(0.3)  # from now on nothing is read from s
    rss_before = srv.rss()
    witness = Witness(srv.url, srv.token)
    witness.start()
    turn = {"prompt": "p", "output": "o" * (200 * 1024)}  # under the 256 KiB per-turn limit
    batches = 40
    for _ in range(batches):  # 40 x 10 turns x 200 KiB = 80 MiB of notifications
        res = w.call("runs.record_turns", {"run_id": rid, "turns": [turn] * 10}, timeout=30)
        assert res["ok"] is True
    rss_after = srv.rss()
    witness.finish()
    add(
        "faults: notification bytes aimed at a non-reading subscriber (MiB)",
        batches * 10 * 200 // 1024,
    )
    growth = rss_after - rss_before
    note("faults: server RSS growth for a non-reading subscriber (MiB)", mib(growth))
    assert growth < 64 * 1024 * 1024, f"server buffered {mib(growth)} MiB for a non-reader"
    # the subscriber was cut off: its socket ends once we finally read what is in it
    s.settimeout(5)
    closed = False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not closed:
        try:
            closed = s.recv(1 << 20) == b""
        except TimeoutError:
            continue
        except ConnectionResetError:
            closed = True
    assert closed, "a subscriber that never reads was kept"
    s.close()
    records: list[Any] = []
    cursor: int | None = 0
    while cursor is not None:  # runs.get_trace answers one page at a time
        page = w.call("runs.get_trace", {"run_id": rid, "cursor": cursor})
        records.extend(page["records"])
        cursor = page["next_cursor"]
    assert len(records) == 1 + batches * 10
    w.close()
    assert srv.alive()


# -- Chromium killed under a session -------------------------------------------------------------
def browser_processes(server_pid: int) -> list[psutil.Process]:
    out = []
    for p in psutil.Process(server_pid).children(recursive=True):
        try:
            if (
                p.status() != psutil.STATUS_ZOMBIE
                and "chrom" in p.name().lower()
                and not any(a.startswith("--type=") for a in p.cmdline())  # the browser process
            ):
                out.append(p)
        except psutil.NoSuchProcess:
            continue
    return out


@pytest.fixture
def page_server() -> Any:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = (
                f"<!doctype html><title>Page {self.path}</title>"
                f"<h1>Hello</h1><button>Press {self.path}</button>"
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.browser
def test_chromium_killed_under_a_session_is_relaunched_by_the_next_run(
    start_server, page_server
) -> None:
    from carnb.browser import find_chromium
    from carnb.errors import BrowserUnavailable

    try:
        find_chromium()
    except BrowserUnavailable as exc:
        pytest.skip(str(exc))
    srv = start_server()
    c = Client(srv.url)
    c.call("session.auth", {"token": srv.token})
    script = {"operations": [{"op": "navigate", "url": f"{page_server}/one"}, {"op": "observe"}]}
    first = c.call("browser.run", {"script": script}, timeout=60)
    assert [st["status"] for st in first["steps"]] == ["ok", "ok"], first
    assert first["steps"][1]["data"]["title"] == "Page /one"
    victims = browser_processes(srv.proc.pid)
    assert victims, "no Chromium process found under the server"
    for p in victims:
        p.kill()
    psutil.wait_procs(victims, timeout=10)
    add("faults: Chromium processes killed under a session", len(victims))
    script = {"operations": [{"op": "navigate", "url": f"{page_server}/two"}, {"op": "observe"}]}
    again = c.call("browser.run", {"script": script}, timeout=60)
    assert [st["status"] for st in again["steps"]] == ["ok", "ok"], again
    assert again["steps"][1]["data"]["title"] == "Page /two"
    assert "[el_" in again["steps"][1]["data"]["summary"]
    fresh = browser_processes(srv.proc.pid)
    assert fresh and {p.pid for p in fresh}.isdisjoint({p.pid for p in victims})
    assert c.call("state.keys") == []  # the session itself carried on
    c.close()
    assert srv.alive()

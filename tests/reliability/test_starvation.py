"""Slow or idle connections do not starve others (live `python -m carnb serve`): hundreds of idle
TCP sockets, slowloris HTTP upgrades, upgraded-but-silent sockets, authenticated peers trickling
a huge frame byte by byte, and peers flooding requests; a new client still connects and every one
of its calls is answered. The silent ones are then closed by the server's deadlines (the 10 s
opening-handshake timeout and the 10 s auth deadline)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time

import pytest

from tests.reliability.harness import AClient, add, note, raw_auth, raw_upgrade

pytestmark = pytest.mark.reliability

IDLE_TCP = 300
SLOWLORIS = 100
SILENT_UPGRADED = 100
TRICKLERS = 20
FLOODERS = 8
GOOD_CALLS = 100


def closed_by_peer(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_slow_and_idle_connections_do_not_starve_others(start_server) -> None:
    srv = start_server()
    idle = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(IDLE_TCP)]
    lorises = []
    for _ in range(SLOWLORIS):
        s = socket.create_connection(("127.0.0.1", srv.port))
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        lorises.append(s)
    silent = [raw_upgrade(srv.port) for _ in range(SILENT_UPGRADED)]
    tricklers = []
    for _ in range(TRICKLERS):
        s = raw_upgrade(srv.port)
        raw_auth(s, srv.token, 4096)
        # a frame header announcing 1 MiB, then a byte at a time
        s.sendall(bytes([0x81, 0x80 | 127]) + (1 << 20).to_bytes(8, "big") + b"\x00\x00\x00\x00")
        tricklers.append(s)
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(0.2):
            for s in lorises:
                with contextlib.suppress(OSError):
                    s.sendall(b"X")  # never finishes a header line
            for s in tricklers:
                with contextlib.suppress(OSError):
                    s.sendall(b" ")

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    t_open = time.monotonic()

    async def load() -> tuple[list[float], int]:
        flood_stop = asyncio.Event()
        flood_calls = 0

        async def flood() -> None:
            nonlocal flood_calls
            c = await AClient.open(srv.url)
            await c.call("session.auth", {"token": srv.token})
            while not flood_stop.is_set():
                await asyncio.gather(*(c.call("state.keys") for _ in range(16)))
                flood_calls += 16
            await c.close()

        flooders = [asyncio.create_task(flood()) for _ in range(FLOODERS)]
        await asyncio.sleep(0.5)
        latencies = []
        good = await asyncio.wait_for(AClient.open(srv.url), 10)
        await good.call("session.auth", {"token": srv.token}, timeout=5)
        for i in range(GOOD_CALLS):
            t0 = time.monotonic()
            assert await good.call("state.set", {"key": "k", "value": i}, timeout=5) == "ok"
            assert await good.call("state.get", {"key": "k"}, timeout=5) == i
            latencies.append(time.monotonic() - t0)
        await good.close()
        flood_stop.set()
        await asyncio.gather(*flooders)
        return latencies, flood_calls

    try:
        latencies, flood_calls = asyncio.run(load())
        latencies.sort()
        note(
            "starvation: good client's call pair p50/p99/max ms under attack",
            f"{latencies[len(latencies) // 2] * 1000:.1f} / "
            f"{latencies[int(len(latencies) * 0.99)] * 1000:.1f} / {latencies[-1] * 1000:.1f}",
        )
        add(
            "starvation: attacking connections held",
            IDLE_TCP + SLOWLORIS + SILENT_UPGRADED + TRICKLERS,
        )
        add("starvation: flood calls answered meanwhile", flood_calls)
        # the server's deadlines close what never authenticates or never finishes its upgrade
        deadline = max(t_open + 20, time.monotonic() + 1)
        pending = idle + lorises + silent
        while pending and time.monotonic() < deadline:
            pending = [s for s in pending if not closed_by_peer(s)]
            time.sleep(0.25)
        assert pending == [], f"{len(pending)} silent connections still open after 20 s"
        note(
            "starvation: silent connections closed by the server's deadlines after (s)",
            round(time.monotonic() - t_open, 1),
        )
        # authenticated peers are not subject to those deadlines
        assert not any(closed_by_peer(s) for s in tricklers)
        assert srv.alive()
    finally:
        stop.set()
        t.join(5)
        for s in idle + lorises + silent + tricklers:
            s.close()

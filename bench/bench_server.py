"""Session server figures, as ratios against a bare websockets echo server measured in the
same run with the same client: sequential `state.get` round trip (median, p99), and under a
pipelined load (8 connections, 4 requests in flight each) the server's own CPU time per call
beside calls per second.

    .venv/bin/python bench/bench_server.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import ROOT, Serve, median, pct, save, table  # noqa: E402

REQ = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "state.get", "params": {"key": "k"}})


async def _open(url: str, token: str | None):
    ws = await connect(url, compression=None, max_size=None)
    if token:
        await ws.send(
            json.dumps(
                {"jsonrpc": "2.0", "id": 0, "method": "session.auth", "params": {"token": token}}
            )
        )
        await ws.recv()
    return ws


async def round_trips(url: str, token: str | None, n: int) -> list[float]:
    ws = await _open(url, token)
    try:
        for _ in range(200):  # warm up
            await ws.send(REQ)
            await ws.recv()
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            await ws.send(REQ)
            await ws.recv()
            out.append((time.perf_counter() - t0) * 1000)
        return out
    finally:
        await ws.close()


@dataclass
class Load:
    """One round of the pipelined load: replies received, wall time, server CPU time."""

    calls: int
    seconds: float
    server_cpu_s: float

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.seconds

    @property
    def cpu_us_per_call(self) -> float:
        return self.server_cpu_s / self.calls * 1e6


def cpu_seconds(proc: psutil.Process) -> float:
    """User + system CPU time of the server process, all its threads."""
    t = proc.cpu_times()
    return t.user + t.system


async def load(
    url: str, token: str | None, server: psutil.Process, conns: int, depth: int, seconds: float
) -> Load:
    """`conns` connections, each keeping `depth` requests in flight, for about `seconds` (then
    each waits for its last replies); the server's CPU time is read around that part only
    (connecting and closing are left out)."""
    sockets = [await _open(url, token) for _ in range(conns)]
    counts = [0] * conns

    async def worker(i: int, stop: float) -> None:
        ws = sockets[i]
        for _ in range(depth):
            await ws.send(REQ)
        sent = depth
        while True:
            await ws.recv()
            counts[i] += 1
            if time.perf_counter() >= stop:
                break
            await ws.send(REQ)
            sent += 1
        for _ in range(sent - counts[i]):  # the replies still in flight count too
            await ws.recv()
            counts[i] += 1

    cpu0, t0 = cpu_seconds(server), time.perf_counter()
    await asyncio.gather(*(worker(i, t0 + seconds) for i in range(conns)))
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds(server) - cpu0
    for ws in sockets:
        await ws.close()
    return Load(sum(counts), elapsed, cpu)


CONNS, DEPTH, ROUNDS = 8, 4, 3


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    n = 2000 if args.quick else 5000
    secs = 3.0 if args.quick else 9.0

    echo = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "echo_server.py")], stdout=subprocess.PIPE, text=True
    )
    assert echo.stdout is not None
    echo_url = echo.stdout.readline().strip()
    carnb = Serve()
    echo_proc, carnb_proc = psutil.Process(echo.pid), psutil.Process(carnb.proc.pid)
    try:
        # interleave the two servers so drift on a noisy machine hits both alike
        e_rtt, c_rtt = [], []
        for _ in range(2):
            e_rtt += asyncio.run(round_trips(echo_url, None, n // 2))
            c_rtt += asyncio.run(round_trips(carnb.url, carnb.info["token"], n // 2))
        e_load, c_load = [], []
        for _ in range(ROUNDS):  # alternating rounds; the medians are compared
            e_load.append(asyncio.run(load(echo_url, None, echo_proc, CONNS, DEPTH, secs / 3)))
            c_load.append(
                asyncio.run(
                    load(carnb.url, carnb.info["token"], carnb_proc, CONNS, DEPTH, secs / 3)
                )
            )
    finally:
        echo.terminate()
        carnb.close()

    med_ratio = median(c_rtt) / median(e_rtt)
    p99_ratio = pct(c_rtt, 99) / pct(e_rtt, 99)
    e_tp = median([r.calls_per_s for r in e_load])
    c_tp = median([r.calls_per_s for r in c_load])
    tp_ratio = c_tp / e_tp
    e_cpu = median([r.cpu_us_per_call for r in e_load])
    c_cpu = median([r.cpu_us_per_call for r in c_load])
    cpu_ratio = c_cpu / e_cpu
    data = {
        "calls": len(c_rtt),
        "echo_rtt_median_ms": median(e_rtt),
        "echo_rtt_p99_ms": pct(e_rtt, 99),
        "carnb_rtt_median_ms": median(c_rtt),
        "carnb_rtt_p99_ms": pct(c_rtt, 99),
        "rtt_median_ratio": med_ratio,
        "rtt_p99_ratio": p99_ratio,
        "load": f"{CONNS} connections x {DEPTH} in flight, {ROUNDS} alternating rounds",
        "echo_calls_per_s": e_tp,
        "carnb_calls_per_s": c_tp,
        "throughput_ratio": tp_ratio,
        "echo_server_cpu_us_per_call": e_cpu,
        "carnb_server_cpu_us_per_call": c_cpu,
        "server_cpu_per_call_ratio": cpu_ratio,
        "carnb_rounds": [vars(r) for r in c_load],
        "echo_rounds": [vars(r) for r in e_load],
    }
    save("server", data)
    load_name = f"{CONNS} connections x {DEPTH} in flight"
    rows = [
        (
            f"state.get round trip median ({len(c_rtt)} calls)",
            f"{median(c_rtt):.3f} ms vs echo {median(e_rtt):.3f} ms = {med_ratio:.2f}x",
            "<= 1.5x",
            med_ratio <= 1.5,
        ),
        (
            "state.get round trip p99",
            f"{pct(c_rtt, 99):.3f} ms vs echo {pct(e_rtt, 99):.3f} ms = {p99_ratio:.2f}x",
            "",
            None,
        ),
        (
            f"{load_name}: server CPU per call",
            f"{c_cpu:.1f} us vs echo {e_cpu:.1f} us = {cpu_ratio:.2f}x",
            "<= 1.2x",
            cpu_ratio <= 1.2,
        ),
        (
            f"{load_name}: throughput",
            f"{c_tp:,.0f} calls/s vs echo {e_tp:,.0f} = {tp_ratio:.2f}x",
            "",
            None,
        ),
    ]
    note = (
        f"The load is one asyncio client process; median of {ROUNDS} alternating rounds. "
        "On 2 cores the client competes with the server for CPU, so calls/s measures the pair "
        "and server CPU per call (psutil, all of the server's threads) is the server's own cost."
    )
    return table(rows, "Session server (`bench/bench_server.py`)") + "\n\n" + note


if __name__ == "__main__":
    print(main())

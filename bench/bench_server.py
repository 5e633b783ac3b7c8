"""Session server figures, as ratios against a bare websockets echo server measured in the
same run with the same client: sequential `state.get` round trip (median, p99) and throughput
with 8 concurrent connections.

    .venv/bin/python bench/bench_server.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

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


async def throughput(url: str, token: str | None, conns: int, seconds: float) -> float:
    sockets = [await _open(url, token) for _ in range(conns)]
    stop = time.perf_counter() + seconds
    counts = [0] * conns

    async def worker(i: int) -> None:
        ws = sockets[i]
        while time.perf_counter() < stop:
            await ws.send(REQ)
            await ws.recv()
            counts[i] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(conns)))
    elapsed = time.perf_counter() - t0
    for ws in sockets:
        await ws.close()
    return sum(counts) / elapsed


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
    try:
        # interleave the two servers so drift on a noisy machine hits both alike
        e_rtt, c_rtt = [], []
        for _ in range(2):
            e_rtt += asyncio.run(round_trips(echo_url, None, n // 2))
            c_rtt += asyncio.run(round_trips(carnb.url, carnb.info["token"], n // 2))
        e_tps, c_tps = [], []
        for _ in range(3):  # interleaved rounds; the medians are compared
            e_tps.append(asyncio.run(throughput(echo_url, None, 8, secs / 3)))
            c_tps.append(asyncio.run(throughput(carnb.url, carnb.info["token"], 8, secs / 3)))
        e_tp, c_tp = median(e_tps), median(c_tps)
    finally:
        echo.terminate()
        carnb.close()

    med_ratio = median(c_rtt) / median(e_rtt)
    p99_ratio = pct(c_rtt, 99) / pct(e_rtt, 99)
    tp_ratio = c_tp / e_tp
    data = {
        "calls": len(c_rtt),
        "echo_rtt_median_ms": median(e_rtt),
        "echo_rtt_p99_ms": pct(e_rtt, 99),
        "carnb_rtt_median_ms": median(c_rtt),
        "carnb_rtt_p99_ms": pct(c_rtt, 99),
        "rtt_median_ratio": med_ratio,
        "rtt_p99_ratio": p99_ratio,
        "echo_8conn_calls_per_s": e_tp,
        "carnb_8conn_calls_per_s": c_tp,
        "throughput_ratio": tp_ratio,
    }
    save("server", data)
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
            "8 connections throughput",
            f"{c_tp:,.0f} calls/s vs echo {e_tp:,.0f} = {tp_ratio:.2f}x",
            ">= 0.7x",
            tp_ratio >= 0.7,
        ),
    ]
    return table(rows, "Session server (`bench/bench_server.py`)")


if __name__ == "__main__":
    print(main())

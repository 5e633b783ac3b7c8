"""The admission gate's cost: figures as ratios and differences measured in one run.

A client on a real socket submits one-action proposals (one ``state_write``: no tool round
trip, so the gate is a large part of what is timed) to an in-process runtime, in interleaved
rounds (drift on a busy machine hits every condition alike):
- no supervisor: the gate short-circuits on an empty dict (the cost of today's path), beside
  the same count of ``state.get`` round trips on the same connection;
- a supervisor subscribed whose filter matches nothing (every proposal is checked against it);
- a programmatic supervisor (``Runtime.add_supervisor``) that allows everything: the intent is
  built, parked, sent to a worker thread, decided and released; goal <= 1 ms added.
And in process, the gate's own cost with no supervisor per call (one test of two flags).

    .venv/bin/python bench/bench_supervise.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _util import median, save, table  # noqa: E402

from carnb.app.supervision import Supervision  # noqa: E402
from carnb.config import Settings  # noqa: E402
from carnb.runtime import Runtime  # noqa: E402

ONE = {
    "id": "one",
    "actions": [{"id": "w", "type": "state_write", "parameters": {"key": "k", "value": 1}}],
}


def frame(id_: Any, method: str, params: Any) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": id_, "method": method, "params": params})


async def timed(ws: ClientConnection, method: str, params: Any, n: int) -> list[float]:
    req = frame(1, method, params)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await ws.send(req)
        msg = json.loads(await ws.recv())
        out.append((time.perf_counter() - t0) * 1000)
        assert "result" in msg, msg
    return out


async def wire(rt: Runtime, rounds: int, per: int) -> dict[str, list[float]]:
    ws = await connect(rt.url, compression=None, max_size=None)
    other = await connect(rt.url, compression=None, max_size=None)
    try:
        for c in (ws, other):
            await c.send(frame(0, "session.auth", {"token": rt.token}))
            await c.recv()
        out: dict[str, list[float]] = {"rtt": [], "none": [], "unmatched": [], "allow": []}
        await timed(ws, "proposal.submit", {"proposal": ONE}, 200)  # warm up
        for _ in range(rounds):
            out["rtt"] += await timed(ws, "state.get", {"key": "k"}, per)
            out["none"] += await timed(ws, "proposal.submit", {"proposal": ONE}, per)
            await other.send(frame(2, "supervision.subscribe", {"filter": {"tools": ["nothing"]}}))
            await other.recv()
            out["unmatched"] += await timed(ws, "proposal.submit", {"proposal": ONE}, per)
            await other.send(frame(3, "supervision.unsubscribe", {}))
            await other.recv()
            key = rt.add_supervisor(lambda intent: "allow", name="allow-all")
            out["allow"] += await timed(ws, "proposal.submit", {"proposal": ONE}, per)
            rt.remove_supervisor(key)
        return out
    finally:
        await ws.close()
        await other.close()


def gate_ns(n: int) -> float:
    """What ``proposal.submit`` does at the gate with no supervisor, per call (ns): the test
    ``needs_approval or supervision.supervising`` (both false)."""
    supervision, needs_approval = Supervision(), False
    t0 = time.perf_counter()
    for _ in range(n):
        if needs_approval or supervision.supervising:
            raise AssertionError("not reached")
    return (time.perf_counter() - t0) / n * 1e9


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    rounds, per = (5, 100) if args.quick else (15, 200)
    with tempfile.TemporaryDirectory(prefix="carnb-bench-") as home:
        settings = Settings(home=Path(home), browser=False, memory=False, runs=False)
        rt = Runtime(settings).start()
        try:
            w = asyncio.run(wire(rt, rounds, per))
        finally:
            rt.close()
    ns = gate_ns(1_000_000)
    rtt, none, unmatched, allow = (median(w[k]) for k in ("rtt", "none", "unmatched", "allow"))
    data = {
        "state_get_rtt_median_ms": rtt,
        "proposal_no_supervisor_median_ms": none,
        "proposal_unmatched_supervisor_median_ms": unmatched,
        "proposal_function_allow_median_ms": allow,
        "function_allow_added_ms": allow - none,
        "gate_no_supervisor_ns": ns,
    }
    save("supervise", data)
    rows = [
        (
            f"one-action proposal, no supervisor ({len(w['none'])} calls)",
            f"{none:.3f} ms vs state.get {rtt:.3f} ms = {none / rtt:.2f}x; the gate itself "
            f"{ns:.0f} ns per call ({ns / (none * 1e6) * 100:.3f} % of the proposal)",
            "no measurable cost",
            ns < 0.01 * none * 1e6,
        ),
        (
            "a supervisor whose filter matches nothing",
            f"{unmatched:.3f} ms = {unmatched - none:+.3f} ms",
            "",
            None,
        ),
        (
            "a Python supervisor that allows (carnb.supervisor)",
            f"{allow:.3f} ms = {allow - none:+.3f} ms",
            "<= +1 ms",
            allow - none <= 1.0,
        ),
    ]
    return table(rows, "Supervision (`bench/bench_supervise.py`)")


if __name__ == "__main__":
    print(main())

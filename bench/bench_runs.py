"""Benchmark the run store: ``runs.record_turns`` throughput and latency.

Usage: ``.venv/bin/python bench/bench_runs.py [--quick] [--section NAME ...]``

Prints a Markdown table (measure | value | goal | ok) and writes ``bench/results/runs.json``.
The goals come from docs/architecture.md, Threading: a store call that stays under ~5 ms may
run inline on the server loop, so per-call p99 latency is the figure that matters; throughput
is reported beside it.

Sections are functions in ``SECTIONS`` (name -> fn(quick) -> rows), run in order. The
in-process section exists now; an over-the-wire section (round trip of ``runs.record_turns``
through a real server, subscriber notification delay) plugs in as another entry.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

from carnb.runs import Caller, RunStore  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "runs.json"
AGENT = Caller(client_id="bench", agent_id="bench-agent")
INLINE_BUDGET_MS = 5.0  # docs/architecture.md: sync engine calls under ~5 ms may run on the loop


@dataclass
class Row:
    measure: str
    value: float
    unit: str
    goal: str
    ok: bool | None  # None: informational, no goal

    def cells(self) -> list[str]:
        ok = "" if self.ok is None else ("yes" if self.ok else "NO")
        return [self.measure, f"{self.value:,.{_digits(self.value)}f} {self.unit}", self.goal, ok]


def _digits(v: float) -> int:
    return 0 if abs(v) >= 100 else 2 if abs(v) >= 1 else 3


def turn(i: int) -> dict[str, Any]:
    """A realistic turn: a prompt, a tool call with parameters, ~1 KiB of output."""
    return {
        "prompt": f"step {i}: look up the next item and summarise what it says " * 3,
        "tool": "search",
        "parameters": {"query": f"item {i}", "k": 5},
        "output": ("result text " * 90)[:1024],
        "model": "bench-model",
        "tokens": {"input": 812, "output": 164},
    }


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure_batches(
    store: RunStore, batch: int, calls: int, label: str, *, goal_rate: float | None
) -> list[Row]:
    """``calls`` record_turns calls of ``batch`` turns each into one run."""
    run_id = store.start(AGENT, intent=f"bench {label}")["run_id"]
    payload = [turn(i) for i in range(batch)]
    for _ in range(min(20, calls)):  # warm caches and the WAL
        store.record_turns(AGENT, run_id, payload)
    lat: list[float] = []
    t0 = time.perf_counter()
    for _ in range(calls):
        s = time.perf_counter()
        r = store.record_turns(AGENT, run_id, payload)
        lat.append((time.perf_counter() - s) * 1000)
        assert r["ok"], r
    wall = time.perf_counter() - t0
    rate = calls * batch / wall
    p50, p99 = statistics.median(lat), _pct(lat, 0.99)
    rows = [
        Row(
            f"record_turns {label}: turns/s",
            rate,
            "turns/s",
            f">= {goal_rate:,.0f}" if goal_rate else "",
            rate >= goal_rate if goal_rate else None,
        ),
        Row(f"record_turns {label}: p50 per call", p50, "ms", "", None),
        Row(
            f"record_turns {label}: p99 per call",
            p99,
            "ms",
            f"< {INLINE_BUDGET_MS:g} (inline on the loop)",
            p99 < INLINE_BUDGET_MS,
        ),
    ]
    return rows


def section_in_process(quick: bool) -> list[Row]:
    n1, n50 = (2_000, 300) if quick else (20_000, 3_000)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="carnb-bench-runs-") as tmp:
        with RunStore(Path(tmp) / "runs.sqlite3") as store:
            rows += measure_batches(store, 1, n1, "batch 1", goal_rate=2_000)
            rows += measure_batches(store, 50, n50, "batch 50", goal_rate=20_000)
            events: list[dict[str, Any]] = []
            store.add_listener(events.append)
            rows += measure_batches(store, 50, n50, "batch 50 + 1 listener", goal_rate=10_000)
            # Reading a long trace back (what runs.get_trace / a subscribe snapshot does).
            run_id = store.start(AGENT, intent="bench trace")["run_id"]
            for _ in range(20):
                store.record_turns(AGENT, run_id, [turn(i) for i in range(50)])
            reads = []
            for _ in range(5 if quick else 20):
                s = time.perf_counter()
                trace = store.get_trace(AGENT, run_id)
                reads.append((time.perf_counter() - s) * 1000)
            assert len(trace["records"]) == 1001
            rows.append(
                Row(
                    "get_trace of 1,000 turns (~1.4 MB): median",
                    statistics.median(reads),
                    "ms",
                    "< 50 (else page with after/limit)",
                    statistics.median(reads) < 50,
                )
            )
        # For comparison, informational: an fsync per commit (survives power loss).
        variants = [("synchronous=FULL", {"synchronous": "FULL"}, 1, n1 // 4)]
        for label, options, batch, calls in variants:
            with RunStore(Path(tmp) / f"runs-{label}.sqlite3", **options) as store:
                for row in measure_batches(
                    store, batch, calls, f"batch {batch}, {label}", goal_rate=None
                ):
                    row.goal, row.ok = "", None
                    rows.append(row)
    return rows


async def _wire(quick: bool) -> list[Row]:
    """Over a real `python -m carnb serve`: record_turns round trips and the delay from an
    append (the record's server timestamp) to the subscriber's notification (same clock)."""
    from websockets.asyncio.client import connect

    sys.path.insert(0, str(ROOT / "bench"))
    from _util import Serve

    from carnb.runs.records import parse_iso

    server = Serve("--agent", "bench")
    rows: list[Row] = []
    try:
        ids = iter(range(1, 10**9))

        async def call(ws: Any, method: str, params: dict[str, Any]) -> Any:
            i = next(ids)
            await ws.send(
                json.dumps({"jsonrpc": "2.0", "id": i, "method": method, "params": params})
            )
            while True:
                msg = json.loads(await ws.recv())
                if msg.get("id") == i:
                    if "error" in msg:
                        raise RuntimeError(msg["error"])
                    return msg["result"]

        agent = await connect(server.url, compression=None, max_size=None)
        await call(
            agent, "session.auth", {"token": server.info["agents"]["bench"], "agent_id": "bench"}
        )
        for batch, calls, goal in (
            (1, 500 if quick else 3000, 1000),
            (50, 60 if quick else 400, 10_000),
        ):
            rid = (await call(agent, "runs.start", {"intent": f"wire batch {batch}"}))["run_id"]
            turns = [turn(i) for i in range(batch)]
            lat = []
            t0 = time.perf_counter()
            for _ in range(calls):
                s = time.perf_counter()
                await call(agent, "runs.record_turns", {"run_id": rid, "turns": turns})
                lat.append((time.perf_counter() - s) * 1000)
            rate = calls * batch / (time.perf_counter() - t0)
            rows.append(
                Row(
                    f"wire: record_turns batch {batch}",
                    rate,
                    "turns/s",
                    f">= {goal:,}",
                    rate >= goal,
                )
            )
            rows.append(
                Row(
                    f"wire: record_turns batch {batch} round trip p50",
                    statistics.median(lat),
                    "ms",
                    "",
                    None,
                )
            )

        host = await connect(server.url, compression=None, max_size=None)
        await call(host, "session.auth", {"host_token": server.info["host_token"]})
        rid = (await call(agent, "runs.start", {"intent": "watched"}))["run_id"]
        await call(host, "runs.subscribe", {"run_id": rid})
        n = 300 if quick else 2000
        delays: list[float] = []

        async def listen() -> None:
            while len(delays) < n:
                msg = json.loads(await host.recv())
                if msg.get("method") == "runs.trace.event":
                    rec = msg["params"]["record"]
                    if rec["record"] == "turn":
                        delays.append((time.time() - parse_iso(rec["timestamp"])) * 1000)

        listener = asyncio.ensure_future(listen())
        for i in range(n):
            await call(agent, "runs.record_turns", {"run_id": rid, "turns": [turn(i)]})
        await asyncio.wait_for(listener, 30)
        await agent.close()
        await host.close()
        med, p99 = statistics.median(delays), _pct(delays, 99)
        rows.append(
            Row(
                f"wire: append -> subscriber notification median ({n} turns)",
                med,
                "ms",
                "<= 5",
                med <= 5,
            )
        )
        rows.append(Row("wire: append -> subscriber notification p99", p99, "ms", "", None))
    finally:
        server.close()
    return rows


def section_wire(quick: bool) -> list[Row]:
    return asyncio.run(_wire(quick))


SECTIONS: dict[str, Callable[[bool], list[Row]]] = {
    "in_process": section_in_process,
    "wire": section_wire,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer iterations (< 60 s)")
    ap.add_argument(
        "--section", action="append", choices=sorted(SECTIONS), help="run only these sections"
    )
    args = ap.parse_args(argv)
    started = time.perf_counter()
    rows: list[Row] = []
    for name in args.section or list(SECTIONS):
        rows += SECTIONS[name](args.quick)
    elapsed = time.perf_counter() - started

    print("### Run tracing (`bench/bench_runs.py`)\n")
    print("| measure | value | goal | ok |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row.cells()) + " |")
    load = os.getloadavg()[0]
    print(
        f"\n{len(rows)} rows in {elapsed:.1f} s ({'quick' if args.quick else 'full'} run; "
        f"load average {load:.1f} on {os.cpu_count()} CPUs)"
    )

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "area": "runs",
                "quick": args.quick,
                "sections": args.section or list(SECTIONS),
                "python": sys.version.split()[0],
                "sqlite": __import__("sqlite3").sqlite_version,
                "machine": platform.platform(),
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "elapsed_s": round(elapsed, 2),
                "load_average_1m": round(load, 2),
                "cpus": os.cpu_count(),
                "rows": [asdict(r) for r in rows],
            },
            indent=2,
        )
        + "\n"
    )
    # Goals are reported, not enforced: figures from a shared machine are too noisy to gate CI.
    return 0


if __name__ == "__main__":
    sys.exit(main())

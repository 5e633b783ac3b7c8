"""Benchmark the agent IR engine: parsing, static verify and execution of large proposals.

Usage: ``.venv/bin/python bench/bench_agentir.py [--quick]``

Prints a Markdown table (measure | value | goal | ok) and writes ``bench/results/agentir.json``.
The goal for verify comes from the threading model (DESIGN.md): nothing a client sends may hold
the server's loop for more than ~100 ms, so a 1,000-action verify must fit well inside that.
The 10,000-action row shows how it scales (linear would be 10x the 1,000-action figure).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _util import median, save, table  # noqa: E402

from carnb.agentir import (  # noqa: E402
    DictStateStore,
    ToolRegistry,
    execute_proposal,
    parse_proposal,
    verify,
)

LOOP_BUDGET_MS = 100.0  # DESIGN.md: longest a client request may hold the loop


def proposal(n: int) -> dict[str, Any]:
    """``n`` actions shaped like a real plan: chains of 10 linked through state keys, shared
    keys written across chains (write-conflict work), preconditions and schema'd parameters."""
    actions = []
    for i in range(n):
        link = i % 10
        actions.append(
            {
                "id": f"a{i}",
                "type": "tool_call",
                "tool": "search" if i % 2 else "fetch",
                "parameters": {"query": f"item {i}", "k": 5},
                "expected_effects": {f"k{i}": i, f"shared{i % 50}": i},
                "preconditions": [{"key": f"k{i - 1}", "operator": "exists"}] if link else [],
                "state_dependencies": [f"k{i - 1}"] if link else [],
            }
        )
    return {"id": "bench", "source": "bench", "actions": actions}


def tools() -> ToolRegistry:
    schema = {
        "type": "object",
        "properties": {"query": {"type": "string"}, "k": {"type": "integer"}},
        "required": ["query"],
    }
    registry = ToolRegistry()
    registry.register(
        [{"name": "fetch", "parameters": schema}, {"name": "search", "parameters": schema}]
    )
    return registry


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    fn()  # warm up
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


class InstantRunner:
    async def call(
        self,
        tool: str,
        parameters: dict[str, Any],
        *,
        action_id: str,
        attempt: int,
        timeout_ms: int | None,
    ) -> Any:
        return {"ok": True}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (< 30 s)")
    args = ap.parse_args(argv)
    repeats = 5 if args.quick else 25
    registry = tools()
    raw_1k, raw_10k = proposal(1_000), proposal(10_000)
    parsed_1k, parsed_10k = parse_proposal(raw_1k), parse_proposal(raw_10k)
    assert verify(parsed_1k, tools=registry)["valid"]

    parse_ms = median(timed(lambda: parse_proposal(raw_1k), repeats))
    verify_ms = median(timed(lambda: verify(parsed_1k, tools=registry), repeats))
    verify_10k_ms = median(timed(lambda: verify(parsed_10k, tools=registry), max(2, repeats // 5)))
    state_writes = parse_proposal(
        {
            "actions": [
                {"type": "state_write", "parameters": {"key": f"k{i}", "value": i}}
                for i in range(1_000)
            ]
        }
    )
    tool_calls = parse_proposal(
        {
            "actions": [
                {"type": "tool_call", "tool": "fetch", "parameters": {"query": str(i)}}
                for i in range(1_000)
            ]
        }
    )

    def run(p: Any) -> None:
        asyncio.run(
            execute_proposal(p, runner=InstantRunner(), state=DictStateStore(), tools=registry)
        )

    exec_writes_ms = median(timed(lambda: run(state_writes), repeats))
    exec_calls_ms = median(timed(lambda: run(tool_calls), repeats))

    ratio = verify_10k_ms / verify_ms
    rows: list[tuple[str, str, str, bool | None]] = [
        ("parse 1,000 actions: median", f"{parse_ms:.1f} ms", "", None),
        (
            "verify 1,000 actions: median",
            f"{verify_ms:.1f} ms",
            f"< {LOOP_BUDGET_MS:g} ms",
            verify_ms < LOOP_BUDGET_MS,
        ),
        ("verify 10,000 actions: median", f"{verify_10k_ms:.1f} ms", "", None),
        ("verify 10,000 / 1,000", f"{ratio:.1f}x", "<= 20x (linear = 10x)", ratio <= 20),
        ("execute 1,000 state_write (one level): median", f"{exec_writes_ms:.1f} ms", "", None),
        (
            "execute 1,000 tool_call, instant tool (one level): median",
            f"{exec_calls_ms:.1f} ms",
            "",
            None,
        ),
    ]
    print(table(rows, "Agent IR engine (`bench/bench_agentir.py`)"))
    load = os.getloadavg()[0]
    print(
        f"\n{'quick' if args.quick else 'full'} run; load average {load:.1f} on "
        f"{os.cpu_count()} CPUs"
    )
    save(
        "agentir",
        {
            "quick": args.quick,
            "load_average_1m": round(load, 2),
            "rows": [dict(zip(("measure", "value", "goal", "ok"), r, strict=True)) for r in rows],
        },
    )
    # Goals are reported, not enforced: figures from a shared machine are too noisy to gate.
    return 0


if __name__ == "__main__":
    sys.exit(main())

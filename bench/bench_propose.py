"""Propose, verify, execute: figures as ratios measured in one run.

- one ``tools.execute`` round trip against a bare ``state.get`` round trip, on the same
  connection to a `python -m carnb serve`: a proposal of N tool calls chained by ``depends_on``
  runs them one at a time, so the time between consecutive ``tools.execute`` frames is one
  reverse round trip (the client answers at once);
- ``verify`` of a 1,000-action proposal over the wire against the same verify in process;
- a 100-action proposal of no-op notebook tools (``Runtime.register_tool``) end to end against
  the same proposal made of ``state_write`` actions (no tool, no thread);
- a proposal of one tool call end to end (submit, one ``tools.execute`` answered at once, the
  reply) against a ``state.get`` round trip;
- a proposal of two parallel tool calls through the official client (``car_runtime``, whose
  handler answers at once) beside a raw client answering the same way.

    .venv/bin/python bench/bench_propose.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _util import Serve, median, save, table  # noqa: E402

from carnb.agentir import parse_proposal, verify  # noqa: E402
from carnb.config import Settings  # noqa: E402
from carnb.runtime import Runtime  # noqa: E402


def frame(id_: Any, method: str, params: Any) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": id_, "method": method, "params": params})


async def _open(url: str, token: str) -> ClientConnection:
    ws = await connect(url, compression=None, max_size=None)
    await ws.send(frame(0, "session.auth", {"token": token}))
    await ws.recv()
    await ws.send(frame(0, "tools.register", [{"name": "noop"}]))
    await ws.recv()
    return ws


async def state_get_rtts(ws: ClientConnection, n: int) -> list[float]:
    req = frame(1, "state.get", {"key": "k"})
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await ws.send(req)
        await ws.recv()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def chain(n: int) -> dict[str, Any]:
    actions: list[dict[str, Any]] = []
    for i in range(n):
        action: dict[str, Any] = {"id": f"a{i}", "type": "tool_call", "tool": "noop"}
        action["parameters"] = {"i": i}
        if i:
            action["depends_on"] = [f"a{i - 1}"]
        actions.append(action)
    return {"id": "chain", "actions": actions}


async def execute_gaps(ws: ClientConnection, n: int) -> list[float]:
    """Time between consecutive tools.execute frames of a sequential chain (ms)."""
    await ws.send(frame(2, "proposal.submit", {"proposal": chain(n)}))
    arrivals: list[float] = []
    while True:
        msg = json.loads(await ws.recv())
        if msg.get("method") == "tools.execute":
            arrivals.append(time.perf_counter())
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": None}))
        elif msg.get("id") == 2:
            assert "result" in msg, msg
            break
    return [(b - a) * 1000 for a, b in zip(arrivals, arrivals[1:], strict=False)]


async def one_action_ms(ws: ClientConnection, n: int) -> list[float]:
    """End to end times of `proposal.submit` of one tool call, answered at once (ms)."""
    body = {"proposal": chain(1)}
    out = []
    for r in range(n):
        t0 = time.perf_counter()
        await ws.send(frame(f"one-{r}", "proposal.submit", body))
        while True:
            msg = json.loads(await ws.recv())
            if msg.get("method") == "tools.execute":
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": None}))
            elif msg.get("id") == f"one-{r}":
                assert "result" in msg, msg
                break
        out.append((time.perf_counter() - t0) * 1000)
    return out


def two_parallel() -> dict[str, Any]:
    """A proposal of two tool calls with no dependency: both ``tools.execute`` go out at once."""
    calls = [{"id": a, "type": "tool_call", "tool": "noop", "parameters": {}} for a in "ab"]
    return {"id": "two", "actions": calls}


async def two_parallel_ms(ws: ClientConnection, n: int) -> list[float]:
    """End to end times of `proposal.submit` of two parallel tool calls, each answered as soon
    as it arrives, by this raw client (ms)."""
    body = {"proposal": two_parallel()}
    out = []
    for r in range(n):
        t0 = time.perf_counter()
        await ws.send(frame(f"two-{r}", "proposal.submit", body))
        while True:
            msg = json.loads(await ws.recv())
            if msg.get("method") == "tools.execute":
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": None}))
            elif msg.get("id") == f"two-{r}":
                assert "result" in msg, msg
                break
        out.append((time.perf_counter() - t0) * 1000)
    return out


def official_two_parallel_ms(url: str, token: str, n: int) -> list[float]:
    """The same proposal through the official client's ``execute_proposal``, its handler
    answering at once (ms)."""
    os.environ.update(CAR_DAEMON_URL=url, CAR_AUTH_TOKEN=token, CAR_NO_VERSION_WARNING="1")
    from car_runtime import CarRuntime

    rt = CarRuntime()
    try:
        rt.register_tool("noop")
        body = json.dumps(two_parallel())
        out = []
        for _ in range(n + 3):  # the first three warm up
            t0 = time.perf_counter()
            result = json.loads(rt.execute_proposal(body, lambda call_json: "null"))
            out.append((time.perf_counter() - t0) * 1000)
            assert [r["status"] for r in result["results"]] == ["succeeded"] * 2, result
        return out[3:]
    finally:
        rt.close()


def big(n: int) -> dict[str, Any]:
    return {
        "id": "big",
        "actions": [
            {
                "id": f"a{i}",
                "type": "tool_call",
                "tool": "noop",
                "parameters": {"i": i},
                "expected_effects": {f"k{i}": i},
                "state_dependencies": [f"k{i - 1}"] if i % 10 else [],
            }
            for i in range(n)
        ],
    }


async def verify_wire_ms(ws: ClientConnection, body: dict[str, Any], rounds: int) -> list[float]:
    out = []
    for r in range(rounds):
        t0 = time.perf_counter()
        await ws.send(frame(100 + r, "verify", {"proposal": body, "initial_state": {}}))
        msg = json.loads(await ws.recv())
        out.append((time.perf_counter() - t0) * 1000)
        assert "result" in msg, msg
    return out


def verify_local_ms(body: dict[str, Any], rounds: int) -> list[float]:
    from carnb.agentir import ToolRegistry

    tools = ToolRegistry()
    tools.register([{"name": "noop"}])
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        verify(parse_proposal(body), tools=tools, initial_state={})
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def wire(url: str, token: str, quick: bool) -> dict[str, Any]:
    ws = await _open(url, token)
    try:
        await state_get_rtts(ws, 300)  # warm up
        await execute_gaps(ws, 50)
        await one_action_ms(ws, 50)
        rtt: list[float] = []
        gaps: list[float] = []
        one: list[float] = []
        for _ in range(5 if quick else 15):  # finely interleaved: drift hits all alike
            rtt += await state_get_rtts(ws, 200)
            gaps += await execute_gaps(ws, 61)
            one += await one_action_ms(ws, 60)
        two = await two_parallel_ms(ws, 20)
        body = big(1000)
        wire_ms = await verify_wire_ms(ws, body, 3 if quick else 7)
    finally:
        await ws.close()
    local_ms = verify_local_ms(body, 3 if quick else 7)
    return {
        "rtt": rtt,
        "gaps": gaps,
        "one": one,
        "two": two,
        "verify_wire": wire_ms,
        "verify_local": local_ms,
    }


def notebook(rounds: int) -> tuple[list[float], list[float]]:
    with tempfile.TemporaryDirectory(prefix="carnb-bench-") as home:
        rt = Runtime(Settings(home=Path(home), browser=False, memory=False, runs=False)).start()
        try:

            def noop(i: int) -> None:
                return None

            rt.register_tool(noop)
            tools = {
                "id": "t",
                "actions": [
                    {"id": f"n{i}", "type": "tool_call", "tool": "noop", "parameters": {"i": i}}
                    for i in range(100)
                ],
            }
            writes = {
                "id": "w",
                "actions": [
                    {
                        "id": f"n{i}",
                        "type": "state_write",
                        "parameters": {"key": f"k{i}", "value": i},
                    }
                    for i in range(100)
                ],
            }
            rt.call("proposal.submit", {"proposal": tools})  # warm up the pool
            tool_ms, write_ms = [], []
            for _ in range(rounds):
                t0 = time.perf_counter()
                result = rt.call("proposal.submit", {"proposal": tools})
                tool_ms.append((time.perf_counter() - t0) * 1000)
                assert result["cost"]["tool_calls"] == 100, result["cost"]
                t0 = time.perf_counter()
                rt.call("proposal.submit", {"proposal": writes})
                write_ms.append((time.perf_counter() - t0) * 1000)
        finally:
            rt.close()
    return tool_ms, write_ms


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    carnb = Serve()
    try:
        w = asyncio.run(wire(carnb.url, carnb.info["token"], args.quick))
        official_two = official_two_parallel_ms(carnb.url, carnb.info["token"], 20)
    finally:
        carnb.close()
    tool_ms, write_ms = notebook(5 if args.quick else 15)

    rtt, gap, one = median(w["rtt"]), median(w["gaps"]), median(w["one"])
    exec_ratio, one_ratio = gap / rtt, one / rtt
    raw_two, car_two = median(w["two"]), median(official_two)
    v_wire, v_local = median(w["verify_wire"]), median(w["verify_local"])
    nb_tools, nb_writes = median(tool_ms), median(write_ms)
    data = {
        "state_get_rtt_median_ms": rtt,
        "tools_execute_rtt_median_ms": gap,
        "tools_execute_vs_state_get": exec_ratio,
        "one_action_proposal_median_ms": one,
        "one_action_proposal_vs_state_get": one_ratio,
        "two_parallel_tools_raw_client_median_ms": raw_two,
        "two_parallel_tools_official_client_median_ms": car_two,
        "verify_1000_wire_ms": v_wire,
        "verify_1000_in_process_ms": v_local,
        "verify_wire_vs_in_process": v_wire / v_local,
        "notebook_100_noop_tools_ms": nb_tools,
        "notebook_100_state_writes_ms": nb_writes,
        "notebook_tools_vs_writes": nb_tools / nb_writes,
    }
    save("propose", data)
    rows = [
        (
            f"one tools.execute round trip ({len(w['gaps'])} calls)",
            f"{gap:.3f} ms vs state.get {rtt:.3f} ms = {exec_ratio:.2f}x",
            "<= 2x",
            exec_ratio <= 2.0,
        ),
        (
            f"proposal of one tool call, end to end ({len(w['one'])} proposals)",
            f"{one:.3f} ms vs state.get {rtt:.3f} ms = {one_ratio:.2f}x",
            "<= 3x",
            one_ratio <= 3.0,
        ),
        (
            f"two parallel tool calls, official client (median of {len(official_two)})",
            f"{car_two:.1f} ms (raw client: {raw_two:.1f} ms)",
            "<= 10 ms",
            car_two <= 10.0,
        ),
        (
            "verify, 1,000 actions over the wire",
            f"{v_wire:.1f} ms vs in process {v_local:.1f} ms = {v_wire / v_local:.2f}x",
            "",
            None,
        ),
        (
            "100 no-op notebook tools, end to end",
            f"{nb_tools:.1f} ms vs 100 state_writes {nb_writes:.1f} ms = "
            f"{nb_tools / nb_writes:.2f}x ({nb_tools * 10:.0f} us per tool)",
            "",
            None,
        ),
    ]
    return table(rows, "Propose, verify, execute (`bench/bench_propose.py`)")


if __name__ == "__main__":
    print(main())

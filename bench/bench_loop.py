"""The model bridge and the official agent loop: figures measured in one run.

- ``infer`` round trip with a zero-latency notebook model against calling the same callable in
  process (the bridge's overhead: parse, route, worker thread, reply shape, WebSocket), beside a
  bare ``state.get`` round trip on the same connection to a `python -m carnb serve`;
- the official client's ``car_runtime.agent_loop.run_agent``, 20 turns (20 inferences, 20
  recorded model turns, 20 verifies, 20 proposals with their ``tools.execute`` callbacks) end
  to end against `python -m carnb serve --model bench.zero_model:counter`, beside the same loop
  on a server started with ``--no-record-inference`` (what keeping each infer's request and reply
  in the run costs per turn; interleaved rounds);
- ``runs.replay`` of a 100-turn run of ``run_agent`` (round trip: the trace read, put back
  together and checked).

    .venv/bin/python bench/bench_loop.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _util import Rpc, Serve, median, save, table  # noqa: E402
from zero_model import LONG_TURNS, TURNS, instant  # noqa: E402

GOAL_OVERHEAD_MS = 1.0
GOAL_RECORDING_RATIO = 1.10  # recording adds at most 10% per turn
GOAL_REPLAY_MS = 50.0  # replay of a 100-turn run


def rtts(rpc: Rpc, method: str, params: dict[str, Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        rpc(method, params)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def direct(n: int) -> list[float]:
    req = {"messages": [{"role": "user", "content": "hi"}]}
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        instant(req)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def run_loops(
    url: str, token: str, rounds: int, model: str = "counter", turns: int = TURNS
) -> tuple[list[float], dict[str, Any]]:
    os.environ.update(CAR_DAEMON_URL=url, CAR_AUTH_TOKEN=token, CAR_NO_VERSION_WARNING="1")
    from car_runtime import CarRuntime, agent_loop

    def add(args: dict[str, Any]) -> dict[str, Any]:
        return {"sum": args["a"] + args["b"]}

    rt = CarRuntime()
    schema = {
        "name": "add",
        "description": "a + b",
        "parameters": {"type": "object", "properties": {"a": {}, "b": {}}},
    }
    config = {
        "agent_name": "bench",
        "identity": "count",
        "tool_schemas": [schema],
        "tools": {"add": add},
        "max_turns": turns + 5,
        "default_model": model,
        "runtime": rt,
    }
    out, outcome = [], {}
    try:
        agent_loop.run_agent(config, "count")  # warm up
        for _ in range(rounds):
            t0 = time.perf_counter()
            outcome = dict(agent_loop.run_agent(config, "count"))
            out.append((time.perf_counter() - t0) * 1000)
            assert outcome["status"] == "success", outcome
            assert outcome["metrics"]["turns"] == turns, outcome["metrics"]
    finally:
        rt.close()
    return out, outcome


def recording_cost(n: int) -> float:
    """Microseconds carnb spends per turn keeping an infer of a 20-turn conversation (the
    record, and the model turn's bigger JSON), in process."""
    from carnb.app.recording import inference_record
    from carnb.runs.records import model_turn_body

    tool = {"name": "add", "description": "a + b", "parameters": {"type": "object"}}
    messages: list[dict[str, Any]] = [{"role": "system", "content": "count " * 50}]
    for t in range(TURNS):
        call = {"id": f"c{t}", "name": "add", "arguments": {"a": t, "b": 1}}
        messages += [
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool_result", "tool_use_id": f"c{t}", "content": '{"sum": 1}'},
        ]
    request = {"model": "counter", "tools": [tool] * 3, "messages": messages}
    previous = {**request, "messages": messages[:-2]}
    reply = {"text": "", "tool_calls": [call], "usage": {"input_tokens": 1, "output_tokens": 1}}
    turn = {"turn_index": 1, "requested_tool_calls": [call], "model_id": "counter"}
    t0 = time.perf_counter()
    for _ in range(n):
        record = inference_record(request, reply, ("secret-a", "secret-b"), previous)
        model_turn_body(dict(turn), record)
    with_record = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(n):
        model_turn_body(dict(turn))
    without = time.perf_counter() - t0
    return (with_record - without) / n * 1e6


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    n = 300 if args.quick else 2000
    models = ("--model", "bench.zero_model:instant", "--model", "bench.zero_model:counter")
    server = Serve(*models, "--model", "bench.zero_model:long_counter")
    baseline = Serve(*models, "--no-record-inference")
    try:
        rpc = Rpc(server.url, {"token": server.info["token"]})
        ask = {"model": "instant", "messages": [{"role": "user", "content": "hi"}]}
        rtts(rpc, "infer", ask, 200)  # warm up
        state, infer = [], []
        for _ in range(3):  # interleaved, so drift on a busy machine hits both alike
            state += rtts(rpc, "state.get", {"key": "k"}, n // 3)
            infer += rtts(rpc, "infer", ask, n // 3)
        rpc.close()
        loops, bare = [], []
        for i in range(4 if args.quick else 30):  # interleaved ABBA with the baseline server
            pair = [(server, loops), (baseline, bare)]
            for serve, into in pair if i % 2 == 0 else pair[::-1]:
                into += run_loops(serve.url, serve.info["token"], 1)[0]
        long_run = run_loops(server.url, server.info["token"], 1, "long_counter", LONG_TURNS)[1]
        host = Rpc(server.url, {"host_token": server.info["host_token"]})
        replay = {"run_id": long_run["run_id"]}
        report = host("runs.replay", replay)
        assert report["reproduced"] and report["model_turns"] == LONG_TURNS, report
        replays = rtts(host, "runs.replay", replay, 10 if args.quick else 50)
        host.close()
    finally:
        server.close()
        baseline.close()
    call = median(direct(n))
    record_us = recording_cost(n)
    state_ms, infer_ms, loop_ms = median(state), median(infer), median(loops)
    bare_ms, replay_ms = median(bare), median(replays)
    ratio = loop_ms / bare_ms
    overhead = infer_ms - call
    data = {
        "callable_in_process_median_ms": call,
        "state_get_rtt_median_ms": state_ms,
        "infer_rtt_median_ms": infer_ms,
        "infer_overhead_over_callable_ms": overhead,
        "infer_minus_state_get_ms": infer_ms - state_ms,
        "agent_loop_turns": TURNS,
        "agent_loop_median_ms": loop_ms,
        "agent_loop_per_turn_ms": loop_ms / TURNS,
        "agent_loop_rounds": len(loops),
        "agent_loop_unrecorded_median_ms": bare_ms,
        "recording_ratio": ratio,
        "recording_in_process_us_per_turn": record_us,
        "replay_turns": LONG_TURNS,
        "replay_rtt_median_ms": replay_ms,
        "replay_server_ms": report["replay_ms"],
    }
    save("loop", data)
    rows = [
        (
            f"infer round trip, zero-latency model ({len(infer)} calls)",
            f"{infer_ms:.3f} ms vs the callable in process {call * 1000:.1f} us: "
            f"overhead {overhead:.3f} ms (state.get round trip {state_ms:.3f} ms)",
            f"<= {GOAL_OVERHEAD_MS:g} ms",
            overhead <= GOAL_OVERHEAD_MS,
        ),
        (
            f"official run_agent, {TURNS} turns end to end ({len(loops)} runs)",
            f"{loop_ms:.1f} ms = {loop_ms / TURNS:.2f} ms per turn "
            "(infer, record_model_turn, verify, proposal.submit with its tools.execute)",
            "",
            None,
        ),
        (
            f"the same loop, infer requests and replies recorded, against a server that does "
            f"not record them (`--no-record-inference`, {len(bare)} runs interleaved)",
            f"{loop_ms / TURNS:.2f} vs {bare_ms / TURNS:.2f} ms per turn: x{ratio:.3f}",
            f"<= x{GOAL_RECORDING_RATIO:.2f}",
            ratio <= GOAL_RECORDING_RATIO,
        ),
        (
            "keeping one infer of a 20-turn conversation, in process (the record and the "
            "model turn's bigger JSON)",
            f"{record_us:.0f} us = {record_us / 10 / (loop_ms / TURNS):.1f}% of a turn",
            f"<= {(GOAL_RECORDING_RATIO - 1) * 100:.0f}%",
            record_us / 1000 <= (GOAL_RECORDING_RATIO - 1) * loop_ms / TURNS,
        ),
        (
            f"runs.replay of a {LONG_TURNS}-turn run_agent run ({len(replays)} calls)",
            f"{replay_ms:.1f} ms round trip (of which checking the steps "
            f"{report['replay_ms']:.2f} ms)",
            f"<= {GOAL_REPLAY_MS:g} ms",
            replay_ms <= GOAL_REPLAY_MS,
        ),
    ]
    return table(rows, "Model bridge and agent loop (`bench/bench_loop.py`)")


if __name__ == "__main__":
    print(main())

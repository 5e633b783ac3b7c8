"""Time travel over runs of the official client's agent loop (car_runtime.agent_loop.run_agent)
against `python -m carnb serve`: recorded, replayed with no model call and no tool side effect,
and forked."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.compat import loopmodels
from tests.compat.loopagent import add, config, removed
from tests.conftest import Client

pytestmark = pytest.mark.compat

agent_loop = pytest.importorskip("car_runtime.agent_loop")

MODELS = "tests.compat.loopmodels"


@pytest.fixture
def loop_server(serve_process) -> Any:
    return serve_process(
        "--agent", "adder", "--model", f"{MODELS}:adder", "--model", f"{MODELS}:dangerous"
    )


@pytest.fixture
def as_adder(loop_server, car_client) -> Any:
    return car_client(
        CAR_DAEMON_URL=loop_server.url,
        CAR_AGENT_ID="adder",
        CAR_AGENT_TOKEN=loop_server.info["agents"]["adder"],
    )


@pytest.fixture
def host(loop_server) -> Any:
    c = Client(loop_server.url)
    c.call("session.auth", {"host_token": loop_server.info["host_token"]})
    yield c
    c.close()


class CountedAdd:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, args: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        return add(args)


def ended(c: Client, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        trace = c.full_trace(run_id)
        if trace["status"] != "in_progress":
            return trace
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not end")


def test_run_agent_is_recorded_and_replays_with_no_model_call_and_no_tool_call(
    as_adder, host
) -> None:
    counted = CountedAdd()
    outcome = agent_loop.run_agent(
        config("adder", as_adder, tools={"add": counted, "rm": lambda a: a}), "add 1, 2 and 3"
    )
    assert outcome["status"] == "success" and counted.calls == loopmodels.STEPS
    trace = host.full_trace(outcome["run_id"])
    model_turns = [r for r in trace["records"] if r["record"] == "model_turn"]
    assert all(m["inference"]["reply"]["model_used"] == "adder" for m in model_turns)
    assert model_turns[0]["inference"]["reply"]["text"] == "step 1: adding 1"
    # the model can no longer be reached: a replay that called it would fail
    host.call("models.unregister", {"id": "adder"})
    report = host.call("runs.replay", {"run_id": outcome["run_id"]})
    assert report["reproduced"] is True, report["divergences"]
    assert report["model_turns"] == loopmodels.STEPS + 1
    assert report["recorded_requests"] == loopmodels.STEPS + 1 and report["model_calls"] == 0
    assert counted.calls == loopmodels.STEPS  # no tool ran again


def test_a_fork_of_run_agent_continues_its_conversation_under_the_agents_policy(
    as_adder, host
) -> None:
    outcome = agent_loop.run_agent(config("adder", as_adder), "add 1, 2 and 3")
    removed.clear()
    # at turn 2 the recorded request is run_agent's own: system prompt, goal, turn 1's answer
    # and its tool result, which the model sees and so finishes
    fork = host.call("runs.fork", {"run_id": outcome["run_id"], "at": 2, "model": "dangerous"})
    trace = ended(host, fork["run_id"])
    assert trace["records"][-1]["outcome"] == {"status": "success", "summary": "stopped"}
    # at turn 1 it asks for rm: the agent is still connected, so its tools and its policy are
    # in force, and the policy refuses rm; the model then finishes
    fork = host.call("runs.fork", {"run_id": outcome["run_id"], "at": 1, "model": "dangerous"})
    trace = ended(host, fork["run_id"])
    rm, finish = [r["turn"] for r in trace["records"] if r["record"] == "turn"]
    assert rm["tool"] == "rm" and rm["policy_rejected"] is True and "no-rm" in rm["error"]
    assert finish["tool"] == "finish" and removed == []
    # once the agent is gone the fork cannot reach rm: it says which tool and how to provide it
    as_adder.close()
    deadline = time.monotonic() + 10
    while any(a["session_ids"] for a in host.call("agents.list") if a["spec"]["id"] == "adder"):
        assert time.monotonic() < deadline, "the agent's session did not end"
        time.sleep(0.05)
    fork = host.call("runs.fork", {"run_id": outcome["run_id"], "at": 1, "model": "dangerous"})
    trace = ended(host, fork["run_id"])
    (turn,) = [r["turn"] for r in trace["records"] if r["record"] == "turn"]
    assert turn["tool"] == "rm" and turn["status"] == "failed"
    assert "tool 'rm' is not reachable" in trace["records"][-1]["outcome"]["summary"]
    assert removed == []

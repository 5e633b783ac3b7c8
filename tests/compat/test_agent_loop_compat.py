"""The official client's agent loop (car_runtime.agent_loop) against
`python -m carnb serve`, with a deterministic Python model served through the model bridge."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from tests.compat import loopmodels
from tests.compat.loopagent import config, removed
from tests.conftest import REPO, Client

pytestmark = pytest.mark.compat

agent_loop = pytest.importorskip("car_runtime.agent_loop")

MODELS = "tests.compat.loopmodels"


@pytest.fixture
def loop_server(serve_process) -> Any:
    return serve_process(
        "--agent",
        "adder",
        "--model",
        f"{MODELS}:adder",
        "--model",
        f"{MODELS}:dangerous",
        "--model",
        f"{MODELS}:raises",
        "--model",
        f"{MODELS}:hangs",
        "--model",
        f"{MODELS}:malformed",
        "--model-timeout",
        "1",
    )


@pytest.fixture
def as_adder(loop_server, car_client) -> Any:
    return car_client(
        CAR_DAEMON_URL=loop_server.url,
        CAR_AGENT_ID="adder",
        CAR_AGENT_TOKEN=loop_server.info["agents"]["adder"],
    )


def trace_of(rt: Any, run_id: str) -> dict[str, Any]:
    trace: dict[str, Any] = json.loads(rt.runs_get_trace(json.dumps({"run_id": run_id})))
    return trace


def test_run_agent_completes_and_the_trace_holds_every_turn_in_order(as_adder, car_client):
    outcome = agent_loop.run_agent(config("adder", as_adder), "add 1, 2 and 3")
    assert outcome["status"] == "success" and outcome["summary"] == "6"
    assert outcome["metrics"]["turns"] == loopmodels.STEPS + 1
    trace = trace_of(as_adder, outcome["run_id"])
    assert trace["agent_id"] == "adder" and trace["status"] == "completed"
    records = trace["records"]
    assert [r["index"] for r in records] == list(range(len(records)))
    kinds = [r["record"] for r in records]
    assert kinds == ["started"] + ["model_turn", "turn"] * (loopmodels.STEPS + 1) + ["ended"]
    model_turns = [r for r in records if r["record"] == "model_turn"]
    assert [m["turn_index"] for m in model_turns] == [1, 2, 3, 4]
    assert model_turns[0]["assistant_text"] == "step 1: adding 1"
    assert model_turns[0]["requested_tool_calls"][0]["name"] == "add"
    assert (
        model_turns[0]["model_id"] == "adder"
        and model_turns[0]["token_usage"]["input_tokens"] == 10
    )
    assert all(isinstance(m["duration_ms"], int | float) for m in model_turns)
    tool_turns = [r["turn"] for r in records if r["record"] == "turn"]
    assert [t["tool"] for t in tool_turns] == ["add", "add", "add", "finish"]
    assert [t["output"] for t in tool_turns[:3]] == [{"sum": 1}, {"sum": 3}, {"sum": 6}]
    assert all(t["status"] == "succeeded" for t in tool_turns)
    assert records[-1]["outcome"]["status"] == "success"


def test_run_agent_on_an_unbound_session_runs_under_a_name(loop_server, car_client) -> None:
    rt = car_client(CAR_DAEMON_URL=loop_server.url, CAR_AUTH_TOKEN=loop_server.info["token"])
    outcome = agent_loop.run_agent(config("adder", rt), "add")
    assert outcome["status"] == "success"
    trace = trace_of(rt, outcome["run_id"])
    assert trace["agent_id"] == "name:adder"  # never the registered agent "adder"
    assert [r["record"] for r in trace["records"]].count("model_turn") == loopmodels.STEPS + 1


def test_run_chat_turn(as_adder) -> None:
    cfg = config("adder", as_adder)
    result = agent_loop.run_chat_turn(
        as_adder,
        cfg,
        cfg["tool_schemas"],
        cfg["tools"],
        {},
        "chat-1",
        [{"role": "user", "content": "add 1, 2 and 3"}],
        None,
        include_run_id=True,
    )
    trace = trace_of(as_adder, result["run_id"])
    assert trace["status"] == "completed"
    assert [t["turn"]["output"] for t in trace["records"] if t["record"] == "turn"][:3] == [
        {"sum": 1},
        {"sum": 3},
        {"sum": 6},
    ]


def test_main_with_a_task_in_its_own_process(loop_server) -> None:
    code = (
        "import sys\n"
        "from car_runtime import agent_loop\n"
        "from tests.compat.loopagent import ADD_SCHEMA, add\n"
        "agent_loop.main({'agent_name': 'adder', 'identity': 'add', 'tool_schemas': [ADD_SCHEMA],"
        " 'tools': {'add': add}, 'max_turns': 8, 'default_model': 'adder'})\n"
    )
    env = {
        "CAR_DAEMON_URL": loop_server.url,
        "CAR_AGENT_ID": "adder",
        "CAR_AGENT_TOKEN": loop_server.info["agents"]["adder"],
        "CAR_NO_VERSION_WARNING": "1",
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
    }
    done = subprocess.run(
        [sys.executable, "-c", code, "--task", "add 1, 2 and 3", "--json"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["status"] == "success" and outcome["summary"] == "6"


def test_a_policy_stops_the_dangerous_step(as_adder) -> None:
    removed.clear()
    outcome = agent_loop.run_agent(config("dangerous", as_adder), "clean up")
    assert removed == []  # the rm tool never ran
    trace = trace_of(as_adder, outcome["run_id"])
    rm_turn = next(r["turn"] for r in trace["records"] if r["record"] == "turn")
    assert rm_turn["tool"] == "rm" and rm_turn["status"] == "rejected"
    assert rm_turn["policy_rejected"] is True and "no-rm" in rm_turn["error"]


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("raises", "model 'raises' raised RuntimeError: provider is down"),
        ("hangs", "model 'hangs': did not answer within 1 s"),
        ("malformed", "model 'malformed' returned a malformed reply"),
        ("nobody", "unknown model 'nobody'; registered models: adder, dangerous"),
    ],
)
def test_a_bad_model_ends_the_run_as_a_failure_never_a_hang(as_adder, model, message) -> None:
    outcome = agent_loop.run_agent(config(model, as_adder), "add")
    assert outcome["status"] == "failure" and message in outcome["summary"]
    trace = trace_of(as_adder, outcome["run_id"])
    assert trace["status"] == "completed"
    assert trace["records"][-1]["outcome"]["status"] == "failure"


def chat_turn(loop_server, prompt: str) -> tuple[list[dict[str, Any]], str]:
    """As the host: agents.chat to adder, then its events until done or error."""
    host = Client(loop_server.url)
    try:
        host.call("session.auth", {"host_token": loop_server.info["host_token"]})
        deadline = time.monotonic() + 30
        while True:  # until the agent process has attached
            reply = host.request("agents.chat", {"agent_id": "adder", "prompt": prompt})
            if "result" in reply or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert reply.get("result", {}).get("accepted") is True, reply
        events = []
        while not events or events[-1]["kind"] not in ("done", "error"):
            events.append(host.wait_notification("agents.chat.event", timeout=30)["params"])
        runs = host.call("runs.list", {"agent_id": "adder"})["runs"]
        return events, runs[0]["run_id"]
    finally:
        host.close()


def test_serve_chat_answers_chat_turns(loop_server, monkeypatch) -> None:
    monkeypatch.setenv("CAR_DAEMON_URL", loop_server.url)
    monkeypatch.setenv("CAR_AGENT_ID", "adder")
    monkeypatch.setenv("CAR_AGENT_TOKEN", loop_server.info["agents"]["adder"])
    rt = agent_loop.serve_chat(config("adder"))
    try:
        events, run_id = chat_turn(loop_server, "add 1, 2 and 3")
        assert events[-1]["kind"] == "done" and "6" in str(events[-1]["delta"])
        assert [e["delta"] for e in events if e["kind"] == "tool_call"] == ["add"] * 3
        trace = trace_of(rt, run_id)
        assert [r["record"] for r in trace["records"]].count("model_turn") == loopmodels.STEPS + 1
    finally:
        rt.close()


def test_main_serve_in_its_own_process(loop_server) -> None:
    code = (
        "from car_runtime import agent_loop\n"
        "from tests.compat.loopagent import config\n"
        "agent_loop.main(config('adder'))\n"
    )
    env = {
        "CAR_DAEMON_URL": loop_server.url,
        "CAR_AGENT_ID": "adder",
        "CAR_AGENT_TOKEN": loop_server.info["agents"]["adder"],
        "CAR_NO_VERSION_WARNING": "1",
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
    }
    agent = subprocess.Popen(
        [sys.executable, "-c", code, "--serve"],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        events, _ = chat_turn(loop_server, "add 1, 2 and 3")
        assert events[-1]["kind"] == "done", events
    finally:
        agent.terminate()
        agent.wait(10)


def test_a_runner_that_disconnects_mid_request_ends_the_run_as_a_failure(loop_server, as_adder):
    runner = Client(loop_server.url)
    runner.call("session.auth", {"token": loop_server.info["token"]})
    runner.call("inference.register_runner", {"models": ["remote"]})

    def vanish() -> None:
        runner.wait_notification("inference.runner.invoke", timeout=30)
        runner.close()

    t = threading.Thread(target=vanish, daemon=True)
    t.start()
    started = time.monotonic()
    outcome = agent_loop.run_agent(config("remote", as_adder), "add")
    t.join(5)
    assert time.monotonic() - started < 10
    assert (
        outcome["status"] == "failure" and "disconnected before it answered" in outcome["summary"]
    )
    assert trace_of(as_adder, outcome["run_id"])["records"][-1]["outcome"]["status"] == "failure"

"""Time travel over a real server: what infer records into a run, runs.replay and runs.fork,
on SQLite and on PostgreSQL. The agent is a real WebSocket client driving its own loop (infer,
runs.record_model_turn, proposal.submit) with the deterministic adder of tests/compat."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from carnb.errors import CarnbError
from tests.compat import loopmodels
from tests.conftest import Client, RpcFailed, agent_auth


class Counted:
    """A model or tool that counts its calls."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.calls = 0

    def __call__(self, *args: Any, **kw: Any) -> Any:
        self.calls += 1
        return self.fn(*args, **kw)


def add(a: float, b: float) -> dict[str, float]:
    """add two numbers"""
    return {"sum": a + b}


def finisher(request: dict[str, Any]) -> dict[str, Any]:
    """Another model: finishes at once with 42."""
    return {
        "text": "done",
        "tool_calls": [{"id": "f", "name": "finish", "arguments": {"answer": "42"}}],
    }


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def rt(request: Any, make_runtime: Any) -> Any:
    if request.param == "postgres":
        return make_runtime(agents=("alice",), store=request.getfixturevalue("pg_url"))
    return make_runtime(agents=("alice",))


@pytest.fixture
def models(rt: Any) -> dict[str, Counted]:
    counted = {"adder": Counted(loopmodels.adder), "finisher": Counted(finisher)}
    for name, fn in counted.items():
        rt.register_model(fn, name=name)
    return counted


@pytest.fixture
def adds(rt: Any) -> Counted:
    tool = Counted(add)
    rt.register_tool(tool, name="add", share=True)
    return tool


@pytest.fixture
def alice(rt: Any) -> Any:
    c = Client(rt.url)
    c.call("session.auth", agent_auth(rt, "alice"))
    yield c
    c.close()


def agent_loop(
    c: Any,
    goal: str,
    *,
    system: str = "You add numbers.",
    turns: int = 8,
    context_query: str | None = None,
    agent_name: str | None = None,
) -> str:
    """What an agent does: infer, record the model turn, run the tool calls, until finish."""
    start = {"intent": goal} if agent_name is None else {"intent": goal, "agent_name": agent_name}
    run_id = c.call("runs.start", start)["run_id"]
    messages: list[dict[str, Any]] = [{"role": "user", "content": goal}]
    for turn in range(1, turns + 1):
        ask = {"model": "adder", "system": system, "messages": messages}
        if context_query is not None:
            ask["context_query"] = context_query
        reply = c.call("infer", ask)
        c.call(
            "runs.record_model_turn",
            {
                "run_id": run_id,
                "turn_index": turn,
                "assistant_text": reply["text"],
                "requested_tool_calls": reply["tool_calls"],
                "model_id": reply["model_used"],
                "token_usage": reply["usage"],
                "duration_ms": reply["latency_ms"],
            },
        )
        calls = reply["tool_calls"]
        messages.append({"role": "assistant", "content": reply["text"], "tool_calls": calls})
        finish = [x for x in calls if x["name"] == "finish"]
        if finish:
            answer = finish[0]["arguments"]["answer"]
            c.call(
                "runs.record_turns",
                {
                    "run_id": run_id,
                    "turns": [
                        {
                            "tool": "finish",
                            "parameters": finish[0]["arguments"],
                            "status": "succeeded",
                            "output": answer,
                        }
                    ],
                },
            )
            c.call(
                "runs.complete",
                {"run_id": run_id, "outcome": {"status": "success", "summary": answer}},
            )
            return run_id
        proposal = {
            "id": f"p{turn}",
            "actions": [
                {
                    "id": x["id"],
                    "type": "tool_call",
                    "tool": x["name"],
                    "parameters": x["arguments"],
                }
                for x in calls
            ],
        }
        result = c.call("proposal.submit", {"proposal": proposal})
        for r in result["results"]:
            messages.append(
                {
                    "role": "tool_result",
                    "tool_call_id": r["action_id"],
                    "content": json.dumps(r["output"]),
                }
            )
    raise AssertionError("the agent did not finish")


def ended(rt: Any, run_id: str, timeout: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        trace: dict[str, Any] = rt.call("runs.get_trace", {"run_id": run_id, "limit": 1000})
        if trace["status"] != "in_progress":
            return trace
        time.sleep(0.05)
    raise AssertionError(f"fork {run_id} did not end")


def leave(rt: Any, c: Client) -> None:
    """Close the agent's connection and wait until the server has let its session go."""
    c.close()
    deadline = time.monotonic() + 10
    while any(x.get("agent_id") == "alice" for x in rt.snapshots()):
        assert time.monotonic() < deadline, "the agent's session did not end"
        time.sleep(0.02)


def kinds(trace: dict[str, Any]) -> list[str]:
    return [r["record"] for r in trace["records"]]


def test_infer_is_recorded_with_its_model_turn_bounded_and_without_a_token(
    rt, models, adds, alice
) -> None:
    run_id = agent_loop(alice, "add 1, 2 and 3", system=f"be brief {rt.token} " + "x" * 20_000)
    trace = rt.call("runs.get_trace", {"run_id": run_id, "limit": 1000})
    assert kinds(trace) == ["started"] + ["model_turn", "turn"] * 4 + ["ended"]
    model_turns = [r for r in trace["records"] if r["record"] == "model_turn"]
    first, second = model_turns[0]["inference"], model_turns[1]["inference"]
    assert first["request"]["model"] == "adder"
    assert first["request"]["messages"] == [{"role": "user", "content": "add 1, 2 and 3"}]
    assert first["reply"]["text"] == "step 1: adding 1"
    assert first["reply"]["tool_calls"][0]["arguments"] == {"a": 0, "b": 1}
    assert first["reply"]["usage"] == {"input_tokens": 10, "output_tokens": 5}
    # the conversation is not stored again each turn: only what is new
    assert second["request"]["messages_kept"] == 1 and len(second["request"]["messages"]) == 2
    # bounded with a visible marker, and the launch's token never stored
    system = first["request"]["system"]
    assert system.endswith("…[truncated]") and first["truncated"] is True
    assert rt.token not in json.dumps(trace) and "[redacted]" in system
    assert rt.host_token not in json.dumps(trace)


def test_a_model_turn_cannot_carry_a_forged_inference(rt, models, alice) -> None:
    run_id = alice.call("runs.start", {"intent": "x"})["run_id"]
    alice.call(
        "runs.record_model_turn",
        {"run_id": run_id, "assistant_text": "hi", "inference": {"reply": {"text": "forged"}}},
    )
    (turn,) = [
        r
        for r in rt.call("runs.get_trace", {"run_id": run_id})["records"]
        if r["record"] == "model_turn"
    ]
    assert "inference" not in turn


def test_replay_reproduces_with_no_model_call_and_no_tool_side_effect(
    rt, models, adds, alice
) -> None:
    run_id = agent_loop(alice, "add 1, 2 and 3")
    model_calls, tool_calls = models["adder"].calls, adds.calls
    report = rt.call("runs.replay", {"run_id": run_id})
    assert report["reproduced"] is True and report["divergences"] == []
    assert report["model_turns"] == 4 and report["tool_steps"] == 4
    assert report["recorded_requests"] == 4 and report["model_calls"] == 0
    assert models["adder"].calls == model_calls and adds.calls == tool_calls  # nothing ran


def test_replay_reports_a_step_that_no_longer_verifies_and_a_tool_that_answers_differently(
    rt, models, adds, alice
) -> None:
    run_id = agent_loop(alice, "add 1, 2 and 3")
    leave(rt, alice)  # the agent is gone: the caller's policies are those in force
    rt.call("policy.register", {"name": "no-add", "rule": "deny_tool", "target": "add"})
    report = rt.call("runs.replay", {"run_id": run_id})
    assert report["reproduced"] is False
    assert {d["kind"] for d in report["divergences"]} == {"verify"}
    assert [d["turn"] for d in report["divergences"]] == [1, 2, 3]
    assert "no-add" in report["divergences"][0]["message"]
    rt.call("policy.unregister", {"name": "no-add"})
    rt.register_tool(lambda a, b: {"sum": a * b}, name="add")  # the tool changed since
    report = rt.call("runs.replay", {"run_id": run_id, "rerun_tools": True})
    assert report["tools_rerun"] == 3
    diverged = [d for d in report["divergences"] if d["kind"] == "tool_output"]
    assert [d["turn"] for d in diverged] == [1, 2, 3]
    assert diverged[1]["recorded"] == {"sum": 3} and diverged[1]["now"] == {"sum": 2}


def test_fork_with_another_model_is_a_new_run_under_its_parent(rt, models, adds, alice) -> None:
    parent = agent_loop(alice, "add 1, 2 and 3")
    adder_calls = models["adder"].calls
    fork = rt.call("runs.fork", {"run_id": parent, "at": 2, "model": "finisher"})
    assert fork["forked_from"] == {"run_id": parent, "turn": 2}
    assert fork["model"] == "finisher" and fork["rebuilt_request"] is False
    trace = ended(rt, fork["run_id"])
    assert trace["status"] == "completed" and trace["records"][-1]["outcome"]["summary"] == "42"
    assert kinds(trace) == ["started", "model_turn", "turn", "model_turn", "turn", "ended"]
    assert trace["records"][0]["forked_from"] == {"run_id": parent, "turn": 2}
    copied, forked = [r for r in trace["records"] if r["record"] == "model_turn"]
    assert copied["assistant_text"] == "step 1: adding 1"  # from the recording
    assert forked["model_id"] == "finisher" and forked["turn_index"] == 2
    # the request at the fork is the recorded one: the conversation up to turn 2
    assert [m["role"] for m in forked["inference"]["request"]["messages"]][-2:] == [
        "assistant",
        "tool_result",
    ]
    assert models["adder"].calls == adder_calls and models["finisher"].calls == 1
    listed = rt.call("runs.list", {"agent_id": "alice"})["runs"]
    by_id = {r["run_id"]: r for r in listed}
    assert by_id[fork["run_id"]]["forked_from"] == {"run_id": parent, "turn": 2}
    assert by_id[parent]["forked_from"] is None


def test_fork_with_a_corrected_system_prompt_drives_the_loop_to_its_end(
    rt, models, adds, alice
) -> None:
    parent = agent_loop(alice, "add 1, 2 and 3", system="wrong prompt")
    seen: list[str] = []

    def careful(request: dict[str, Any]) -> Any:
        seen.append(request.get("system"))
        return loopmodels.adder(request)

    rt.register_model(careful, name="careful")
    tools_before = adds.calls
    fork = rt.call(
        "runs.fork", {"run_id": parent, "at": 1, "model": "careful", "system": "add carefully"}
    )
    trace = ended(rt, fork["run_id"])
    assert trace["records"][-1]["outcome"] == {"status": "success", "summary": "6"}
    assert seen == ["add carefully"] * 4
    assert adds.calls == tools_before + 3  # a notebook tool runs live in a fork
    tool_turns = [r["turn"] for r in trace["records"] if r["record"] == "turn"]
    assert [t["tool"] for t in tool_turns] == ["add", "add", "add", "finish"]


def test_fork_with_an_answer_calls_no_model(rt, models, adds, alice) -> None:
    parent = agent_loop(alice, "add 1, 2 and 3")
    calls = {name: m.calls for name, m in models.items()}
    answer = json.dumps(
        {"text": "enough", "tool_calls": [{"name": "finish", "arguments": {"answer": "stop"}}]}
    )
    fork = rt.call("runs.fork", {"run_id": parent, "at": 3, "answer": answer})
    trace = ended(rt, fork["run_id"])
    assert trace["records"][-1]["outcome"]["summary"] == "stop"
    assert {name: m.calls for name, m in models.items()} == calls
    fork = rt.call("runs.fork", {"run_id": parent, "at": 1, "answer": "just text"})
    assert ended(rt, fork["run_id"])["records"][-1]["outcome"]["summary"] == "just text"


def test_fork_with_a_tool_output_override(rt, models, adds, alice) -> None:
    parent = agent_loop(alice, "add 1, 2 and 3")
    tools_before = adds.calls
    fork = rt.call("runs.fork", {"run_id": parent, "at": 1, "tool_outputs": {"add": {"sum": 100}}})
    trace = ended(rt, fork["run_id"])
    assert trace["records"][-1]["outcome"]["summary"] == "100"
    assert adds.calls == tools_before  # overridden: the tool never ran
    outputs = [r["turn"]["output"] for r in trace["records"] if r["record"] == "turn"]
    assert outputs[:3] == [{"sum": 100}] * 3


def recorded_by_hand(c: Client, *, with_model_turns: bool = True) -> str:
    """A run an agent traced itself (its own provider, its own tools): carnb saw no infer."""
    run_id = c.call("runs.start", {"intent": "look it up"})["run_id"]
    if with_model_turns:
        c.call(
            "runs.record_model_turn",
            {
                "run_id": run_id,
                "assistant_text": "searching",
                "requested_tool_calls": [
                    {"id": "s1", "name": "search", "arguments": {"q": "carnb"}}
                ],
                "model_id": "their-own",
            },
        )
    c.call(
        "runs.record_turns",
        {
            "run_id": run_id,
            "turns": [
                {
                    "action_id": "s1",
                    "tool": "search",
                    "parameters": {"q": "carnb"},
                    "status": "succeeded",
                    "output": "a kernel extension",
                }
            ],
        },
    )
    if with_model_turns:
        c.call(
            "runs.record_model_turn",
            {
                "run_id": run_id,
                "assistant_text": "it is a kernel extension",
                "model_id": "their-own",
            },
        )
    c.call("runs.complete", {"run_id": run_id, "outcome": {"status": "success"}})
    return run_id


def test_a_tool_the_fork_cannot_reach_fails_naming_it_and_a_recorded_call_is_answered(
    rt, models, alice
) -> None:
    parent = recorded_by_hand(alice)
    leave(rt, alice)
    same = {"tool_calls": [{"id": "s2", "name": "search", "arguments": {"q": "carnb"}}]}
    fork = rt.call("runs.fork", {"run_id": parent, "at": 1, "answer": same, "max_turns": 1})
    trace = ended(rt, fork["run_id"])
    (turn,) = [r["turn"] for r in trace["records"] if r["record"] == "turn"]
    assert turn["output"] == "a kernel extension"  # answered from the recording
    other = {"tool_calls": [{"id": "s3", "name": "search", "arguments": {"q": "other"}}]}
    fork = rt.call("runs.fork", {"run_id": parent, "at": 1, "answer": other})
    trace = ended(rt, fork["run_id"])
    summary = trace["records"][-1]["outcome"]["summary"]
    assert trace["records"][-1]["outcome"]["status"] == "failure"
    assert "tool 'search' is not reachable" in summary and "--tool-output search=VALUE" in summary


def test_fork_where_carnb_never_saw_the_request_rebuilds_it_and_says_so(rt, models, alice) -> None:
    parent = recorded_by_hand(alice)
    fork = rt.call("runs.fork", {"run_id": parent, "at": 2, "model": "finisher"})
    assert fork["rebuilt_request"] is True
    trace = ended(rt, fork["run_id"])
    forked = [r for r in trace["records"] if r["record"] == "model_turn"][-1]
    roles = [m["role"] for m in forked["inference"]["request"]["messages"]]
    assert roles == ["user", "assistant", "tool_result"]


def test_a_run_with_nothing_to_replay_gets_a_clear_message(rt, models, alice) -> None:
    parent = recorded_by_hand(alice, with_model_turns=False)
    for method, params in (("runs.replay", {}), ("runs.fork", {"at": 1})):
        with pytest.raises(CarnbError) as err:
            rt.call(method, {"run_id": parent, **params})
        assert (
            err.value.code == -32602 and "has no model turn to replay or fork" in err.value.message
        )


def test_fork_refuses_bad_input_and_what_it_may_not_read(rt, models, adds, alice) -> None:
    parent = agent_loop(alice, "add 1")
    for params, words in (
        ({"at": 9}, "has 4 model turns"),
        ({"at": 0}, "at"),
        ({"at": 1, "model": "gpt-9"}, "unknown model 'gpt-9'"),
        ({"at": 1, "model": "adder", "answer": "x"}, "not both"),
        ({"at": 1, "tool_outputs": [1]}, "tool_outputs"),
    ):
        with pytest.raises(CarnbError) as err:
            rt.call("runs.fork", {"run_id": parent, **params})
        assert words in err.value.message
    stranger = Client(rt.url)
    try:
        stranger.call("session.auth", {"token": rt.token})
        with pytest.raises(RpcFailed) as err:
            stranger.call("runs.fork", {"run_id": parent, "at": 1})
        assert "run not found" in err.value.message
        with pytest.raises(RpcFailed):
            stranger.call("runs.replay", {"run_id": parent})
    finally:
        stranger.close()


def test_a_connected_agents_tools_run_live_under_its_policies(rt, models, alice) -> None:
    search = {"name": "search", "parameters": {"type": "object", "properties": {"q": {}}}}
    alice.call("tools.register", [search])
    alice.call("policy.register", {"name": "no-rm", "rule": "deny_tool", "target": "rm"})
    parent = recorded_by_hand(alice)
    live = {"tool_calls": [{"id": "s9", "name": "search", "arguments": {"q": "live"}}]}
    fork = rt.call("runs.fork", {"run_id": parent, "at": 1, "answer": live, "max_turns": 1})
    deadline = time.monotonic() + 10
    while True:  # the agent answers the fork's call of its tool
        msg = alice.recv(max(0.01, deadline - time.monotonic()))
        if msg.get("method") == "tools.execute":
            break
    assert msg["params"]["tool"] == "search" and msg["params"]["parameters"] == {"q": "live"}
    alice.send({"jsonrpc": "2.0", "id": msg["id"], "result": "answered live"})
    trace = ended(rt, fork["run_id"])
    searched = [r["turn"] for r in trace["records"] if r["record"] == "turn"][-1]
    assert searched["output"] == "answered live" and searched["status"] == "succeeded"
    assert "limit of 1 model turns" in trace["records"][-1]["outcome"]["summary"]
    rm = {"tool_calls": [{"id": "r1", "name": "rm", "arguments": {"path": "/"}}]}
    fork = rt.call("runs.fork", {"run_id": parent, "at": 1, "answer": rm, "max_turns": 1})
    trace = ended(rt, fork["run_id"])
    removed = [r["turn"] for r in trace["records"] if r["record"] == "turn"][-1]
    assert removed["tool"] == "rm" and removed["policy_rejected"] is True  # the agent's policy


def test_a_forks_proposals_meet_supervision(rt, models, adds, alice) -> None:
    parent = agent_loop(alice, "add 1, 2 and 3")
    leave(rt, alice)
    seen: list[dict[str, Any]] = []

    def judge(intent: dict[str, Any]) -> Any:
        seen.append(intent)
        return ("deny", "no adding in forks")

    rt.add_supervisor(judge, name="judge", tools=["add"])
    tools_before = adds.calls
    fork = rt.call("runs.fork", {"run_id": parent, "at": 2, "max_turns": 2})
    trace = ended(rt, fork["run_id"])
    denied = [r["turn"] for r in trace["records"] if r["record"] == "turn"][-1]
    assert denied["tool"] == "add" and denied["status"] == "rejected"
    assert "no adding in forks" in denied["error"] and adds.calls == tools_before
    assert seen and seen[0]["actions"][0]["tool"] == "add"


def model_turn(c: Client, run_id: str, *calls: dict[str, Any]) -> None:
    """A model turn the agent records itself (its own provider: carnb saw no infer)."""
    c.call(
        "runs.record_model_turn",
        {"run_id": run_id, "assistant_text": "", "requested_tool_calls": list(calls)},
    )


def test_proposal_actions_are_recorded_with_their_attempts_and_replay_retries_as_recorded(
    rt, models, alice
) -> None:
    tries = {"n": 0, "broken": False}

    def flaky(q: str) -> str:
        """fails every other call (always, once broken)"""
        tries["n"] += 1
        if tries["broken"] or tries["n"] % 2:
            raise RuntimeError("transient")
        return f"found {q}"

    rt.register_tool(flaky, name="flaky", share=True)
    run_id = alice.call("runs.start", {"intent": "look"})["run_id"]
    model_turn(alice, run_id, {"id": "a", "name": "flaky", "arguments": {"q": "x"}})
    action = {
        "id": "a",
        "type": "tool_call",
        "tool": "flaky",
        "parameters": {"q": "x"},
        "failure_behavior": "retry",
        "max_retries": 3,
    }
    alice.call("proposal.submit", {"proposal": {"id": "p", "actions": [action]}})
    alice.call("runs.complete", {"run_id": run_id, "outcome": {"status": "success"}})
    trace = rt.call("runs.get_trace", {"run_id": run_id})
    (turn,) = [r["turn"] for r in trace["records"] if r["record"] == "turn"]
    assert turn["tool"] == "flaky" and turn["parameters"] == {"q": "x"}
    assert turn["output"] == "found x" and turn["attempt"] == 2 and turn["duration_ms"] > 0
    report = rt.call("runs.replay", {"run_id": run_id})
    assert report["tool_retries"] == 1 and report["tool_ms"] == round(turn["duration_ms"], 3)
    # run again, the flaky tool gets the attempts the recording shows: its first failure is no
    # divergence
    report = rt.call("runs.replay", {"run_id": run_id, "rerun_tools": True})
    assert report["tools_rerun"] == 1 and report["reproduced"] is True, report["divergences"]
    tries["broken"] = True
    (diverged,) = rt.call("runs.replay", {"run_id": run_id, "rerun_tools": True})["divergences"]
    assert diverged["kind"] == "tool_output" and diverged["attempts"] == 2
    assert diverged["recorded_attempt"] == 2 and "transient" in diverged["now"]["error"]


def test_replay_reruns_a_connected_agents_tools_through_tools_execute(rt, models, alice) -> None:
    import threading

    search = {"name": "search", "parameters": {"type": "object", "properties": {"q": {}}}}
    alice.call("tools.register", [search])
    parent = recorded_by_hand(alice)
    box: dict[str, Any] = {}
    replaying = threading.Thread(
        target=lambda: box.update(
            report=rt.call("runs.replay", {"run_id": parent, "rerun_tools": True})
        )
    )
    replaying.start()
    deadline = time.monotonic() + 10
    while True:  # the agent answers the replay's call of its tool, differently now
        msg = alice.recv(max(0.01, deadline - time.monotonic()))
        if msg.get("method") == "tools.execute":
            break
    assert msg["params"]["tool"] == "search" and msg["params"]["parameters"] == {"q": "carnb"}
    assert msg["params"]["attempt"] == 1
    alice.send({"jsonrpc": "2.0", "id": msg["id"], "result": "a notebook extension"})
    replaying.join(10)
    report = box["report"]
    assert report["tools_rerun"] == 1
    (diverged,) = report["divergences"]
    assert diverged["kind"] == "tool_output" and diverged["tool"] == "search"
    assert (
        diverged["recorded"] == "a kernel extension" and diverged["now"] == "a notebook extension"
    )
    leave(rt, alice)  # gone: its tool can no longer be run again, and is not
    report = rt.call("runs.replay", {"run_id": parent, "rerun_tools": True})
    assert report["tools_rerun"] == 0 and report["reproduced"] is True


def test_a_fork_starts_from_the_state_the_parent_had_at_the_fork_point(
    rt, models, adds, alice
) -> None:
    run_id = alice.call("runs.start", {"intent": "deploy when ready"})["run_id"]
    model_turn(alice, run_id)
    write = {"id": "w", "type": "state_write", "parameters": {"key": "ready", "value": True}}
    alice.call("proposal.submit", {"proposal": {"id": "p1", "actions": [write]}})
    call = {"id": "c1", "name": "add", "arguments": {"a": 1, "b": 2}}
    model_turn(alice, run_id, call)
    action = {"id": "c1", "type": "tool_call", "tool": "add", "parameters": {"a": 1, "b": 2}}
    alice.call("proposal.submit", {"proposal": {"id": "p2", "actions": [action]}})
    alice.call("runs.complete", {"run_id": run_id, "outcome": {"status": "success"}})
    # from now on the agent's policy lets add run only once ready
    alice.call(
        "policy.register",
        {"name": "when-ready", "rule": "require_state", "key": "ready", "value": True},
    )
    assert rt.call("runs.replay", {"run_id": run_id})["reproduced"] is True  # it was ready
    answer = {"tool_calls": [call]}
    fork = rt.call("runs.fork", {"run_id": run_id, "at": 2, "answer": answer, "max_turns": 1})
    added = [r["turn"] for r in ended(rt, fork["run_id"])["records"] if r["record"] == "turn"]
    assert added[-1]["tool"] == "add" and added[-1]["output"] == {"sum": 3}
    assert added[-1]["status"] == "succeeded" and added[-1]["attempt"] == 1
    # forked before the write, the state is not there yet: the policy refuses
    fork = rt.call("runs.fork", {"run_id": run_id, "at": 1, "answer": answer, "max_turns": 1})
    early = [r["turn"] for r in ended(rt, fork["run_id"])["records"] if r["record"] == "turn"]
    assert early[-1]["policy_rejected"] is True and "state 'ready'" in early[-1]["error"]
    assert alice.call("state.get", {"key": "ready"}) is True  # the parent's state untouched


def test_an_infer_no_model_turn_takes_is_kept_as_its_own_record_in_place(
    rt, models, adds, alice
) -> None:
    run_id = alice.call("runs.start", {"intent": "add 1, 2 and 3"})["run_id"]
    messages: list[dict[str, Any]] = [{"role": "user", "content": "add 1, 2 and 3"}]
    first = alice.call("infer", {"model": "adder", "messages": messages})  # never recorded
    (call,) = first["tool_calls"]
    action = {"id": call["id"], "type": "tool_call", "tool": "add", "parameters": call["arguments"]}
    done = alice.call("proposal.submit", {"proposal": {"id": "p1", "actions": [action]}})
    messages += [
        {"role": "assistant", "content": first["text"], "tool_calls": first["tool_calls"]},
        {"role": "tool_result", "tool_call_id": call["id"], "content": "1"},
    ]
    second = alice.call("infer", {"model": "adder", "messages": messages})
    alice.call(
        "runs.record_model_turn",
        {"run_id": run_id, "turn_index": 2, "assistant_text": second["text"],
         "requested_tool_calls": second["tool_calls"]},
    )  # fmt: skip
    alice.call("infer", {"model": "adder", "messages": messages})  # asked again: never recorded
    alice.call("runs.complete", {"run_id": run_id, "outcome": {"status": "success"}})
    trace = rt.call("runs.get_trace", {"run_id": run_id, "limit": 1000})
    assert kinds(trace) == ["started", "model_turn", "turn", "model_turn", "model_turn", "ended"]
    own, agents, last = [r for r in trace["records"] if r["record"] == "model_turn"]
    assert own["inference"]["unattached"] is True and own["turn_index"] is None
    assert own["assistant_text"] == first["text"] and own["requested_tool_calls"] == [call]
    assert own["model_id"] == "adder" and own["token_usage"] == first["usage"]
    assert own["inference"]["request"]["messages"] == messages[:1]
    assert "unattached" not in agents["inference"] and agents["turn_index"] == 2
    assert agents["inference"]["request"]["messages_kept"] == 1  # refers to the one kept before
    assert last["inference"]["unattached"] is True
    assert done["results"][0]["output"] == {"sum": 1}
    report = rt.call("runs.replay", {"run_id": run_id})
    assert report["model_turns"] == 3 and report["recorded_requests"] == 3
    assert report["reproduced"] is True, report["divergences"]
    fork = rt.call("runs.fork", {"run_id": run_id, "at": 2, "model": "finisher"})
    assert fork["rebuilt_request"] is False  # the request at 2 is whole: 1's was kept
    assert ended(rt, fork["run_id"])["records"][-1]["outcome"]["summary"] == "42"


def test_an_infer_left_when_the_connection_closes_is_kept_before_the_run_ends(
    rt, models, alice
) -> None:
    run_id = alice.call("runs.start", {"intent": "add 1"})["run_id"]
    alice.call("infer", {"model": "adder", "messages": [{"role": "user", "content": "add 1"}]})
    leave(rt, alice)
    deadline = time.monotonic() + 10
    while (trace := rt.call("runs.get_trace", {"run_id": run_id}))["status"] == "in_progress":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert kinds(trace) == ["started", "model_turn", "ended"]
    assert trace["status"] == "incomplete" and trace["records"][1]["inference"]["unattached"]

"""The model bridge over real sockets: notebook models (carnb.model), runner clients, bad input."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest

from carnb.app.schedule import gate_of
from tests.compat import loopmodels
from tests.conftest import RpcFailed


def ask(messages: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": messages}], **extra}


def test_infer_reaches_a_notebook_model_with_the_documented_reply(runtime, connect_client) -> None:
    seen: list[dict[str, Any]] = []

    def model(request: dict[str, Any]) -> dict[str, Any]:
        seen.append(request)
        return {
            "text": "sure",
            "tool_calls": [{"name": "add", "arguments": '{"a": 1}'}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 2},
        }

    assert runtime.register_model(model, name="m1") == "m1"
    c = connect_client()
    reply = c.call("infer", ask(tools=[{"name": "add"}]))
    assert reply["text"] == "sure" and reply["model_used"] == "m1"
    (call,) = reply["tool_calls"]
    assert call["name"] == "add" and call["arguments"] == {"a": 1} and call["id"]
    assert reply["usage"] == {"input_tokens": 7, "output_tokens": 2}
    assert reply["stop_reason"] == "tool_use" and reply["latency_ms"] >= 0
    assert reply["trace_id"] and reply["time_to_first_token_ms"] is None
    assert seen[0]["model"] == "m1" and seen[0]["tools"] == [{"name": "add"}]


def test_request_model_else_default_and_unknown_lists_the_registered(runtime, connect_client):
    runtime.register_model(lambda r: "from a", name="a")
    runtime.register_model(lambda r: "from b", name="b")
    c = connect_client()
    assert c.call("infer", ask())["text"] == "from a"  # the first registered is the default
    assert c.call("infer", ask(model="b"))["text"] == "from b"
    runtime.set_default_model("b")
    assert c.call("infer", ask())["text"] == "from b"
    with pytest.raises(RpcFailed) as err:
        c.call("infer", ask(model="gpt-9"))
    assert err.value.code == -32603
    assert "unknown model 'gpt-9'; registered models: a, b" in err.value.message
    listed = c.call("models.list")
    assert listed["default"] == "b" and [m["name"] for m in listed["models"]] == ["a", "b"]


def test_no_model_at_all_says_how_to_register_one(connect_client) -> None:
    with pytest.raises(RpcFailed, match="no model is registered on this server: register one"):
        connect_client().call("infer", ask())


@pytest.mark.parametrize(
    ("fn", "code", "message"),
    [
        (loopmodels.raises, -32603, "model 'bad' raised RuntimeError: provider is down"),
        (loopmodels.malformed, -32603, "model 'bad' returned a malformed reply: a int"),
        (lambda r: {"tool_calls": [{"arguments": {}}]}, -32603, "tool_calls[0].name is missing"),
        (loopmodels.refuses, -32007, "content refused: the filter declined this request"),
    ],
)
def test_a_failing_model_is_a_clear_error_and_the_server_goes_on(
    runtime, connect_client, fn, code, message
) -> None:
    runtime.register_model(fn, name="bad")
    runtime.register_model(lambda r: "fine", name="good")
    c = connect_client()
    with pytest.raises(RpcFailed) as err:
        c.call("infer", ask(model="bad"))
    assert err.value.code == code and message in err.value.message
    assert c.call("infer", ask(model="good"))["text"] == "fine"


def test_a_hanging_model_times_out_without_holding_the_server(runtime, connect_client) -> None:
    release = threading.Event()
    runtime.register_model(lambda r: release.wait(10) and "late", name="slow", timeout=0.5)
    c, other = connect_client(), connect_client()
    c.send({"jsonrpc": "2.0", "id": 1, "method": "infer", "params": ask(model="slow")})
    started = time.monotonic()
    assert other.call("state.set", {"key": "k", "value": 1}) == "ok"  # not held meanwhile
    assert time.monotonic() - started < 0.4
    reply = c.recv_reply(1, timeout=5)
    assert reply["error"]["code"] == -32603
    assert "did not answer within 0.5 s" in reply["error"]["message"]
    release.set()


def test_an_async_model_and_embed(runtime, connect_client) -> None:
    async def model(request: dict[str, Any]) -> str:
        await asyncio.sleep(0.01)
        return "async answer"

    runtime.register_model(model, embed=lambda texts: [[float(len(t)), 1.0] for t in texts])
    c = connect_client()
    assert c.call("infer", ask())["text"] == "async answer"
    assert c.call("embed", {"texts": ["ab", "abc"]}) == {
        "embeddings": [[2.0, 1.0], [3.0, 1.0]],
        "model_used": "model",
    }
    with pytest.raises(RpcFailed, match="texts is required"):
        c.call("embed", {"texts": "ab"})


def test_context_query_injects_the_sessions_memory(runtime, connect_client) -> None:
    runtime.register_model(loopmodels.echo)
    c = connect_client()
    c.call(
        "memory.add_fact",
        {"subject": "deploy", "body": "never deploy on fridays", "kind": "constraint"},
    )
    reply = json.loads(c.call("infer", ask(context_query="deploy", messages="when?"))["text"])
    assert "never deploy on fridays" in reply["context"]
    system = reply["messages"][0]
    assert system["role"] == "system" and reply["context"] in system["content"]
    # another unbound session has its own (empty) memory: nothing injected
    other = json.loads(connect_client().call("infer", ask(context_query="deploy"))["text"])
    assert other["context"] is None


def test_context_query_waits_its_turn_on_the_graph(runtime, connect_client) -> None:
    """build_context for infer runs in turn with the graph's other calls (its gate), as
    memory.build_context does: while another call holds the graph, infer waits for it."""
    runtime.register_model(loopmodels.echo)
    c = connect_client()
    c.call("memory.add_fact", {"subject": "deploy", "body": "never deploy on fridays"})
    (session,) = [s for s in runtime.services.sessions if s.kind == "socket"]
    gate = gate_of(session.effective_memgine)

    async def hold() -> None:
        await gate.lock.acquire()

    runtime.run_on_loop(hold())
    replies: list[dict[str, Any]] = []
    caller = threading.Thread(
        target=lambda: replies.append(c.call("infer", ask(context_query="deploy")))
    )
    caller.start()
    caller.join(0.5)
    assert caller.is_alive() and not replies, "infer read the graph while another call held it"
    runtime.call_soon(gate.lock.release)
    caller.join(10)
    assert "never deploy on fridays" in json.loads(replies[0]["text"])["context"]


def runner_loop(client, answer) -> threading.Thread:
    """Serve inference.runner.invoke notifications on ``client`` with ``answer(request)``."""

    def run() -> None:
        try:
            note = client.wait_notification("inference.runner.invoke", timeout=10)
        except Exception:
            return
        answer(client, note["params"])

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_a_runner_client_serves_a_model_of_another_process(runtime, connect_client) -> None:
    runner = connect_client()
    assert runner.call("inference.register_runner", {"models": ["remote"]}) == {
        "registered": True,
        "models": ["remote"],
    }

    def answer(client, params) -> None:
        assert params["request"]["model"] == "remote"
        cid = params["call_id"]
        client.call(
            "inference.runner.event", {"call_id": cid, "event": {"type": "text", "data": "he"}}
        )
        client.call(
            "inference.runner.event", {"call_id": cid, "event": {"type": "text", "data": "llo"}}
        )
        client.call(
            "inference.runner.complete", {"call_id": cid, "result": {"text": "", "tool_calls": []}}
        )

    t = runner_loop(runner, answer)
    reply = connect_client().call("infer", ask(model="remote"))
    t.join(5)
    assert reply["text"] == "hello" and reply["model_used"] == "remote"


def test_a_runner_that_disconnects_mid_request_fails_the_call_at_once(runtime, connect_client):
    runner = connect_client()
    runner.call("inference.register_runner", {})
    t = runner_loop(runner, lambda client, params: client.close())
    c = connect_client()
    started = time.monotonic()
    with pytest.raises(RpcFailed, match="disconnected before it answered"):
        c.call("infer", ask(model="runner"))
    assert time.monotonic() - started < 5
    t.join(5)
    with pytest.raises(RpcFailed, match="unknown model 'runner'"):  # its models went with it
        c.call("infer", ask(model="runner"))


def test_a_runner_fail_and_a_bad_event(runtime, connect_client) -> None:
    runner = connect_client()
    runner.call("inference.register_runner", {"models": ["r"]})

    def answer(client, params) -> None:
        with pytest.raises(RpcFailed, match="unrecognised runner event shape"):
            client.call("inference.runner.event", {"call_id": params["call_id"], "event": {"x": 1}})
        client.call(
            "inference.runner.fail", {"call_id": params["call_id"], "error": "429 rate limited"}
        )

    t = runner_loop(runner, answer)
    with pytest.raises(RpcFailed, match="runner failed: 429 rate limited"):
        connect_client().call("infer", ask(model="r"))
    t.join(5)
    # a call id nobody is waiting for, or another session answering, is refused
    with pytest.raises(RpcFailed, match="no pending inference call"):
        connect_client().call("inference.runner.complete", {"call_id": "nope", "result": {}})


def test_a_runner_cannot_take_over_a_notebook_model(runtime, connect_client) -> None:
    runtime.register_model(lambda r: "mine", name="gpt")
    with pytest.raises(RpcFailed, match="'gpt' is already served by the notebook"):
        connect_client().call("inference.register_runner", {"models": ["gpt"]})


def alice_client(runtime, connect_client):
    from tests.conftest import agent_auth

    return connect_client(auth=agent_auth(runtime, "alice"))


def test_record_model_turn_and_proposal_turns_make_one_ordered_trace(runtime, connect_client):
    alice = alice_client(runtime, connect_client)
    alice.call("tools.register", [{"name": "echo"}])
    rid = alice.call("runs.start", {"intent": "loop"})["run_id"]
    host = connect_client(auth="host")
    turn = {
        "run_id": rid,
        "turn_index": 1,
        "assistant_text": "calling echo",
        "requested_tool_calls": [{"id": "a1", "name": "echo", "arguments": {"x": 1}}],
        "model_id": "m",
        "token_usage": {"input_tokens": 4, "output_tokens": 2},
        "duration_ms": 12.5,
    }
    ack = alice.call("runs.record_model_turn", turn)
    assert ack == {"run_id": rid, "ok": True, "index": 1, "turn_index": 1}
    snap = host.call("runs.subscribe", {"run_id": rid})
    assert [r["record"] for r in snap["records"]] == [
        "started",
        "model_turn",
    ]
    proposal = {
        "actions": [{"id": "a1", "type": "tool_call", "tool": "echo", "parameters": {"x": 1}}]
    }
    alice.send(
        {"jsonrpc": "2.0", "id": 99, "method": "proposal.submit", "params": {"proposal": proposal}}
    )
    call = alice.wait_notification("tools.execute")
    alice.send({"jsonrpc": "2.0", "id": call["id"], "result": {"echoed": 1}})
    assert alice.recv_reply(99)["result"]["results"][0]["status"] == "succeeded"
    event = host.wait_notification("runs.trace.event")["params"]
    assert event["cursor"] == 2 and event["record"]["record"] == "turn"
    assert event["record"]["turn"] == {
        "action_id": "a1",
        "tool": "echo",
        "parameters": {"x": 1},
        "status": "succeeded",
        "output": {"echoed": 1},
        "attempt": 1,
        "duration_ms": event["record"]["turn"]["duration_ms"],
    }
    model_turn = alice.call("runs.get_trace", {"run_id": rid})["records"][1]
    assert {k: model_turn[k] for k in turn if k != "run_id"} == {
        k: v for k, v in turn.items() if k != "run_id"
    }


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"turn_index": -1}, "turn_index"),
        ({"assistant_text": 5}, "assistant_text"),
        ({"requested_tool_calls": "add"}, "requested_tool_calls"),
        ({"token_usage": 3}, "token_usage"),
        ({"duration_ms": "fast"}, "duration_ms"),
        ({"assistant_text": "x" * (300 * 1024)}, "the model turn is"),
    ],
)
def test_a_bad_model_turn_is_refused_and_records_nothing(runtime, connect_client, bad, field):
    alice = alice_client(runtime, connect_client)
    rid = alice.call("runs.start", {"intent": "loop"})["run_id"]
    with pytest.raises(RpcFailed) as err:
        alice.call("runs.record_model_turn", {"run_id": rid, **bad})
    assert err.value.code == -32602 and field in err.value.message
    assert len(alice.call("runs.get_trace", {"run_id": rid})["records"]) == 1


def test_only_the_owner_records_model_turns(runtime, connect_client) -> None:
    alice = alice_client(runtime, connect_client)
    rid = alice.call("runs.start", {"intent": "loop"})["run_id"]
    other = connect_client()
    assert other.call("runs.record_model_turn", {"run_id": rid})["dropped"] == "run_not_found"
    alice.call("runs.complete", {"run_id": rid, "outcome": {"status": "success"}})
    assert alice.call("runs.record_model_turn", {"run_id": rid})["dropped"] == "run_terminal"


def test_agents_register_basics_is_answered(connect_client) -> None:
    assert connect_client().call("agents.register_basics") is None


def chat_event(client, session_id: str, kind: str, delta: Any = None) -> None:
    params = {"session_id": session_id, "kind": kind, "delta": delta}
    client.send({"jsonrpc": "2.0", "method": "agent.chat.event", "params": params})


def test_agents_chat_reaches_the_attached_agent_and_relays_its_events(runtime, connect_client):
    agent = alice_client(runtime, connect_client)
    stranger = connect_client()
    host = connect_client(auth="host")
    host.send(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "agents.chat",
            "params": {"agent_id": "alice", "prompt": "hi"},
        }
    )
    call = agent.wait_notification("agent.chat")
    assert call["params"]["prompt"] == "hi" and call["id"].startswith("cb-")
    agent.send({"jsonrpc": "2.0", "id": call["id"], "result": {"accepted": True}})
    ack = host.recv_reply(1)["result"]
    sid = ack["session_id"]
    assert ack["accepted"] is True and sid == call["params"]["session_id"]
    chat_event(stranger, sid, "token", "forged")  # not the agent of this chat: dropped
    chat_event(agent, sid, "token", "hel")
    chat_event(agent, sid, "done", "hello")
    events = [host.wait_notification("agents.chat.event")["params"] for _ in range(2)]
    assert [(e["kind"], e["delta"]) for e in events] == [("token", "hel"), ("done", "hello")]
    assert all(e["agent_id"] == "alice" and e["session_id"] == sid for e in events)


def test_agents_chat_errors_and_a_disconnecting_agent(runtime, connect_client) -> None:
    host = connect_client(auth="host")
    with pytest.raises(RpcFailed, match="agent 'bob' is not attached"):
        host.call("agents.chat", {"agent_id": "bob", "prompt": "hi"})
    with pytest.raises(RpcFailed, match="needs the host role"):
        connect_client().call("agents.chat", {"agent_id": "alice", "prompt": "hi"})
    agent = alice_client(runtime, connect_client)
    host.send(
        {
            "jsonrpc": "2.0",
            "id": 5,
            "method": "agents.chat",
            "params": {"agent_id": "alice", "prompt": "hi"},
        }
    )
    call = agent.wait_notification("agent.chat")
    agent.send({"jsonrpc": "2.0", "id": call["id"], "result": {"accepted": True}})
    assert host.recv_reply(5)["result"]["accepted"] is True
    agent.close()
    event = host.wait_notification("agents.chat.event")["params"]
    assert event["kind"] == "error" and "disconnected" in event["delta"]


def test_the_notebook_chats_with_an_agent(runtime, connect_client) -> None:
    agent = alice_client(runtime, connect_client)

    def serve_one() -> None:
        call = agent.wait_notification("agent.chat", timeout=10)
        agent.send({"jsonrpc": "2.0", "id": call["id"], "result": {"accepted": True}})
        chat_event(agent, call["params"]["session_id"], "done", "answer: 42")

    t = threading.Thread(target=serve_one, daemon=True)
    t.start()
    events = runtime.chat("alice", "the answer?", timeout=10)
    t.join(5)
    assert [(e["kind"], e["delta"]) for e in events] == [("done", "answer: 42")]

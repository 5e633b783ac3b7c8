"""tools.*, policy.*, verify and proposal.submit over real sockets, with the server's
tools.execute requests answered (or not) by a raw WebSocket client."""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

import pytest

from tests.conftest import Client, RpcFailed, agent_auth
from tests.server.proposing import action, echo, proposal, submit, write

ECHO = [{"name": "echo", "parameters": {"type": "object"}}]


@pytest.fixture
def alice(runtime, connect_client) -> Client:
    c: Client = connect_client()
    c.call("tools.register", ECHO)
    return c


# -- tools.* and policy.* ----------------------------------------------------------------------
def test_tools_register_takes_the_bare_array_and_list_is_sorted(connect_client) -> None:
    c = connect_client()
    assert c.call("tools.register", [{"name": "zeta"}, {"name": "alpha", "description": "a"}]) == 2
    listed = c.call("tools.list")
    assert listed["count"] == 2
    assert [t["name"] for t in listed["tools"]] == ["alpha", "zeta"]
    assert listed["tools"][0] == {
        "name": "alpha",
        "description": "a",
        "parameters": {},
        "idempotent": False,
    }
    assert c.call("tools.register", {"tools": [{"name": "named"}]}) == 1
    assert c.call("tools.unregister", {"name": "zeta"}) == {"unregistered": "zeta", "removed": 1}
    assert c.call("tools.unregister", {"name": "zeta"})["removed"] == 0
    assert [t["name"] for t in c.call("tools.list")["tools"]] == ["alpha", "named"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"name": "x"}, "tools is required"),
        ([{"name": "ok"}, {"description": "no name"}], "tools[1].name"),
        ([{"name": "ok"}, {"name": "bad", "parameters": {"type": "banana"}}], "parameters.type"),
        ([{"name": "ok"}, "not an object"], "tools[1] must be an object"),
    ],
)
def test_bad_tool_definitions_change_nothing(connect_client, params: Any, message: str) -> None:
    c = connect_client()
    with pytest.raises(RpcFailed) as err:
        c.call("tools.register", params)
    assert err.value.code == -32602 and message in str(err.value.message)
    assert c.call("tools.list") == {"tools": [], "count": 0}


def test_tools_belong_to_their_session(connect_client) -> None:
    a, b = connect_client(), connect_client()
    a.call("tools.register", ECHO)
    assert b.call("tools.list")["count"] == 0


def test_policies_register_list_unregister(connect_client) -> None:
    c = connect_client()
    assert c.call("policy.register", {"name": "no-rm", "rule": "deny_tool", "target": "rm"}) == {
        "registered": "no-rm",
        "name": "no-rm",
        "scope": "global",
    }
    c.call("policy.register", {"name": "gate", "rule": "require_state", "key": "ok", "value": 1})
    listed = c.call("policy.list")
    assert [p["name"] for p in listed["policies"]] == ["no-rm", "gate"]
    assert listed["scope"] == "global" and "rm" in listed["policies"][0]["description"]
    assert c.call("policy.unregister", {"name": "no-rm"})["removed"] == 1
    assert c.call("policy.unregister", {"name": "no-rm"})["removed"] == 0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"name": "p", "rule": "deny_everything"}, "rule must be one of"),
        ({"name": "p", "rule": "deny_tool"}, "target is required"),
        ({"name": "p", "rule": "deny_tool_param", "target": "t", "key": "k"}, "pattern"),
        ({"name": "p", "rule": "require_state", "key": "k"}, "value is required"),
        ({"rule": "deny_tool", "target": "t"}, "name must be"),
        ({"name": "p", "rule": "deny_tool", "target": "t", "session_id": "s"}, "session_id"),
    ],
)
def test_a_bad_policy_changes_nothing(connect_client, params: dict[str, Any], message: str) -> None:
    c = connect_client()
    with pytest.raises(RpcFailed) as err:
        c.call("policy.register", params)
    assert err.value.code == -32602 and message in str(err.value.message)
    assert c.call("policy.list")["policies"] == []


# -- verify ------------------------------------------------------------------------------------
def test_verify_checks_against_the_sessions_tools_and_state(alice) -> None:
    result = alice.call(
        "verify",
        {
            "proposal": proposal(
                action("a"), action("b", tool="ghost"), action("c", state_dependencies=["k"])
            )
        },
    )
    assert result["valid"] is False
    messages = {(i["action_id"], i["message"]) for i in result["issues"]}
    assert ("b", "tool 'ghost' is not registered") in messages
    assert any(a == "c" and "'k'" in m for a, m in messages)
    assert set(result) >= {"simulated_state", "execution_levels", "conflicts", "evidence"}
    alice.call("state.set", {"key": "k", "value": 1})
    again = alice.call("verify", {"proposal": proposal(action("c", state_dependencies=["k"]))})
    assert again["valid"] is True and again["simulated_state"] == {"k": 1}


def test_verify_reports_a_depends_on_cycle(alice) -> None:
    result = alice.call(
        "verify",
        {"proposal": proposal(action("a", depends_on=["b"]), action("b", depends_on=["a"]))},
    )
    assert result["valid"] is False
    assert any("dependency cycle" in i["message"] for i in result["issues"])


# -- proposal.submit ---------------------------------------------------------------------------
def test_submit_sends_tools_execute_and_returns_the_result(alice) -> None:
    served = submit(
        alice,
        proposal(
            action("a", parameters={"q": "x"}, timeout_ms=5000),
            write("w", "done", True),
        ),
    )
    assert served.statuses() == {"a": "succeeded", "w": "succeeded"}
    assert served.by_id("a")["output"] == {"tool": "echo", "echo": {"q": "x"}}
    (request,) = served.requests
    params = request["params"]
    assert request["id"] == params["request_id"] and isinstance(request["id"], str)
    assert params["action_id"] == "a" and params["tool"] == "echo"
    assert params["parameters"] == {"q": "x"} and params["timeout_ms"] == 5000
    assert params["attempt"] == 1 and isinstance(params["session_id"], str)
    assert served.result["cost"]["tool_calls"] == 1
    assert alice.call("state.get", {"key": "done"}) is True


def test_retries_carry_the_attempt_number(alice) -> None:
    def flaky(params: dict[str, Any]) -> dict[str, Any]:
        if params["attempt"] < 3:
            return {"error": {"code": -32000, "message": "try again"}}
        return {"result": "third time"}

    served = submit(alice, proposal(action("a", failure_behavior="retry", max_retries=3)), flaky)
    assert [r["params"]["attempt"] for r in served.requests] == [1, 2, 3]
    assert served.by_id("a")["output"] == "third time"
    assert len({r["id"] for r in served.requests}) == 3


def test_a_tool_that_fails_stops_the_proposal_and_says_why(alice) -> None:
    def boom(params: dict[str, Any]) -> dict[str, Any]:
        return {"error": {"code": -32000, "message": "disk on fire"}}

    served = submit(alice, proposal(action("a"), write("w", "after", 1, depends_on=["a"])), boom)
    assert served.statuses() == {"a": "failed", "w": "skipped"}
    assert "disk on fire" in served.by_id("a")["error"]
    assert alice.call("state.exists", {"key": "after"}) is False


def test_a_tool_that_times_out_is_cancelled(alice) -> None:
    served = submit(alice, proposal(action("slow", timeout_ms=200)), answer=None)
    assert served.statuses() == {"slow": "failed"}
    assert "timed out" in served.by_id("slow")["error"]
    (request,) = served.requests
    cancel = served.cancels[0] if served.cancels else alice.wait_notification("tools.cancel")
    cancel = cancel.get("params", cancel)
    assert cancel["request_id"] == request["id"] and cancel["action_id"] == "slow"
    # the late answer is ignored, and the connection still works
    alice.send({"jsonrpc": "2.0", "id": request["id"], "result": "too late"})
    assert alice.call("state.keys") == []


def test_a_client_that_never_answers_is_bounded_by_the_tool_timeout(make_runtime) -> None:
    rt = make_runtime(tool_timeout=0.3, browser=False)
    c = Client(rt.url)
    try:
        c.call("session.auth", {"token": rt.token})
        c.call("tools.register", ECHO)
        started = time.monotonic()
        served = submit(c, proposal(action("a")), answer=None)
        assert time.monotonic() - started < 5
        assert served.statuses() == {"a": "failed"}
        assert "did not answer" in served.by_id("a")["error"]
    finally:
        c.close()


def test_stray_responses_are_ignored(alice) -> None:
    alice.send({"jsonrpc": "2.0", "id": "cb-999", "result": 1})
    alice.send({"jsonrpc": "2.0", "id": 7, "error": {"code": 1, "message": "x"}})
    alice.send({"jsonrpc": "2.0", "id": "cb-1", "error": "not an object"})
    assert alice.call("state.keys") == []  # the next frame is this reply: nothing was sent back


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not an object", "proposal must be an object"),
        ({"actions": {}}, "proposal.actions must be an array"),
        ({"actions": [{"id": "a", "type": "teleport"}]}, 'actions[0] (id "a").type'),
        ({"actions": [action("a"), action("a")]}, "ids must be unique"),
        ({"actions": [action("a", depends_on=["ghost"])]}, "depends_on names 'ghost'"),
        ({"actions": [write("w", "k", 1), action("a", depends_on=["a"])]}, "dependency cycle"),
    ],
)
def test_a_bad_proposal_is_refused_and_nothing_runs(alice, body: Any, message: str) -> None:
    served = submit(alice, body)
    assert served.reply["error"]["code"] == -32602
    assert message in served.reply["error"]["message"]
    assert served.requests == [] and alice.call("state.keys") == []


def test_missing_proposal_and_unsupported_session_id(alice) -> None:
    assert "proposal is required" in alice.request("proposal.submit", {})["error"]["message"]
    reply = submit(alice, proposal(action("a")), extra={"session_id": "x"}).reply
    assert "session_id" in reply["error"]["message"]


def test_an_unknown_tool_is_rejected_before_dispatch(alice) -> None:
    served = submit(alice, proposal(action("a", tool="ghost"), write("w", "k", 1)))
    assert served.statuses()["a"] == "rejected" and served.requests == []
    assert "not registered" in served.by_id("a")["error"]


def test_a_policy_denies_a_tool(alice) -> None:
    alice.call("policy.register", {"name": "no-echo", "rule": "deny_tool", "target": "echo"})
    served = submit(alice, proposal(action("a")))
    assert served.statuses() == {"a": "rejected"} and served.requests == []
    assert "no-echo" in served.by_id("a")["error"]


def test_a_client_that_disconnects_mid_proposal_leaves_the_server_clean(
    runtime, connect_client
) -> None:
    quitter = connect_client()
    quitter.call("tools.register", ECHO)
    quitter.send(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "proposal.submit",
            "params": {"proposal": proposal(action("a"), write("w", "k", 1, depends_on=["a"]))},
        }
    )
    assert quitter.recv()["method"] == "tools.execute"
    sid = next(s.client_id for s in runtime.services.sessions if s.kind == "socket")
    quitter.close()
    deadline = time.monotonic() + 5
    while runtime.services.sessions.get(sid) is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert runtime.services.sessions.get(sid) is None
    assert sid not in runtime.services.tools._sessions
    other = connect_client()
    other.call("tools.register", ECHO)
    assert submit(other, proposal(action("a"))).statuses() == {"a": "succeeded"}


def test_a_tool_owner_that_disconnects_fails_the_call_cleanly(runtime, connect_client) -> None:
    """The notebook's proposal calls a tool whose only runner is a socket client that leaves."""
    c = connect_client()
    c.call("tools.register", ECHO)
    session = next(s for s in runtime.services.sessions if s.kind == "socket")
    gone = threading.Event()

    def leave() -> None:
        c.recv()  # the tools.execute request
        c.close()
        gone.set()

    threading.Thread(target=leave, daemon=True).start()

    async def as_that_session() -> Any:
        return await runtime.dispatcher.invoke(
            session, "proposal.submit", {"proposal": proposal(action("a"))}
        )

    result = runtime.run_on_loop(as_that_session(), timeout=10)
    (only,) = result["results"]
    assert only["status"] == "failed" and "disconnected" in only["error"]
    assert gone.wait(5)


def test_ten_thousand_actions_run_without_holding_the_loop(runtime, connect_client) -> None:
    c = connect_client()
    pinger = connect_client()
    body = proposal(*[write(f"w{i}", f"k{i}", i) for i in range(10_000)])
    worst = 0.0
    done = threading.Event()

    def ping() -> None:
        nonlocal worst
        while not done.is_set():
            started = time.perf_counter()
            pinger.call("state.keys")
            worst = max(worst, time.perf_counter() - started)
            time.sleep(0.005)

    # The server shares this process with every test before it: its garbage collector's full
    # passes over their leftovers (hundreds of ms late in a whole-suite run) are not the
    # proposal's. Frozen, those objects are not scanned, and what the proposal allocates is.
    gc.collect()
    gc.freeze()
    thread = threading.Thread(target=ping)
    thread.start()
    try:
        served = submit(c, body, timeout=60)
    finally:
        done.set()
        thread.join()
        gc.unfreeze()
    assert served.result["cost"]["actions_executed"] == 10_000
    assert c.call("state.get", {"key": "k9999"}) == 9999
    assert worst < 0.5, f"a state.keys round trip took {worst * 1000:.0f} ms"
    too_many = submit(c, proposal(*[write(f"x{i}", "k", i) for i in range(10_001)]))
    assert "at most 10000" in too_many.reply["error"]["message"]
    verified = c.call("verify", {"proposal": body}, timeout=60)
    assert sum(len(level) for level in verified["execution_levels"]) == 10_000


def test_agent_sessions_work_the_same(runtime, connect_client) -> None:
    c = connect_client(auth=agent_auth(runtime, "alice"))
    c.call("tools.register", ECHO)
    assert submit(c, proposal(action("a")), echo).statuses() == {"a": "succeeded"}


def test_at_most_16_running_proposals_so_tool_answers_are_always_read(alice) -> None:
    for rid in range(1, 18):
        body = proposal(action(f"a{rid}"), pid=f"p{rid}")
        alice.send(
            {"jsonrpc": "2.0", "id": rid, "method": "proposal.submit", "params": {"proposal": body}}
        )
    executes, replies = [], {}
    while len(executes) < 16 or 17 not in replies:
        msg = alice.recv()
        if msg.get("method") == "tools.execute":
            executes.append(msg)
        else:
            replies[msg["id"]] = msg
    assert "already runs 16 proposals" in replies[17]["error"]["message"]
    for msg in executes:
        alice.send({"jsonrpc": "2.0", "id": msg["id"], "result": "ok"})
    while len(replies) < 17:
        msg = alice.recv()
        replies[msg["id"]] = msg
    assert all(replies[i]["result"]["results"][0]["status"] == "succeeded" for i in range(1, 17))
    assert submit(alice, proposal(action("again"))).statuses() == {"again": "succeeded"}


def test_only_a_small_proposal_is_prepared_on_the_event_loop() -> None:
    from carnb.app.handlers.proposals import _small

    assert _small(proposal(action("a", parameters={"q": "x"})))
    assert not _small(proposal(action("a", parameters={"q": "x" * 70_000})))
    assert not _small(proposal(*[action(f"a{i}") for i in range(100)]))
    assert not _small(proposal(action("a", parameters={"q": list(range(1_000_000))})))

"""The admission gate over real sockets: supervisors subscribe, proposals of other sessions
wait for their verdict, and everything not allowed in time is rejected before it runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from carnb.runtime import Runtime
from tests.conftest import Client, RpcFailed, agent_auth
from tests.server.proposing import Served, action, proposal, submit

ECHO = [{"name": "echo", "parameters": {"type": "object"}}, {"name": "rm"}]


@pytest.fixture
def gated(make_runtime: Any) -> Runtime:
    rt: Runtime = make_runtime(agents=("alice", "bob"), decision_timeout=1.0)
    return rt


@pytest.fixture
def clients(gated: Runtime) -> Any:
    made: list[Client] = []

    def make(auth: dict[str, Any] | None = None) -> Client:
        c = Client(gated.url)
        made.append(c)
        c.call("session.auth", auth or {"token": gated.token})
        return c

    yield make
    for c in made:
        c.close()


def proposer(make: Callable[..., Client], gated: Runtime) -> Client:
    c = make(agent_auth(gated, "alice"))
    c.call("tools.register", ECHO)
    return c


def in_background(fn: Callable[[], Served]) -> tuple[threading.Thread, list[Served]]:
    out: list[Served] = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()
    return thread, out


SECRET = "the-value-a-supervisor-never-sees"


def test_an_allowed_proposal_runs_and_the_intent_carries_no_parameter_value(
    gated: Runtime, clients: Any
) -> None:
    supervisor = clients()
    answer = supervisor.call("supervision.subscribe", {"filter": {"tools": ["echo"]}})
    assert answer == {"subscribed": True, "decision_timeout_ms": 1000, "supervisors": 1}
    alice = proposer(clients, gated)
    body = proposal(action("a1", parameters={"path": SECRET}), pid="p-allow")
    thread, out = in_background(lambda: submit(alice, body))
    note = supervisor.wait_notification("supervision.intent")["params"]
    assert SECRET not in str(note)
    assert note["proposal_id"] == "p-allow"
    assert note["agent_id"] == "alice" and note["session_id"]
    assert note["actions"][0]["parameter_keys"] == ["path"]
    assert note["actions"][0]["parameters_digest"].startswith("sha256:")
    assert note["actions"][0]["tool"] == "echo"
    pending = supervisor.call("supervision.pending")["intents"]
    assert [i["id"] for i in pending] == [note["id"]]
    assert supervisor.call(
        "supervision.decide", {"intent_id": note["id"], "decision": {"kind": "allow"}}
    ) == {"decided": True}
    thread.join(10)
    assert out[0].statuses() == {"a1": "succeeded"}
    assert len(out[0].requests) == 1
    with pytest.raises(RpcFailed, match="not parked"):  # decided: a second verdict is an error
        supervisor.call(
            "supervision.decide", {"intent_id": note["id"], "decision": {"kind": "allow"}}
        )


def test_a_denied_proposal_runs_nothing(gated: Runtime, clients: Any) -> None:
    supervisor = clients()
    supervisor.call("supervision.subscribe", {})
    alice = proposer(clients, gated)
    body = proposal(action("a1", tool="rm"), action("a2"), pid="p-deny")
    thread, out = in_background(lambda: submit(alice, body))
    note = supervisor.wait_notification("supervision.intent")["params"]
    with pytest.raises(RpcFailed, match="reason is required"):
        supervisor.call(
            "supervision.decide", {"intent_id": note["id"], "decision": {"kind": "deny"}}
        )
    supervisor.call(
        "supervision.decide",
        {"intent_id": note["id"], "decision": {"kind": "deny", "reason": "no rm"}},
    )
    thread.join(10)
    assert out[0].statuses() == {"a1": "rejected", "a2": "rejected"}
    assert out[0].requests == []  # no tool was asked to run
    assert "no rm" in out[0].by_id("a1")["error"]


def test_no_verdict_in_time_fails_closed(gated: Runtime, clients: Any) -> None:
    supervisor = clients()
    supervisor.call("supervision.subscribe", {})
    alice = proposer(clients, gated)
    start = time.monotonic()
    served = submit(alice, proposal(action("a1")))
    took = time.monotonic() - start
    assert served.statuses() == {"a1": "rejected"}
    assert "fail-closed" in served.by_id("a1")["error"]
    assert 0.9 <= took < 3.0, took
    assert served.requests == []


def test_a_supervisor_that_disconnects_does_not_release_its_intents(
    gated: Runtime, clients: Any
) -> None:
    supervisor = clients()
    supervisor.call("supervision.subscribe", {})
    alice = proposer(clients, gated)
    start = time.monotonic()
    thread, out = in_background(lambda: submit(alice, proposal(action("a1"))))
    supervisor.wait_notification("supervision.intent")
    supervisor.close()
    thread.join(10)
    assert out[0].statuses() == {"a1": "rejected"}
    assert time.monotonic() - start >= 0.9  # it waited for the timeout: not released early
    # and with the supervisor gone, the next proposal is not supervised at all
    assert submit(alice, proposal(action("a2"), pid="p2")).statuses() == {"a2": "succeeded"}


def test_with_two_supervisors_one_deny_rejects_and_both_must_allow(
    gated: Runtime, clients: Any
) -> None:
    first, second = clients(), clients()
    first.call("supervision.subscribe", {})
    assert second.call("supervision.subscribe", {})["supervisors"] == 2
    alice = proposer(clients, gated)

    def run(kinds: tuple[str, str], pid: str) -> Served:
        thread, out = in_background(lambda: submit(alice, proposal(action("a1"), pid=pid)))
        for sup, kind in zip((first, second), kinds, strict=True):
            note = sup.wait_notification("supervision.intent")["params"]
            sup.call(
                "supervision.decide",
                {"intent_id": note["id"], "decision": {"kind": kind, "reason": "r"}},
            )
        thread.join(10)
        return out[0]

    assert run(("allow", "deny"), "p1").statuses() == {"a1": "rejected"}
    assert run(("allow", "allow"), "p2").statuses() == {"a1": "succeeded"}


def test_filters_pick_the_proposals_a_supervisor_sees(gated: Runtime, clients: Any) -> None:
    supervisor = clients()
    supervisor.call(
        "supervision.subscribe", {"filter": {"tools": ["rm"], "min_reversibility": "compensable"}}
    )
    alice = proposer(clients, gated)
    # echo is not watched, and a reversible rm is below the filter's risk: both run unasked
    assert submit(alice, proposal(action("a1"))).statuses() == {"a1": "succeeded"}
    cheap = action("a2", tool="rm", reversibility="reversible")
    assert submit(alice, proposal(cheap, pid="p2")).statuses() == {"a2": "succeeded"}
    thread, out = in_background(lambda: submit(alice, proposal(action("a3", tool="rm"), pid="p3")))
    note = supervisor.wait_notification("supervision.intent")["params"]
    assert note["reversibility"] == "irreversible"
    supervisor.call("supervision.decide", {"intent_id": note["id"], "decision": {"kind": "allow"}})
    thread.join(10)
    assert out[0].statuses() == {"a3": "succeeded"}
    # re-subscribing replaces the filter: sessions that are not alice's go unwatched
    supervisor.call("supervision.subscribe", {"filter": {"sessions": ["someone-else"]}})
    assert submit(alice, proposal(action("a4", tool="rm"), pid="p4")).statuses() == {
        "a4": "succeeded"
    }
    assert supervisor.call("supervision.unsubscribe") == {
        "subscribed": False,
        "was_subscribed": True,
    }


def test_an_agent_may_not_supervise(gated: Runtime, clients: Any) -> None:
    bob = clients(agent_auth(gated, "bob"))
    with pytest.raises(RpcFailed) as err:
        bob.call("supervision.subscribe", {})
    assert (
        err.value.code == -32603 and err.value.error["data"]["reason"] == "agent_may_not_supervise"
    )
    assert "may not decide over other agents" in str(err.value.message)
    with pytest.raises(RpcFailed, match="may not decide"):
        bob.call("supervision.decide", {"intent_id": "x", "decision": {"kind": "allow"}})


def test_deciding_an_unknown_intent_is_an_error(clients: Any) -> None:
    supervisor = clients()
    supervisor.call("supervision.subscribe", {})
    with pytest.raises(RpcFailed, match="did not land"):
        supervisor.call(
            "supervision.decide", {"intent_id": "intent-nope", "decision": {"kind": "allow"}}
        )
    with pytest.raises(RpcFailed, match="decision.kind"):
        supervisor.call("supervision.decide", {"intent_id": "i", "decision": {"kind": "maybe"}})


def test_an_escalated_proposal_waits_for_the_ledger(gated: Runtime, clients: Any) -> None:
    supervisor = clients()
    supervisor.call("supervision.subscribe", {})
    host = clients({"host_token": gated.host_token})
    host.call("server.handshake", {"protocol_version": 3})
    host.call("host.subscribe", {})
    alice = proposer(clients, gated)
    thread, out = in_background(lambda: submit(alice, proposal(action("a1")), timeout=30))
    note = supervisor.wait_notification("supervision.intent")["params"]
    supervisor.call(
        "supervision.decide",
        {"intent_id": note["id"], "decision": {"kind": "escalate", "reason": "ask a person"}},
    )
    event = host.wait_notification("host.event")["params"]
    while event["kind"] != "approval.requested":
        event = host.wait_notification("host.event")["params"]
    approval = event["payload"]["approval"]
    assert approval["status"] == "pending" and approval["client_id"] is None
    assert [a["id"] for a in host.call("host.approvals")["approvals"]] == [approval["id"]]
    bob = clients(agent_auth(gated, "bob"))
    with pytest.raises(RpcFailed, match="agent may not resolve"):
        bob.call("host.resolve_approval", {"approval_id": approval["id"], "approved": True})
    resolved = host.call(
        "host.resolve_approval", {"approval_id": approval["id"], "approved": True, "notes": "ok"}
    )
    assert resolved["status"] == "approved"
    thread.join(10)
    assert out[0].statuses() == {"a1": "succeeded"}
    assert host.call("host.approvals")["approvals"] == []


def test_request_approval_ownership(gated: Runtime, clients: Any) -> None:
    alice = clients(agent_auth(gated, "alice"))
    other = clients()
    approval = alice.call("host.request_approval", {"title": "deploy?", "required_approvals": 1})
    assert approval["agent_id"] == "alice" and approval["status"] == "pending"
    with pytest.raises(RpcFailed, match="requested by another session"):
        other.call("host.resolve_approval", {"approval_id": approval["id"], "approved": True})
    denied = alice.call(
        "host.resolve_approval", {"approval_id": approval["id"], "approved": False, "notes": "no"}
    )
    assert denied["status"] == "denied"
    with pytest.raises(RpcFailed, match="already denied"):
        alice.call("host.resolve_approval", {"approval_id": approval["id"], "approved": True})


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> str | None:
    return None if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))


def test_the_ledger_survives_a_restart(make_runtime: Any, store: str | None) -> None:
    first = make_runtime(agents=("alice",), store=store)
    c = Client(first.url)
    c.call("session.auth", {"token": first.token})
    approval = c.call("host.request_approval", {"title": "keep me"})
    c.close()
    first.close()
    second = make_runtime(agents=("alice",), store=store)
    h = Client(second.url)
    try:
        h.call("session.auth", {"host_token": second.host_token})
        assert [a["id"] for a in h.call("host.approvals")["approvals"]] == [approval["id"]]
        done = h.call("host.resolve_approval", {"approval_id": approval["id"], "approved": True})
        assert done["status"] == "approved"
        listed = h.call("host.approvals", {"include_resolved": True})["approvals"]
        assert [a["status"] for a in listed] == ["approved"]
    finally:
        h.close()


def test_decisions_are_records_of_the_proposals_run(gated: Runtime, clients: Any) -> None:
    supervisor = clients()
    supervisor.call("supervision.subscribe", {})
    alice = proposer(clients, gated)
    run_id = alice.call("runs.start", {"intent": "supervised"})["run_id"]
    thread, out = in_background(lambda: submit(alice, proposal(action("a1"))))
    note = supervisor.wait_notification("supervision.intent")["params"]
    supervisor.call(
        "supervision.decide", {"intent_id": note["id"], "decision": {"kind": "deny", "reason": "x"}}
    )
    thread.join(10)
    turns = [r["turn"] for r in alice.full_trace(run_id)["records"] if r["record"] == "turn"]
    decision = turns[0]["supervision"]
    assert decision["intent_id"] == note["id"] and decision["kind"] == "deny"
    assert decision["reason"] == "x" and decision["by"] and decision["at"] > 0


# -- a Python function as supervisor, and actions that always wait ---------------------------------
def test_a_function_supervisor_allows_a_read_and_denies_an_rm(gated: Runtime, clients: Any) -> None:
    seen: list[dict[str, Any]] = []

    def judge(intent: dict[str, Any]) -> Any:
        seen.append(intent)
        if any(a.get("tool") == "rm" for a in intent["actions"]):
            return ("deny", "rm is never allowed")
        return "allow"

    key = gated.add_supervisor(judge, name="rules")
    alice = proposer(clients, gated)
    assert submit(alice, proposal(action("a1", parameters={"p": 1}))).statuses() == {
        "a1": "succeeded"
    }
    denied = submit(alice, proposal(action("a2", tool="rm"), pid="p2"))
    assert denied.statuses() == {"a2": "rejected"} and denied.requests == []
    assert "python:rules" in denied.by_id("a2")["error"]
    assert seen[0]["actions"][0]["parameters"] == {"p": 1}  # the notebook sees full parameters
    assert gated.remove_supervisor(key) is True


@pytest.mark.parametrize(
    ("judge", "reason"),
    [
        (lambda intent: 1 / 0, "ZeroDivisionError"),
        (lambda intent: "maybe", "decision.kind"),
        (lambda intent: time.sleep(3), "no answer within"),
    ],
)
def test_a_failing_function_supervisor_denies(
    gated: Runtime, clients: Any, judge: Any, reason: str
) -> None:
    gated.add_supervisor(judge, name="flaky", timeout=0.3)
    alice = proposer(clients, gated)
    served = submit(alice, proposal(action("a1")))
    assert served.statuses() == {"a1": "rejected"}
    assert reason in served.by_id("a1")["error"]


def test_a_tool_registered_with_approve_waits_for_the_ledger(gated: Runtime, clients: Any) -> None:
    calls: list[int] = []
    gated.register_tool(lambda n: calls.append(n) or n, name="launch", share=True, approve=True)
    alice = clients(agent_auth(gated, "alice"))
    host = clients({"host_token": gated.host_token})
    thread, out = in_background(
        lambda: submit(
            alice, proposal(action("a1", tool="launch", parameters={"n": 7})), timeout=20
        )
    )
    deadline = time.monotonic() + 10
    while not (pending := host.call("host.approvals")["approvals"]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert pending[0]["kind"] == "escalation"
    assert calls == []  # nothing ran while it waited
    host.call("host.resolve_approval", {"approval_id": pending[0]["id"], "approved": True})
    thread.join(10)
    assert out[0].statuses() == {"a1": "succeeded"} and calls == [7]


def test_a_require_approval_policy_makes_matching_calls_wait(gated: Runtime, clients: Any) -> None:
    supervisor = clients()
    alice = proposer(clients, gated)
    alice.call(
        "policy.register",
        {"name": "ask", "rule": "require_approval", "target": "rm", "key": "path", "pattern": "/"},
    )
    supervisor.call("supervision.subscribe", {"filter": {"tools": ["nothing-matches"]}})
    # not matching the policy's pattern, and no supervisor's filter: runs at once
    plain = action("a1", tool="rm", parameters={"path": "x"})
    assert submit(alice, proposal(plain)).statuses() == {"a1": "succeeded"}
    # matching: nobody supervises it, so it goes to the ledger, and a denial there rejects it
    host = clients({"host_token": gated.host_token})
    risky = action("a2", tool="rm", parameters={"path": "/etc"})
    thread, out = in_background(lambda: submit(alice, proposal(risky, pid="p2"), timeout=20))
    deadline = time.monotonic() + 10
    while not (pending := host.call("host.approvals")["approvals"]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    host.call(
        "host.resolve_approval",
        {"approval_id": pending[0]["id"], "approved": False, "notes": "not /etc"},
    )
    thread.join(10)
    assert out[0].statuses() == {"a2": "rejected"} and "not /etc" in out[0].by_id("a2")["error"]


def test_allow_is_not_a_bypass(gated: Runtime, clients: Any) -> None:
    gated.add_supervisor(lambda intent: "allow", name="yes")
    alice = proposer(clients, gated)
    alice.call("policy.register", {"name": "no-rm", "rule": "deny_tool", "target": "rm"})
    served = submit(alice, proposal(action("a1", tool="rm")))
    assert served.statuses() == {"a1": "rejected"} and served.requests == []
    assert "denied by policy 'no-rm'" in served.by_id("a1")["error"]


def test_a_supervisor_that_becomes_an_agent_stops_supervising(gated: Runtime, clients: Any) -> None:
    turncoat = clients()
    turncoat.call("supervision.subscribe", {})
    turncoat.call("session.auth", agent_auth(gated, "bob"))
    alice = proposer(clients, gated)
    assert submit(alice, proposal(action("a1"))).statuses() == {"a1": "succeeded"}
    assert not any(n.get("method") == "supervision.intent" for n in turncoat.notifications)


def test_a_large_proposal_is_trimmed_off_the_loop_and_decided(gated: Runtime, clients: Any) -> None:
    supervisor = clients()
    supervisor.call("supervision.subscribe", {})
    alice = proposer(clients, gated)
    big = proposal(*[action(f"a{i}", parameters={"i": i}) for i in range(2000)], pid="big")
    thread, out = in_background(lambda: submit(alice, big, timeout=60))
    note = supervisor.wait_notification("supervision.intent", timeout=20)["params"]
    assert (
        len(note["actions"]) == 2000
        and len({a["parameters_digest"] for a in note["actions"]}) == 2000
    )
    supervisor.call(
        "supervision.decide",
        {"intent_id": note["id"], "decision": {"kind": "deny", "reason": "big"}},
    )
    thread.join(30)
    assert set(out[0].statuses().values()) == {"rejected"}

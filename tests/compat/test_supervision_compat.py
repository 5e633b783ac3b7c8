"""The official client's supervision and host approval methods against `python -m carnb serve`
(the client is a black box; these are its public methods)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from tests.conftest import Client

pytestmark = pytest.mark.compat


@pytest.fixture
def gated(serve_process) -> Any:
    return serve_process("--agent", "alice", "--decision-timeout", "5")


def operator(gated, car_client) -> Any:
    return car_client(CAR_DAEMON_URL=gated.url, CAR_AUTH_TOKEN=gated.info["token"])


def result(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def raw_proposer(gated) -> Client:
    c = Client(gated.url)
    c.call("session.auth", {"token": gated.info["agents"]["alice"], "agent_id": "alice"})
    c.call("tools.register", [{"name": "read"}, {"name": "rm"}])
    return c


def propose_in_background(c: Client, tool: str, pid: str) -> tuple[threading.Thread, list[Any]]:
    from tests.server.proposing import action, proposal, submit

    out: list[Any] = []
    body = proposal(action("a1", tool=tool, parameters={"path": "/tmp/x"}), pid=pid)
    thread = threading.Thread(target=lambda: out.append(submit(c, body)), daemon=True)
    thread.start()
    return thread, out


def wait_pending(rt: Any, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        intents = result(rt.supervision_pending("{}"))["intents"]
        if len(intents) >= count or time.monotonic() > deadline:
            return list(intents)
        time.sleep(0.05)


def test_the_official_client_supervises_by_polling(gated, car_client) -> None:
    rt = operator(gated, car_client)
    sub = result(rt.supervision_subscribe(json.dumps({"filter": {"tools": ["read", "rm"]}})))
    assert sub["subscribed"] is True and sub["decision_timeout_ms"] == 5000
    alice = raw_proposer(gated)
    try:
        thread, out = propose_in_background(alice, "read", "p-read")
        (intent,) = wait_pending(rt, 1)
        assert intent["proposal_id"] == "p-read" and "/tmp/x" not in json.dumps(intent)
        decided = rt.supervision_decide(
            json.dumps({"intent_id": intent["id"], "decision": {"kind": "allow"}})
        )
        assert result(decided) == {"decided": True}
        thread.join(10)
        assert out[0].statuses() == {"a1": "succeeded"}

        thread, out = propose_in_background(alice, "rm", "p-rm")
        (intent,) = wait_pending(rt, 1)
        rt.supervision_decide(
            json.dumps({"intent_id": intent["id"], "decision": {"kind": "deny", "reason": "no rm"}})
        )
        thread.join(10)
        assert out[0].statuses() == {"a1": "rejected"}
        with pytest.raises(RuntimeError, match="did not land"):
            rt.supervision_decide(
                json.dumps({"intent_id": intent["id"], "decision": {"kind": "allow"}})
            )
        gone = result(rt.supervision_unsubscribe("{}"))
        assert gone == {"subscribed": False, "was_subscribed": True}
    finally:
        alice.close()


def test_the_official_client_requests_lists_and_resolves_approvals(gated, car_client) -> None:
    rt = operator(gated, car_client)
    approval = result(
        rt.host_request_approval(json.dumps({"title": "ship it?", "description": "v2"}))
    )
    assert approval["status"] == "pending" and approval["title"] == "ship it?"
    listed = result(rt.host_approvals())
    assert [a["id"] for a in listed["approvals"]] == [approval["id"]]
    resolved = result(
        rt.host_resolve_approval(
            json.dumps({"approval_id": approval["id"], "approved": True, "notes": "go"})
        )
    )
    assert resolved["status"] == "approved"
    listed = result(rt.host_approvals())
    assert listed == {"approvals": []}


def test_agents_chat_approve_relays_to_the_agent(gated, car_client) -> None:
    agent = Client(gated.url)
    agent.call("session.auth", {"token": gated.info["agents"]["alice"], "agent_id": "alice"})
    host = car_client(CAR_DAEMON_URL=gated.url, CAR_AUTH_TOKEN=gated.info["token"])
    host.session_auth(json.dumps({"host_token": gated.info["host_token"]}))
    seen: list[dict[str, Any]] = []

    def serve_agent() -> None:
        while True:
            msg = agent.recv(timeout=20)
            if msg.get("method") == "agent.chat":
                agent.send({"jsonrpc": "2.0", "id": msg["id"], "result": {"accepted": True}})
                sid = msg["params"]["session_id"]
                agent.send(
                    {
                        "jsonrpc": "2.0",
                        "method": "agent.chat.event",
                        "params": {
                            "session_id": sid,
                            "kind": "approval_pending",
                            "approval_id": "ap-1",
                            "delta": "delete /tmp/x?",
                        },
                    }
                )
            elif msg.get("method") == "agent.chat.approve":
                seen.append(msg["params"])
                agent.send({"jsonrpc": "2.0", "id": msg["id"], "result": {"resolved": True}})
                return

    thread = threading.Thread(target=serve_agent, daemon=True)
    thread.start()
    try:
        chat = result(host.agents_chat(json.dumps({"agent_id": "alice", "prompt": "clean up"})))
        assert chat["accepted"] is True
        answer = result(
            host.agents_chat_approve(
                json.dumps(
                    {"session_id": chat["session_id"], "approval_id": "ap-1", "decision": True}
                )
            )
        )
        assert answer == {"resolved": True, "session_id": chat["session_id"]}
        thread.join(10)
        assert seen[0]["approval_id"] == "ap-1" and seen[0]["decision"] is True
    finally:
        agent.close()

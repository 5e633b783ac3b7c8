"""runs.* and host events over a real server with several real clients at once."""

from __future__ import annotations

import socket
import time

import pytest

from tests.conftest import Client, agent_auth


@pytest.fixture
def alice(runtime, connect_client) -> Client:
    return connect_client(auth=agent_auth(runtime, "alice"))


@pytest.fixture
def bob(runtime, connect_client) -> Client:
    return connect_client(auth=agent_auth(runtime, "bob"))


def test_whole_lifecycle(runtime, alice) -> None:
    run = alice.call("runs.start", {"intent": "summarise the inbox"})
    assert run["agent_id"] == "alice" and run["run_id"]
    rid = run["run_id"]
    first = alice.call(
        "runs.record_turns",
        {
            "run_id": rid,
            "turns": [
                {"prompt": "read mail", "tool": "imap", "parameters": {"n": 3}, "output": "3 mails"}
            ],
        },
    )
    assert first == {"run_id": rid, "base_index": 1, "count": 1, "ok": True}
    second = alice.call(
        "runs.record_turns", {"run_id": rid, "turns": [{"prompt": "a"}, {"prompt": "b"}]}
    )
    assert second["base_index"] == 2 and second["count"] == 2
    assert alice.call(
        "runs.complete", {"run_id": rid, "outcome": {"status": "success", "summary": "done"}}
    ) == {"run_id": rid, "ok": True}
    trace = alice.call("runs.get_trace", {"run_id": rid})
    assert trace["status"] == "completed" and trace["agent_id"] == "alice"
    assert [r["record"] for r in trace["records"]] == ["started", "turn", "turn", "turn", "ended"]
    assert [r["index"] for r in trace["records"]] == [0, 1, 2, 3, 4]
    assert trace["cursor"] == 4
    assert trace["records"][1]["turn"]["tool"] == "imap"
    assert trace["records"][-1]["outcome"]["summary"] == "done"
    listed = alice.call("runs.list", {"agent_id": "alice"})
    assert listed["runs"][0]["run_id"] == rid and listed["runs"][0]["status"] == "completed"


def test_start_sets_current_run_and_complete_clears_it(runtime) -> None:
    runtime.call("session.auth", {"host_token": runtime.host_token, "agent_id": "alice"})
    rid = runtime.call("runs.start", {"intent": "x"})["run_id"]
    assert runtime.session.current_run_id == rid
    runtime.call("runs.record_turns", {"run_id": rid, "turns": [{"prompt": "p"}] * 3})
    assert runtime.session.run_turns == 3
    runtime.call("runs.complete", {"run_id": rid, "outcome": {"status": "success"}})
    assert runtime.session.current_run_id is None


def test_owner_by_agent_name_and_errors(runtime, connect_client) -> None:
    c = connect_client()
    err = c.request("runs.start", {"intent": "x"})["error"]
    assert err["code"] == -32602
    run = c.call("runs.start", {"intent": "x", "agent_name": "Report Writer"})
    assert run["agent_id"] == "name:report-writer"
    assert c.call("runs.record_turns", {"run_id": run["run_id"], "turns": [{"prompt": "p"}]})["ok"]


def test_idempotency_key_gives_the_same_run(alice) -> None:
    a = alice.call("runs.start", {"intent": "x", "idempotency_key": "k1"})
    b = alice.call("runs.start", {"intent": "x", "idempotency_key": "k1"})
    assert a == b
    assert len(alice.call("runs.list", {"agent_id": "alice"})["runs"]) == 1


def test_bad_batches_and_double_completion(alice) -> None:
    rid = alice.call("runs.start", {"intent": "x"})["run_id"]
    assert (
        alice.request("runs.record_turns", {"run_id": rid, "turns": []})["error"]["code"] == -32602
    )
    assert (
        alice.request("runs.record_turns", {"run_id": rid, "turns": [{}] * 257})["error"]["code"]
        == -32602
    )
    big = alice.request("runs.record_turns", {"run_id": rid, "turns": [{"output": "x" * 300_000}]})
    assert "error" in big or big["result"]["ok"] is False
    assert (
        alice.request("runs.complete", {"run_id": rid, "outcome": "fine"})["error"]["code"]
        == -32602
    )
    assert alice.request("runs.complete", {"run_id": rid, "outcome": {}})["error"]["code"] == -32602
    alice.call("runs.complete", {"run_id": rid, "outcome": {"status": "success"}})
    assert "error" in alice.request("runs.complete", {"run_id": rid, "outcome": {"status": "x"}})
    dropped = alice.call("runs.record_turns", {"run_id": rid, "turns": [{"prompt": "late"}]})
    assert dropped["ok"] is False and dropped["dropped"] == "run_terminal"
    assert "error" in alice.request(
        "runs.complete", {"run_id": "run-nope", "outcome": {"status": "success"}}
    )
    trace = alice.call("runs.get_trace", {"run_id": rid})
    assert [r["record"] for r in trace["records"]] == ["started", "ended"]  # nothing corrupted
    assert alice.call("runs.get_trace", {"run_id": "run-nope"}) == {
        "run_id": "run-nope",
        "not_found": True,
    }


def test_authorisation_matrix(runtime, alice, bob, connect_client) -> None:
    unbound = connect_client()
    host = connect_client(auth="host")
    rid = alice.call("runs.start", {"intent": "private"})["run_id"]
    alice.call("runs.record_turns", {"run_id": rid, "turns": [{"prompt": "p"}]})
    not_found = {"run_id": rid, "not_found": True}
    for other in (bob, unbound):
        assert other.call("runs.get_trace", {"run_id": rid}) == not_found
        rec = other.call("runs.record_turns", {"run_id": rid, "turns": [{"prompt": "x"}]})
        assert rec == {
            "run_id": rid,
            "ok": False,
            "dropped": "run_not_found",
            "base_index": 0,
            "count": 0,
        }
        assert "error" in other.request(
            "runs.complete", {"run_id": rid, "outcome": {"status": "success"}}
        )
        assert "error" in other.request("runs.cancel", {"run_id": rid, "reason": "no"})
        assert "error" in other.request("runs.subscribe", {"run_id": rid})
        assert other.call("runs.list", {"agent_id": "alice"})["runs"] == []
    # the host can read, subscribe to and cancel it
    assert host.call("runs.get_trace", {"run_id": rid})["status"] == "in_progress"
    assert host.call("runs.list", {"agent_id": "alice"})["runs"][0]["run_id"] == rid
    assert host.call("runs.subscribe", {"run_id": rid})["subscribed"] is True
    assert host.call("runs.cancel", {"run_id": rid, "reason": "operator said so"})["ok"] is True
    assert alice.call("runs.get_trace", {"run_id": rid})["status"] == "cancelled"
    # first terminal wins: completing a cancelled run fails
    assert "error" in alice.request(
        "runs.complete", {"run_id": rid, "outcome": {"status": "success"}}
    )


def test_subscription_receives_every_record_in_order(runtime, alice, connect_client) -> None:
    host = connect_client(auth="host")
    rid = alice.call("runs.start", {"intent": "watched"})["run_id"]
    snap = host.call("runs.subscribe", {"run_id": rid})
    assert snap["cursor"] == 0
    for i in range(10):
        alice.call(
            "runs.record_turns", {"run_id": rid, "turns": [{"prompt": f"t{i}"}, {"prompt": "u"}]}
        )
    alice.call("runs.complete", {"run_id": rid, "outcome": {"status": "success"}})
    events = [host.wait_notification("runs.trace.event")["params"] for _ in range(21)]
    assert [e["cursor"] for e in events] == list(range(1, 22))
    assert events[-1]["record"]["record"] == "ended" and events[-1]["status"] == "completed"
    assert all(e["run_id"] == rid and e["agent_id"] == "alice" for e in events)
    assert host.call("runs.unsubscribe", {"run_id": rid}) == {"run_id": rid, "removed": True}


def test_tcp_drop_with_a_run_open_ends_it_incomplete(runtime, connect_client) -> None:
    host = connect_client(auth="host")
    host.call("server.handshake", {"protocol_version": 3})
    host.call("host.subscribe")
    c = Client(runtime.url)
    c.call("session.auth", agent_auth(runtime, "alice"))
    rid = c.call("runs.start", {"intent": "doomed"})["run_id"]
    c.ws.socket.shutdown(socket.SHUT_RDWR)  # vanish without a close frame
    c.ws.socket.close()
    deadline = time.monotonic() + 10
    status = None
    while time.monotonic() < deadline:
        status = host.call("runs.get_trace", {"run_id": rid})["status"]
        if status == "incomplete":
            break
        time.sleep(0.05)
    assert status == "incomplete"
    trace = host.call("runs.get_trace", {"run_id": rid})
    assert trace["records"][-1]["record"] == "ended"
    assert trace["records"][-1]["status"] == "incomplete"
    assert host.call("runs.list", {"agent_id": "alice"})["runs"][0]["status"] == "incomplete"
    kinds = []
    while True:
        try:
            kinds.append(host.wait_notification("host.event", timeout=1)["params"]["kind"])
        except TimeoutError:
            break
    assert "run.started" in kinds and "run.ended" in kinds and "session.detached" in kinds


def test_runs_survive_a_server_restart(serve_process) -> None:
    p = serve_process("--agent", "alice")
    c = Client(p.url)
    c.call("session.auth", {"token": p.info["agents"]["alice"], "agent_id": "alice"})
    rid = c.call("runs.start", {"intent": "durable"})["run_id"]
    c.call("runs.record_turns", {"run_id": rid, "turns": [{"prompt": "one"}, {"prompt": "two"}]})
    c.call("runs.complete", {"run_id": rid, "outcome": {"status": "success"}})
    c.close()
    p.stop()
    p2 = serve_process("--agent", "alice")
    c2 = Client(p2.url)
    c2.call("session.auth", {"token": p2.info["agents"]["alice"], "agent_id": "alice"})
    trace = c2.call("runs.get_trace", {"run_id": rid})
    assert trace["status"] == "completed" and len(trace["records"]) == 4
    assert c2.call("runs.list", {"agent_id": "alice"})["runs"][0]["run_id"] == rid
    c2.close()


def test_host_events_and_agents(runtime, connect_client) -> None:
    host = connect_client(auth="host")
    host.call("server.handshake", {"protocol_version": 3})
    snap = host.call("host.subscribe")
    assert {a["spec"]["id"] for a in snap["agents"]} == {"alice", "bob"}
    a = connect_client(auth=agent_auth(runtime, "alice"))
    rid = a.call("runs.start", {"intent": "evented"})["run_id"]
    a.call("runs.complete", {"run_id": rid, "outcome": {"status": "success"}})
    seen = []
    while "run.ended" not in seen:
        ev = host.wait_notification("host.event")["params"]
        seen.append(ev["kind"])
    assert seen == ["session.attached", "agent.attached", "run.started", "run.ended"]
    events = host.call("host.events", {"limit": 3})["events"]
    assert [e["kind"] for e in events] == ["agent.attached", "run.started", "run.ended"]
    assert [e["sequence"] for e in events] == sorted(e["sequence"] for e in events)
    agents = {x["spec"]["id"]: x for x in host.call("agents.list")}
    assert agents["alice"]["attached"] and agents["alice"]["session_id"]

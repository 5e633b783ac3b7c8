"""Run lifecycle on a real SQLite file: start, turns, terminal states, validation, idempotency."""

from __future__ import annotations

import re
from datetime import datetime

import pytest

from carnb.errors import CarnbError, Forbidden, InvalidParams, RunTerminal
from carnb.runs import MAX_BATCH, MAX_TURN_BYTES, RunStore
from tests.runs.runs_helpers import (
    AGENT_A,
    AGENT_A_LATER,
    AGENT_B,
    HOST,
    UNBOUND,
    UNBOUND_2,
    indexes,
    turns,
)


def test_whole_lifecycle_produces_a_contiguous_readable_trace(store: RunStore) -> None:
    started = store.start(AGENT_A, intent="book a flight")
    run_id = started["run_id"]
    assert started == {"run_id": run_id, "agent_id": "agent-a"}
    assert re.fullmatch(r"run-[0-9a-f]{32}", run_id)

    first = store.record_turns(AGENT_A, run_id, turns(2))
    second = store.record_turns(AGENT_A, run_id, turns(3, start=2))
    assert first == {"run_id": run_id, "base_index": 1, "count": 2, "ok": True}
    assert second == {"run_id": run_id, "base_index": 3, "count": 3, "ok": True}
    assert store.get_trace(AGENT_A, run_id)["status"] == "in_progress"

    outcome = {"status": "failure", "summary": "no seats", "extra": [1, 2]}
    assert store.complete(AGENT_A, run_id, outcome) == {"run_id": run_id, "ok": True}

    trace = store.get_trace(AGENT_A, run_id)
    assert trace["run_id"] == run_id and trace["agent_id"] == "agent-a"
    assert trace["status"] == "completed"  # whatever outcome.status says
    assert trace["intent"] == "book a flight"
    recs = trace["records"]
    assert [r["index"] for r in recs] == list(range(7))
    assert [r["record"] for r in recs] == ["started"] + ["turn"] * 5 + ["ended"]
    assert trace["cursor"] == 6
    assert recs[0]["intent"] == "book a flight" and recs[0]["agent_id"] == "agent-a"
    assert [r["turn"] for r in recs[1:6]] == turns(5)  # the turns exactly as sent
    assert recs[6]["status"] == "completed" and recs[6]["outcome"] == outcome
    stamps = [datetime.fromisoformat(r["timestamp"]) for r in recs]
    assert stamps == sorted(stamps) and all(s.tzinfo is not None for s in stamps)


def test_get_trace_pages_with_after_and_limit(store: RunStore) -> None:
    run_id = store.start(AGENT_A, intent="x")["run_id"]
    store.record_turns(AGENT_A, run_id, turns(5))
    page = store.get_trace(AGENT_A, run_id, after=2, limit=2)
    assert [r["index"] for r in page["records"]] == [3, 4]
    assert page["cursor"] == 4
    tail = store.get_trace(AGENT_A, run_id, after=5)
    assert tail["records"] == [] and tail["cursor"] == 5


@pytest.mark.parametrize("bad", [[], [{}] * (MAX_BATCH + 1)], ids=["0", "257"])
def test_batch_of_0_or_257_turns_is_rejected_and_nothing_written(
    store: RunStore, bad: list
) -> None:
    run_id = store.start(AGENT_A, intent="x")["run_id"]
    with pytest.raises(InvalidParams, match=r"invalid params: turns must hold 1\.\.256"):
        store.record_turns(AGENT_A, run_id, bad)
    assert indexes(store, run_id) == [0]
    assert store.record_turns(AGENT_A, run_id, [{}] * MAX_BATCH)["count"] == MAX_BATCH
    assert indexes(store, run_id) == list(range(MAX_BATCH + 1))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (None, "turns is required"),
        ({"prompt": "x"}, "turns is required and must be an array"),
        ([{}, "a string"], r"turns\[1\] must be an object"),
        ([{"x": float("nan")}], r"turns\[0\] is not JSON-serialisable"),
        ([{"x": object()}], r"turns\[0\] is not JSON-serialisable"),
    ],
)
def test_malformed_turns_are_rejected_naming_the_turn(
    store: RunStore, bad: object, message: str
) -> None:
    run_id = store.start(AGENT_A, intent="x")["run_id"]
    with pytest.raises(InvalidParams, match=message):
        store.record_turns(AGENT_A, run_id, bad)
    assert indexes(store, run_id) == [0]


def test_oversized_turn_rejects_the_whole_batch(store: RunStore) -> None:
    run_id = store.start(AGENT_A, intent="x")["run_id"]
    store.record_turns(AGENT_A, run_id, turns(1))
    pad = len('{"output":""}')
    fits = {"output": "y" * (MAX_TURN_BYTES - pad)}
    too_big = {"output": "y" * (MAX_TURN_BYTES - pad + 1)}
    with pytest.raises(
        InvalidParams,
        match=r"turns\[2\] is 262145 bytes of JSON; the limit is "
        r"262144",
    ) as err:
        store.record_turns(AGENT_A, run_id, [*turns(2), too_big, *turns(1)])
    assert err.value.data == {"index": 2, "bytes": MAX_TURN_BYTES + 1, "max": MAX_TURN_BYTES}
    assert indexes(store, run_id) == [0, 1]  # nothing of the bad batch
    # Multi-byte characters count as bytes, not characters.
    with pytest.raises(InvalidParams, match=r"turns\[0\]"):
        store.record_turns(AGENT_A, run_id, [{"output": "é" * (MAX_TURN_BYTES // 2)}])
    assert store.record_turns(AGENT_A, run_id, [fits]) == {
        "run_id": run_id,
        "base_index": 2,
        "count": 1,
        "ok": True,
    }
    assert store.get_trace(AGENT_A, run_id)["records"][2]["turn"] == fits


def test_complete_then_cancel_first_terminal_wins(store: RunStore) -> None:
    run_id = store.start(AGENT_A, intent="x")["run_id"]
    store.complete(AGENT_A, run_id, {"status": "success"})
    with pytest.raises(RunTerminal, match="already ended \\(completed\\)"):
        store.cancel(AGENT_A, run_id, "too late")
    with pytest.raises(RunTerminal):
        store.cancel(HOST, run_id, "too late")
    with pytest.raises(RunTerminal):
        store.complete(AGENT_A, run_id, {"status": "failure"})
    assert store.end_incomplete(run_id) is False
    trace = store.get_trace(AGENT_A, run_id)
    assert trace["status"] == "completed"
    assert [r["record"] for r in trace["records"]] == ["started", "ended"]
    assert trace["records"][-1]["outcome"] == {"status": "success"}


def test_cancel_then_complete_first_terminal_wins(store: RunStore) -> None:
    run_id = store.start(AGENT_A, intent="x")["run_id"]
    store.record_turns(AGENT_A, run_id, turns(1))
    assert store.cancel(AGENT_A, run_id, "user pressed stop") == {
        "run_id": run_id,
        "ok": True,
        "status": "cancelled",
    }
    with pytest.raises(RunTerminal, match="already ended \\(cancelled\\)") as err:
        store.complete(AGENT_A, run_id, {"status": "success"})
    assert isinstance(err.value, CarnbError) and err.value.data == {"status": "cancelled"}
    dropped = store.record_turns(AGENT_A, run_id, turns(1))
    assert dropped["ok"] is False and dropped["dropped"] == "run_terminal"
    assert dropped["base_index"] == 0 and dropped["count"] == 0
    trace = store.get_trace(AGENT_A, run_id)
    assert trace["status"] == "cancelled"
    assert trace["records"][-1] == {
        **trace["records"][-1],
        "record": "ended",
        "index": 2,
        "status": "cancelled",
        "reason": "user pressed stop",
    }
    assert len(trace["records"]) == 3


@pytest.mark.parametrize(
    ("outcome", "message"),
    [
        (None, "invalid params: outcome is required and must be an object"),
        ("success", "invalid params: outcome is required and must be an object"),
        ({"summary": "no status"}, "invalid params: outcome.status is required"),
        ({"status": 1}, "invalid params: outcome.status is required and must be a non-empty st"),
        ({"status": ""}, "invalid params: outcome.status is required"),
    ],
)
def test_malformed_outcome_names_the_field_and_leaves_the_run_open(
    store: RunStore, outcome: object, message: str
) -> None:
    run_id = store.start(AGENT_A, intent="x")["run_id"]
    with pytest.raises(InvalidParams, match=re.escape(message)):
        store.complete(AGENT_A, run_id, outcome)
    assert store.get_trace(AGENT_A, run_id)["status"] == "in_progress"
    assert store.complete(AGENT_A, run_id, {"status": "success"})["ok"] is True


def test_end_incomplete_after_disconnect(store: RunStore) -> None:
    run_id = store.start(AGENT_A, intent="x")["run_id"]
    store.record_turns(AGENT_A, run_id, turns(2))
    assert store.end_incomplete(run_id) is True
    assert store.end_incomplete(run_id) is False  # no-op once terminal
    assert store.end_incomplete("run-unknown") is False
    trace = store.get_trace(AGENT_A, run_id)
    assert trace["status"] == "incomplete"
    assert trace["records"][-1]["reason"] == "session disconnected"
    assert [r["index"] for r in trace["records"]] == [0, 1, 2, 3]
    with pytest.raises(RunTerminal):
        store.complete(AGENT_A, run_id, {"status": "success"})


def test_end_session_runs_ends_only_that_sessions_open_runs(store: RunStore) -> None:
    mine = [store.start(UNBOUND, intent=f"r{i}", agent_name="bot")["run_id"] for i in range(3)]
    store.complete(UNBOUND, mine[1], {"status": "success"})
    other = store.start(UNBOUND_2, intent="other", agent_name="bot")["run_id"]
    agent_run = store.start(AGENT_A, intent="a")["run_id"]
    assert store.end_session_runs(UNBOUND.client_id, "socket closed") == [mine[0], mine[2]]
    status = {rid: store.get_trace(HOST, rid)["status"] for rid in [*mine, other, agent_run]}
    assert status == {
        mine[0]: "incomplete",
        mine[1]: "completed",
        mine[2]: "incomplete",
        other: "in_progress",
        agent_run: "in_progress",
    }
    assert store.get_trace(HOST, mine[0])["records"][-1]["reason"] == "socket closed"


# -- owner resolution on start ------------------------------------------------------------------
def test_owner_is_the_bound_agent_even_with_an_agent_name(store: RunStore) -> None:
    assert store.start(AGENT_A, intent="x", agent_name="Other")["agent_id"] == "agent-a"
    assert store.start(AGENT_A, intent="x", agent_id="agent-a")["agent_id"] == "agent-a"


def test_unbound_session_owns_a_slugged_name(store: RunStore) -> None:
    started = store.start(UNBOUND, intent="x", agent_name="  My Agent #1! ")
    assert started["agent_id"] == "name:my-agent-1"
    # Echoing the returned id back is the same claim.
    again = store.start(UNBOUND, intent="y", agent_id="name:my-agent-1")
    assert again["agent_id"] == "name:my-agent-1"


def test_unbound_agent_id_is_a_name_never_the_registered_agent(store: RunStore) -> None:
    # What the official agent loop sends without CAR_AGENT_ID: the claim becomes a name: owner
    started = store.start(UNBOUND, intent="x", agent_id="agent-a", agent_name="agent-a")
    assert started["agent_id"] == "name:agent-a"
    # ... which agent-a itself does not own, and the session that started it does
    assert store.record_turns(AGENT_A, started["run_id"], turns(1))["ok"] is False
    assert store.record_turns(UNBOUND, started["run_id"], turns(1))["ok"] is True
    assert store.list_runs(AGENT_A, "agent-a")["runs"] == []


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({}, InvalidParams, "invalid params: agent_name is required when no agent is bound"),
        ({"agent_name": "!!!"}, InvalidParams, "agent_name must contain at least one letter"),
        ({"agent_name": 5}, InvalidParams, "agent_name must be a string"),
        ({"agent_id": ""}, InvalidParams, "agent_id must be a non-empty string"),
    ],
)
def test_unbound_start_without_a_valid_owner_is_refused(
    store: RunStore, kwargs: dict, error: type, message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        store.start(UNBOUND, intent="x", **kwargs)
    assert store.list_runs(HOST, "agent-a")["runs"] == []


def test_agent_cannot_start_a_run_for_another_agent_but_the_host_can(store: RunStore) -> None:
    with pytest.raises(Forbidden, match="the bound agent is 'agent-a'"):
        store.start(AGENT_A, intent="x", agent_id="agent-b")
    with pytest.raises(Forbidden):
        store.start(AGENT_A, intent="x", agent_id="name:agent-b")
    run = store.start(HOST, intent="on behalf", agent_id="agent-b")
    assert run["agent_id"] == "agent-b"
    # agent-b owns it and may write; the host session that started it owns it by session.
    assert store.record_turns(AGENT_B, run["run_id"], turns(1))["ok"] is True
    assert store.record_turns(HOST, run["run_id"], turns(1))["ok"] is True


@pytest.mark.parametrize("intent", [None, 3, "x" * (16 * 1024 + 1)])
def test_bad_intent_is_rejected(store: RunStore, intent: object) -> None:
    with pytest.raises(InvalidParams, match="intent"):
        store.start(AGENT_A, intent=intent)


# -- idempotency --------------------------------------------------------------------------------
def test_same_idempotency_key_gives_the_same_run(store: RunStore) -> None:
    first = store.start(AGENT_A, intent="x", idempotency_key="k1")
    assert store.start(AGENT_A, intent="x", idempotency_key="k1") == first
    # The same agent on a later connection (a retry after reconnect) finds it too, as does the
    # host acting for the agent.
    assert store.start(AGENT_A_LATER, intent="x", idempotency_key="k1") == first
    assert store.start(HOST, intent="x", agent_id="agent-a", idempotency_key="k1") == first
    # Still the same run after it ended.
    store.complete(AGENT_A, first["run_id"], {"status": "success"})
    assert store.start(AGENT_A, intent="x", idempotency_key="k1") == first
    other_key = store.start(AGENT_A, intent="x", idempotency_key="k2")
    no_key = store.start(AGENT_A, intent="x")
    other_agent = store.start(AGENT_B, intent="x", idempotency_key="k1")
    ids = {first["run_id"], other_key["run_id"], no_key["run_id"], other_agent["run_id"]}
    assert len(ids) == 4
    assert len(store.list_runs(AGENT_A, "agent-a")["runs"]) == 3


def test_name_owned_idempotency_keys_are_private_to_the_session(store: RunStore) -> None:
    mine = store.start(UNBOUND, intent="x", agent_name="bot", idempotency_key="k")
    assert store.start(UNBOUND, intent="x", agent_name="bot", idempotency_key="k") == mine
    theirs = store.start(UNBOUND_2, intent="x", agent_name="bot", idempotency_key="k")
    assert theirs["run_id"] != mine["run_id"]  # and learns nothing about the first


@pytest.mark.parametrize("key", ["", 7, "k" * 257])
def test_bad_idempotency_key_is_rejected(store: RunStore, key: object) -> None:
    with pytest.raises(InvalidParams, match="idempotency_key must be a string of 1..256"):
        store.start(AGENT_A, intent="x", idempotency_key=key)


def test_bad_run_id_and_reason_are_invalid_params(store: RunStore) -> None:
    with pytest.raises(InvalidParams, match="run_id is required"):
        store.record_turns(AGENT_A, None, turns(1))
    with pytest.raises(InvalidParams, match="run_id is required"):
        store.get_trace(AGENT_A, "")
    run_id = store.start(AGENT_A, intent="x")["run_id"]
    with pytest.raises(InvalidParams, match="reason must be a string"):
        store.cancel(AGENT_A, run_id, None)
    assert store.get_trace(AGENT_A, run_id)["status"] == "in_progress"


def test_list_is_newest_first_with_summaries(store: RunStore) -> None:
    ids = [store.start(AGENT_A, intent=f"task {i}")["run_id"] for i in range(5)]
    store.record_turns(AGENT_A, ids[1], turns(4))
    store.complete(AGENT_A, ids[1], {"status": "success"})
    store.start(AGENT_B, intent="not mine")
    listed = store.list_runs(AGENT_A, "agent-a")
    assert listed["agent_id"] == "agent-a"
    assert [r["run_id"] for r in listed["runs"]] == ids[::-1]
    by_id = {r["run_id"]: r for r in listed["runs"]}
    assert set(by_id[ids[1]]) == {
        "run_id",
        "agent_id",
        "intent",
        "status",
        "started_at",
        "ended_at",
        "turn_count",
        "forked_from",
    }
    assert by_id[ids[1]]["turn_count"] == 4 and by_id[ids[1]]["status"] == "completed"
    assert by_id[ids[1]]["ended_at"] is not None and by_id[ids[0]]["ended_at"] is None
    assert by_id[ids[3]]["intent"] == "task 3"
    assert [r["run_id"] for r in store.list_runs(AGENT_A, "agent-a", limit=2)["runs"]] == [
        ids[4],
        ids[3],
    ]
    with pytest.raises(InvalidParams, match="agent_id is required"):
        store.list_runs(AGENT_A, None)

"""Tokens, cost and the audit event log over real sockets: events.count, events.query,
metrics.summary, events.cost_by_agent, metrics.cost and prices.*, against a real server with a
real SQLite run store and a notebook model that reports usage."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import RpcFailed, agent_auth

PRICES = {"m1": {"input_per_mtok": 3.0, "output_per_mtok": 15.0}}


def usage_model(request: dict[str, Any]) -> dict[str, Any]:
    return {"text": "4", "usage": {"input_tokens": 1000, "output_tokens": 200}}


@pytest.fixture
def runtime(make_runtime, tmp_path):
    """The server every client of this module connects to: priced by a file, with a model."""
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(PRICES))
    rt = make_runtime(agents=("alice", "bob"), prices=path, browser=False)
    rt.register_model(usage_model, name="m1")
    return rt


def alice_run(c) -> str:
    """One run of alice: an infer, its model turn recorded again, a model turn of another
    model, a tool that succeeded and one the policy refused."""
    rid = c.call("runs.start", {"intent": "add"})["run_id"]
    c.call("infer", {"prompt": "2+2?"})
    c.call(
        "runs.record_model_turn",
        {
            "run_id": rid,
            "model_id": "m1",
            "token_usage": {"input_tokens": 1000, "output_tokens": 200},
        },
    )
    c.call(
        "runs.record_model_turn",
        {
            "run_id": rid,
            "model_id": "gpt-x",
            "token_usage": {"input_tokens": 50, "output_tokens": 5},
        },
    )
    turns = [
        {
            "action_id": "a1",
            "tool": "add",
            "parameters": {"a": 2},
            "status": "succeeded",
            "output": 4,
        },
        {"action_id": "a2", "tool": "rm", "status": "failed", "policy_rejected": True},
    ]
    c.call("runs.record_turns", {"run_id": rid, "turns": turns})
    c.call("runs.complete", {"run_id": rid, "outcome": {"status": "success"}})
    return rid


def test_a_run_is_metered_once_per_inference_with_its_cost(runtime, connect_client) -> None:
    alice = connect_client(agent_auth(runtime, "alice"))
    rid = alice_run(alice)
    host = connect_client("host")
    found = host.call("events.query", {"kinds": ["inference_metered"]})
    assert found["count"] == 2  # the infer and the other model's turn; the repeat is not new
    newest, first = found["events"]
    assert first["data"]["source"] == "infer" and first["data"]["run_id"] == rid
    assert first["data"]["cost_usd"] == pytest.approx(1000 * 3 / 1e6 + 200 * 15 / 1e6)
    assert newest["data"]["model"] == "gpt-x" and newest["data"]["cost_usd"] is None  # unpriced
    (row,) = host.call("events.cost_by_agent")
    assert row["agent"] == "alice" and row["calls"] == 2 and row["unpriced_calls"] == 1
    assert row["tokens_in"] == 1050 and row["tokens_out"] == 205
    assert row["cost_usd"] == pytest.approx(0.006)
    summary = host.call("metrics.summary")
    assert summary["actions_succeeded"] == 1 and summary["actions_rejected"] == 1
    assert summary["tokens_in"] == 1050 and summary["cumulative_cost_usd"] == pytest.approx(0.006)
    assert summary["runs_started"] == 1 and summary["runs_ended"] == 1
    assert summary["cost_by_agent"] == [row]
    by_run = host.call("metrics.cost", {"by": "run"})["rows"]
    assert by_run[0]["run"] == rid and by_run[0]["calls"] == 2
    by_model = {r["model"]: r for r in host.call("metrics.cost", {"by": "model"})["rows"]}
    assert by_model["m1"]["calls"] == 1 and by_model["gpt-x"]["cost_usd"] == 0


def test_the_audit_query_filters_and_never_shows_parameters(runtime, connect_client) -> None:
    alice = connect_client(agent_auth(runtime, "alice"))
    alice_run(alice)
    host = connect_client("host")
    everything = host.call("events.query")
    assert everything["count"] == host.call("events.count") == 6
    kinds = [e["kind"] for e in everything["events"]]
    assert kinds[0] == "run_ended" and kinds[-1] == "run_started"  # most recent first
    rejected = host.call("events.query", {"data_matches": {"tool": "rm"}})["events"]
    assert [e["kind"] for e in rejected] == ["action_rejected"]
    assert rejected[0]["data"]["error_class"] == "rejected_by_policy"
    ok = host.call("events.query", {"action_id": "a1"})["events"][0]
    assert ok["kind"] == "action_succeeded" and "parameters" not in json.dumps(ok)
    assert host.call("events.query", {"limit": 2})["count"] == 2
    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    assert host.call("events.query", {"since": later})["count"] == 0
    assert host.call("events.query", {"until": later})["count"] == 6


def test_who_sees_what_is_decided_by_the_server(runtime, connect_client) -> None:
    alice = connect_client(agent_auth(runtime, "alice"))
    alice_run(alice)
    bob = connect_client(agent_auth(runtime, "bob"))
    assert bob.call("events.count") == 0
    # asking for alice's events by name changes nothing
    assert bob.call("events.query", {"data_matches": {"agent": "alice"}})["count"] == 0
    assert bob.call("events.cost_by_agent") == []
    assert bob.call("metrics.summary")["cumulative_cost_usd"] == 0
    assert alice.call("events.count") == 6
    assert alice.call("events.cost_by_agent")[0]["agent"] == "alice"
    operator = connect_client()  # the plain token: it sees the infer calls it made itself
    operator.call("infer", {"prompt": "hi"})
    (own,) = operator.call("events.query")["events"]
    assert own["data"]["source"] == "infer" and own["data"]["agent"] is None
    assert alice.call("events.count") == 6  # not alice's
    with pytest.raises(RpcFailed) as err:
        operator.call("prices.set", {"prices": {}})
    assert err.value.code != 0 and "host" in err.value.message.lower()


def test_prices_are_set_by_the_host_and_bad_ones_refused(runtime, connect_client) -> None:
    host = connect_client("host")
    assert host.call("prices.get")["prices"] == PRICES
    with pytest.raises(RpcFailed) as err:
        host.call("prices.set", {"prices": {"m1": {"input_per_mtok": -1}}})
    assert err.value.code == -32602 and "input_per_mtok" in err.value.message
    assert host.call("prices.get")["prices"] == PRICES  # unchanged
    host.call("prices.set", {"prices": {"*": {"input_per_mtok": 1, "output_per_mtok": 1}}})
    c = connect_client()
    c.call("infer", {"prompt": "x"})
    assert c.call("events.query")["events"][0]["data"]["cost_usd"] == pytest.approx(1200 / 1e6)


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"kinds": "inference_metered"}, "kinds must be an array"),
        ({"since": "yesterday"}, "RFC 3339"),
        ({"since": "2026-01-02T03:04:05"}, "time zone"),
        ({"data_matches": {"agent": 1}}, "data_matches"),
        ({"limit": -1}, "limit"),
    ],
)
def test_a_bad_query_is_refused_with_its_fix(runtime, connect_client, params, says) -> None:
    with pytest.raises(RpcFailed) as err:
        connect_client("host").call("events.query", params)
    assert err.value.code == -32602 and says in err.value.message

"""The official client's memory and run calls against `python -m carnb serve`,
on the default SQLite store and on a PostgreSQL store."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import Client

pytestmark = pytest.mark.compat


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def served(request, serve_process):
    """A real `python -m carnb serve` with two registered agents, on each store."""
    store = () if request.param == "sqlite" else ("--store", request.getfixturevalue("pg_url"))
    return serve_process("--agent", "alice", "--agent", "bob", *store)


@pytest.fixture
def alice(served, car_client):
    return car_client(
        CAR_DAEMON_URL=served.url,
        CAR_AGENT_ID="alice",
        CAR_AGENT_TOKEN=served.info["agents"]["alice"],
    )


def test_memory_calls(served, alice, car_client) -> None:
    assert alice.fact_count() == 0
    n = alice.add_fact("auth", "session tokens expire after one hour", "pattern")
    assert n == 1
    alice.add_fact("db", "postgres listens on port 5432", "pattern")
    alice.add_fact("rule", "never deploy on fridays", "constraint")
    assert alice.fact_count() == 3
    rows = json.loads(alice.query_facts("login token", 2))
    assert rows[0]["subject"] == "auth" and len(rows) <= 2
    ctx = alice.build_context("database port")
    assert "## Constraints" in ctx and "never deploy on fridays" in ctx
    assert "postgres" in ctx
    fast = alice.build_context_fast("database port", 100_000)
    assert "never deploy on fridays" in fast
    assert alice.persist_memory("alice-backup.json") == 3
    # a second agent session of the same agent sees the same graph
    again = car_client(
        CAR_DAEMON_URL=served.url,
        CAR_AGENT_ID="alice",
        CAR_AGENT_TOKEN=served.info["agents"]["alice"],
    )
    assert again.fact_count() == 3
    # ... and loads the snapshot back (load replaces the graph)
    assert again.load_memory("alice-backup.json") == 3
    assert again.fact_count() == 3
    # snapshots are kept per identity: an unbound session does not see alice's file
    plain = car_client(CAR_DAEMON_URL=served.url, CAR_AUTH_TOKEN=served.info["token"])
    assert plain.fact_count() == 0
    with pytest.raises(Exception, match="no file"):
        plain.load_memory("alice-backup.json")
    assert plain.fact_count() == 0
    with pytest.raises(Exception, match="rejected path"):
        plain.persist_memory("../outside.json")


def test_run_calls(served, alice, car_client) -> None:
    run = json.loads(alice.runs_start(json.dumps({"intent": "triage bugs"})))
    rid = run["run_id"]
    assert run["agent_id"] == "alice"
    rec = json.loads(
        alice.runs_record_turns(
            json.dumps(
                {
                    "run_id": rid,
                    "turns": [{"prompt": "list bugs", "tool": "tracker", "output": "3"}],
                }
            )
        )
    )
    assert rec["ok"] is True and rec["base_index"] == 1
    done = json.loads(
        alice.runs_complete(
            json.dumps({"run_id": rid, "outcome": {"status": "success", "summary": "triaged"}})
        )
    )
    assert done["ok"] is True
    trace = json.loads(alice.runs_get_trace(json.dumps({"run_id": rid})))
    assert trace["status"] == "completed"
    assert [r["record"] for r in trace["records"]] == ["started", "turn", "ended"]
    listed = json.loads(alice.runs_list(json.dumps({"agent_id": "alice"})))
    assert listed["runs"][0]["run_id"] == rid
    host = car_client(CAR_DAEMON_URL=served.url, CAR_AUTH_TOKEN=served.info["token"])
    host.session_auth(json.dumps({"host_token": served.info["host_token"]}))
    deadline = time.monotonic() + 5  # on PostgreSQL, events follow the commit by a few ms
    while True:
        kinds = [e["kind"] for e in json.loads(host.host_events(20))["events"]]
        if "run.ended" in kinds or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert "run.started" in kinds and "run.ended" in kinds
    # another agent learns nothing about alice's run
    bob = car_client(
        CAR_DAEMON_URL=served.url, CAR_AGENT_ID="bob", CAR_AGENT_TOKEN=served.info["agents"]["bob"]
    )
    assert json.loads(bob.runs_get_trace(json.dumps({"run_id": rid}))) == {
        "run_id": rid,
        "not_found": True,
    }


def test_official_client_on_a_graph_with_supersession(served, alice) -> None:
    """The client cannot send `supersedes`, but its calls keep working on a graph
    where another session superseded facts: counts, queries and contexts see valid facts only,
    and its own writes (with the extra fields it sends) and persist/load keep the chain."""
    raw = Client(served.url)
    raw.call("session.auth", {"token": served.info["agents"]["alice"], "agent_id": "alice"})
    raw.call("memory.add_fact", {"subject": "deploy_target", "body": "Heroku", "fact_id": "d1"})
    raw.call(
        "memory.add_fact",
        {"subject": "deploy_target", "body": "Cloudflare Workers", "supersedes": ["d1"]},
    )
    assert alice.add_fact("git", "never force-push to main", "pattern") == 2
    alice.add_fact("ci", "runs on every push", "pattern", 0.9, "ci-1", ["build"], "agent")
    assert alice.fact_count() == 3
    rows = json.loads(alice.query_facts("what runtime do we deploy to?", 5))
    assert rows[0]["body"] == "Cloudflare Workers"
    assert all(r["body"] != "Heroku" for r in rows)
    ctx = alice.build_context("deploy target heroku")
    assert "Cloudflare Workers" in ctx and "Heroku" not in ctx
    assert "Heroku" not in alice.build_context_fast("deploy target heroku", 100_000)
    chain = raw.call("memory.history", {"subject": "deploy_target"})
    assert alice.persist_memory("with-chain.json") == 4  # history included
    assert alice.load_memory("with-chain.json") == 4
    assert alice.fact_count() == 3
    assert raw.call("memory.history", {"subject": "deploy_target"}) == chain
    raw.close()


def test_proactive_memory_calls(served, alice) -> None:
    saved = json.loads(alice.memory_save_procedural(json.dumps({
        "id": "proxy-fix", "subject": "build",
        "body": "pip install fails behind the proxy; set PIP_INDEX_URL first",
    })))  # fmt: skip
    assert saved == {"id": "proxy-fix", "kind": "procedural", "fact_count": 1}
    knowledge = json.loads(alice.memory_save_knowledge(json.dumps({
        "subject": "deploy", "body": "production deploys need a change ticket",
        "confidence": "high",
    })))  # fmt: skip
    assert knowledge["kind"] == "knowledge" and knowledge["fact_count"] == 2
    request = {"query": "pip install fails", "trigger": {"tool_error": True}}
    answer = json.loads(alice.memory_intervene(json.dumps(request)))
    assert answer["decision"] == "inject" and answer["selected"]["fact_id"] == "proxy-fix"
    assert "PIP_INDEX_URL" in answer["reminder"]
    silent = json.loads(alice.memory_intervene(json.dumps({"query": "weather tomorrow"})))
    assert silent["decision"] == "silent"
    cases = [
        {"id": "c1", "request": request, "relevant_fact_ids": ["proxy-fix"]},
        {"id": "c2", "request": {"query": "weather tomorrow"}, "relevant_fact_ids": []},
    ]
    report = json.loads(alice.memory_evaluate(json.dumps({"cases": cases})))
    assert report["cases"] == 2
    assert report["selective"]["precision"] == 1.0 and report["selective"]["recall"] == 1.0
    assert set(report) == {"cases", "selective", "always_inject", "passive_retrieval", "no_memory"}


def test_utility_blend_calls(served, alice) -> None:
    assert json.loads(alice.memory_utility_get("null")) == {
        "utility_weight": 0.0, "utility_exploration": 1.0}  # fmt: skip
    applied = json.loads(alice.memory_utility_set(json.dumps({"utility_weight": 0.4})))
    assert applied == {"utility_weight": 0.4, "utility_exploration": 1.0}
    applied = json.loads(alice.memory_utility_set(json.dumps({"utility_exploration": 7})))
    assert applied == {"utility_weight": 0.4, "utility_exploration": 4.0}  # kept, clamped
    assert json.loads(alice.memory_utility_get("{}")) == applied


def test_maintain_mines_the_event_log_into_entries_once(served, alice) -> None:
    raw = Client(served.url)
    raw.call("session.auth", {"token": served.info["agents"]["alice"], "agent_id": "alice"})
    rid = raw.call("runs.start", {"intent": "build the wheel"})["run_id"]
    failed = {"tool": "pip", "status": "failed", "parameters": {"secret": "hunter2"}}
    raw.call("runs.record_turns", {"run_id": rid, "turns": [failed, failed, {"tool": "ls"}]})
    deadline = time.monotonic() + 10
    while True:
        out = json.loads(alice.memory_maintain(json.dumps({"max_recent": 32})))
        if out["saved"] == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert out["saved"] == 2 and out["skipped_existing"] == 0
    assert out["trigger"]["tool_error"] is True and out["trigger"]["repeated_failures"] == 2
    again = json.loads(alice.memory_maintain(json.dumps({})))
    assert (again["saved"], again["skipped_existing"]) == (0, 2)  # the same events: nothing new
    rows = raw.call("memory.query", {"query": "pip failed", "k": 5})
    assert {r["kind"] for r in rows} == {"procedural"} and len(rows) == 2
    assert all("hunter2" not in r["body"] for r in rows)  # never an action's parameters
    answer = json.loads(alice.memory_intervene(json.dumps(
        {"query": "pip install", "trigger": out["trigger"]})))  # fmt: skip
    assert answer["decision"] == "inject" and "pip failed" in answer["reminder"]
    raw.close()

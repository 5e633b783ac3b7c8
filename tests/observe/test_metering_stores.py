"""Lifetime cost figures come from the run store: they survive a restart on SQLite, and on a
PostgreSQL store every server of the team reports every server's runs."""

from __future__ import annotations

from typing import Any

import pytest

from carnb.runtime import Runtime
from tests.conftest import Client

PRICES = {"*": {"input_per_mtok": 2.0, "output_per_mtok": 10.0}}


def as_agent(rt: Runtime, agent: str, registered_on: Runtime | None = None) -> Client:
    """A session of ``agent`` on ``rt`` (its token is known where it was registered)."""
    c = Client(rt.url)
    token = (registered_on or rt).credentials.agents.token_for(agent)
    c.call("session.auth", {"token": token, "agent_id": agent})
    return c


def as_host(rt: Runtime) -> Client:
    c = Client(rt.url)
    c.call("session.auth", {"host_token": rt.host_token})
    return c


def record(c: Client, tokens_in: int, model: str = "m") -> str:
    rid: str = c.call("runs.start", {"intent": "work"})["run_id"]
    usage = {"input_tokens": tokens_in, "output_tokens": 100}
    c.call("runs.record_model_turn", {"run_id": rid, "model_id": model, "token_usage": usage})
    c.call("runs.complete", {"run_id": rid, "outcome": {"status": "success"}})
    return rid


def by_agent(rt: Runtime) -> dict[str, dict[str, Any]]:
    host = as_host(rt)
    try:
        return {r["agent"]: r for r in host.call("events.cost_by_agent")}
    finally:
        host.close()


def test_cost_survives_a_restart_on_sqlite(make_runtime: Any) -> None:
    first = make_runtime(agents=("alice",), browser=False)
    first.call("prices.set", {"prices": PRICES})
    alice = as_agent(first, "alice")
    record(alice, 1000)
    alice.close()
    home = first.settings.home
    first.close()
    again = make_runtime(home=home, agents=("alice",), browser=False)
    again.call("prices.set", {"prices": PRICES})
    row = by_agent(again)["alice"]
    assert row["calls"] == 1 and row["tokens_in"] == 1000
    assert row["cost_usd"] == pytest.approx((1000 * 2 + 100 * 10) / 1e6)


@pytest.mark.postgres
def test_every_server_of_a_team_store_reports_every_servers_runs(
    make_runtime: Any, pg_url: str
) -> None:
    a = make_runtime(store=pg_url, agents=("alice",), browser=False)
    b = make_runtime(store=pg_url, agents=("bob",), browser=False)
    for rt in (a, b):
        rt.call("prices.set", {"prices": PRICES})
    alice, bob = as_agent(a, "alice"), as_agent(b, "bob")
    try:
        record(alice, 1000)
        record(bob, 3000)
        record(bob, 500, model="other")
    finally:
        alice.close()
        bob.close()
    for rt in (a, b):
        rows = by_agent(rt)
        assert rows["alice"]["tokens_in"] == 1000 and rows["alice"]["calls"] == 1
        assert rows["bob"]["tokens_in"] == 3500 and rows["bob"]["calls"] == 2
        assert rows["bob"]["cost_usd"] == pytest.approx((3500 * 2 + 200 * 10) / 1e6)
    # an agent still sees only its own figures, on any server
    bob_on_a = as_agent(a, "bob", registered_on=b)
    try:
        assert [r["agent"] for r in bob_on_a.call("events.cost_by_agent")] == ["bob"]
        by_model = {r["model"]: r for r in bob_on_a.call("metrics.cost", {"by": "model"})["rows"]}
        assert by_model["other"]["tokens_in"] == 500
    finally:
        bob_on_a.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_setting(request) -> dict[str, Any]:
    return {} if request.param == "sqlite" else {"store": request.getfixturevalue("pg_url")}


def test_usage_is_read_a_chunk_at_a_time_and_sums_every_model_turn(
    make_runtime: Any, store_setting: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import carnb.runs.store

    monkeypatch.setattr(carnb.runs.store, "_USAGE_SPAN", 7)  # many chunks from a small store
    rt = make_runtime(agents=("alice",), browser=False, **store_setting)
    alice = as_agent(rt, "alice")
    try:
        for r in range(3):
            rid = alice.call("runs.start", {"intent": f"r{r}"})["run_id"]
            for i in range(9):
                alice.call("runs.record_turns", {"run_id": rid, "turns": [{"tool": "t"}] * 2})
                usage = {"input_tokens": i + 1, "output_tokens": 1}
                alice.call(
                    "runs.record_model_turn",
                    {"run_id": rid, "model_id": f"m{i % 2}", "token_usage": usage},
                )
            bad = {"input_tokens": "many", "output_tokens": -3}  # stored as given, counted 0
            alice.call("runs.record_model_turn", {"run_id": rid, "token_usage": bad})
    finally:
        alice.close()
    rows = rt.assembly.run_store.model_usage()
    assert sum(r["calls"] for r in rows) == 30
    assert sum(r["tokens_in"] for r in rows) == 3 * sum(range(1, 10))
    assert {r["model"] for r in rows} == {"m0", "m1", None}
    assert len({r["run"] for r in rows}) == 3

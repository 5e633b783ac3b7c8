"""The official client's event-log and metrics calls against `python -m carnb serve`."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.compat


def test_event_log_and_metrics_calls(serve_process, car_client, tmp_path) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"*": {"input_per_mtok": 1, "output_per_mtok": 2}}))
    served = serve_process("--agent", "alice", "--prices", str(prices))
    alice = car_client(
        CAR_DAEMON_URL=served.url,
        CAR_AGENT_ID="alice",
        CAR_AGENT_TOKEN=served.info["agents"]["alice"],
    )
    rid = json.loads(alice.runs_start(json.dumps({"intent": "metered"})))["run_id"]
    turn = {
        "run_id": rid,
        "model_id": "m",
        "token_usage": {"input_tokens": 1000, "output_tokens": 500},
    }
    alice.runs_record_model_turn(json.dumps(turn))
    count = alice.event_count()
    assert int(count) == 2  # run_started, inference_metered
    found = json.loads(alice.event_query(json.dumps({"kinds": ["inference_metered"]})))
    assert found["count"] == 1 and found["events"][0]["data"]["tokens_in"] == 1000
    summary = json.loads(alice.metrics_summary())
    assert summary["tokens_out"] == 500 and summary["cost_usd"] == pytest.approx(0.002)
    by_agent = alice.event_cost_by_agent()
    rows = json.loads(by_agent) if isinstance(by_agent, str) else by_agent
    assert rows[0]["agent"] == "alice" and rows[0]["cost_usd"] == pytest.approx(0.002)


def test_the_agent_loop_is_metered_once_per_inference(serve_process, car_client) -> None:
    """The official agent loop asks ``infer`` and then records the same inference as a model
    turn: the meter counts it once, with the run's tool actions beside it."""
    agent_loop = pytest.importorskip("car_runtime.agent_loop")
    from tests.compat import loopmodels
    from tests.compat.loopagent import config

    served = serve_process("--agent", "adder", "--model", "tests.compat.loopmodels:adder")
    adder = car_client(
        CAR_DAEMON_URL=served.url,
        CAR_AGENT_ID="adder",
        CAR_AGENT_TOKEN=served.info["agents"]["adder"],
    )
    outcome = agent_loop.run_agent(config("adder", adder), "add 1, 2 and 3")
    assert outcome["status"] == "success"
    summary = json.loads(adder.metrics_summary())
    turns = loopmodels.STEPS + 1
    assert summary["inference_calls"] == turns  # not twice: infer and its model turn are one
    assert summary["tokens_in"] == sum(10 * (i + 1) for i in range(turns))
    assert summary["actions_succeeded"] == turns  # add x3 and finish
    found = json.loads(adder.event_query(json.dumps({"kinds": ["inference_metered"]})))
    assert {e["data"]["source"] for e in found["events"]} == {"infer"}
    assert {e["data"]["run_id"] for e in found["events"]} == {outcome["run_id"]}

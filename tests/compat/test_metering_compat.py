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

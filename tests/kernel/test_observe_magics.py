"""The notebook side of metering: carnb.prices, %car cost (a table with .to_dataframe()),
%car otel, %car run export, carnb.model_turns, and the panel's tokens and cost per run."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import carnb
from tests.conftest import Client


def wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def usage_model(request: dict[str, Any]) -> dict[str, Any]:
    return {"text": "4", "usage": {"input_tokens": 1000, "output_tokens": 200}}


def test_cost_table_and_the_panel_show_tokens_and_cost_per_run(loaded: Any) -> None:
    carnb.model(usage_model, name="m1")
    carnb.prices({"m1": {"input_per_mtok": 3, "output_per_mtok": 15}})
    panel = loaded.run_line_magic("car", "status")
    rt = carnb.current()
    loaded.run_line_magic("car", "agent add scout")
    token = rt.credentials.agents.token_for("scout")
    done = threading.Event()

    def agent() -> None:
        c = Client(rt.url)
        c.call("session.auth", {"agent_id": "scout", "token": token})
        c.call("runs.start", {"intent": "add"})
        c.call("infer", {"prompt": "2+2?"})
        done.set()

    threading.Thread(target=agent, daemon=True).start()
    assert done.wait(20)
    assert wait_for(lambda: "1,000 in / 200 out" in panel.others.value)
    assert "$0.0060" in panel.others.value
    table = loaded.run_line_magic("car", "cost")
    assert table.rows_data[0]["agent"] == "scout"
    assert "$" not in table.text() and "0.006" in table.text()
    frame = table.to_dataframe()
    assert list(frame["agent"]) == ["scout"] and frame["tokens_in"].sum() == 1000
    by_model = loaded.run_line_magic("car", "cost --by model")
    assert by_model.rows_data[0]["model"] == "m1"
    status = loaded.run_line_magic("car", "otel")
    assert "not set" in status.text()


def test_run_export_writes_the_model_turns(loaded: Any, tmp_path) -> None:
    rt = carnb.current()
    rid = rt.call("runs.start", {"intent": "sum", "agent_name": "evals"})["run_id"]
    rt.call(
        "runs.record_model_turn",
        {"run_id": rid, "model_id": "m", "token_usage": {"input_tokens": 5, "output_tokens": 1}},
    )
    rt.call("runs.complete", {"run_id": rid, "outcome": {"status": "success"}})
    out = tmp_path / "turns.jsonl"
    msg = loaded.run_line_magic("car", f"run export {rid} {out}")
    assert "1 model turns of 1 runs" in msg.text()
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["run_id"] == rid and row["outcome"] == {"status": "success"}
    frame = carnb.model_turns(rid)
    assert list(frame["tokens_in"]) == [5]

"""Datasets from traces: the model turns of chosen runs, read through a real runtime's run
store, as rows, a pandas DataFrame and JSON lines or parquet files."""

from __future__ import annotations

import argparse
import json

import pytest

from carnb.kernel.cmd_observe import TURN_COLUMNS, model_turns


def a_run(rt, model: str, tokens: int) -> str:
    rid: str = rt.call("runs.start", {"intent": "sum 2 and 3", "agent_name": "evals"})["run_id"]
    rt.call(
        "runs.record_model_turn",
        {
            "run_id": rid,
            "turn_index": 0,
            "model_id": model,
            "assistant_text": "",
            "requested_tool_calls": [{"id": "c1", "name": "add", "arguments": {"a": 2, "b": 3}}],
            "token_usage": {"input_tokens": tokens, "output_tokens": 10},
        },
    )
    rt.call("runs.record_turns", {"run_id": rid, "turns": [{"tool": "add", "output": 5}]})
    rt.call(
        "runs.record_model_turn",
        {"run_id": rid, "turn_index": 1, "model_id": model, "assistant_text": "5"},
    )
    rt.call("runs.complete", {"run_id": rid, "outcome": {"status": "success", "summary": "5"}})
    return rid


def test_model_turns_of_runs_carry_inputs_outputs_outcome_and_cost(make_runtime) -> None:
    rt = make_runtime(browser=False)
    rt.call("prices.set", {"prices": {"m": {"input_per_mtok": 2, "output_per_mtok": 4}}})
    first, second = a_run(rt, "m", 1000), a_run(rt, "other", 5)
    rows = model_turns(rt.call, [first, second])
    assert [r["run_id"] for r in rows] == [first, first, second, second]
    opening, answer = rows[0], rows[1]
    assert opening["input_messages"] == [{"role": "user", "content": "sum 2 and 3"}]
    assert opening["tool_calls"][0]["name"] == "add"
    assert opening["cost_usd"] == pytest.approx((1000 * 2 + 10 * 4) / 1e6)
    assert answer["output"] == "5" and answer["input_messages"][-1] == {
        "role": "tool",
        "name": "add",
        "content": 5,
    }
    assert answer["outcome"] == {"status": "success", "summary": "5"}
    assert rows[2]["cost_usd"] is None  # unpriced, not free
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(rows, columns=list(TURN_COLUMNS))
    assert frame["tokens_in"].sum() == 1005


def test_export_writes_jsonl_and_parquet(make_runtime, tmp_path) -> None:
    from carnb.kernel import cmd_observe

    rt = make_runtime(browser=False)
    rid = a_run(rt, "m", 7)

    class Calls:
        def call(self, method, params, what=""):
            return rt.call(method, params)

    class Engine:
        calls = Calls()

    out = tmp_path / "turns.jsonl"
    args = argparse.Namespace(run_ids=[rid], path=str(out), format=None)
    assert "2 model turns" in cmd_observe.export(Engine(), args).text()  # type: ignore[arg-type]
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["turn_index"] for x in lines] == [0, 1]
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "turns.parquet"
    cmd_observe.export(Engine(), argparse.Namespace(run_ids=[rid], path=str(path), format=None))  # type: ignore[arg-type]
    table = pq.read_table(path)
    assert table.num_rows == 2 and table.column_names == list(TURN_COLUMNS)

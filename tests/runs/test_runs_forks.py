"""What time travel keeps in the run store, on both stores: a fork's parent (``forked_from``, a
column of its own since schema version 2) and the inference a model turn carries."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from carnb.errors import InvalidParams
from carnb.runs import RunStore
from tests.runs.runs_helpers import AGENT_A, HOST


def test_a_fork_names_its_parent_in_its_summary_and_started_record(store: RunStore) -> None:
    parent = store.start(AGENT_A, intent="x")["run_id"]
    fork = store.start(
        HOST, intent="x", agent_id="agent-a", forked_from={"run_id": parent, "turn": 3}
    )
    listed = {r["run_id"]: r for r in store.list_runs(HOST, "agent-a")["runs"]}
    assert listed[fork["run_id"]]["forked_from"] == {"run_id": parent, "turn": 3}
    assert listed[parent]["forked_from"] is None
    started = store.get_trace(HOST, fork["run_id"])["records"][0]
    assert started["forked_from"] == {"run_id": parent, "turn": 3}
    assert "forked_from" not in store.get_trace(HOST, parent)["records"][0]
    with pytest.raises(InvalidParams, match="forked_from must be"):
        store.start(HOST, intent="x", agent_id="agent-a", forked_from={"run_id": parent})


def test_a_model_turn_keeps_the_inference_the_server_gives_it(store: RunStore) -> None:
    run_id = store.start(AGENT_A, intent="x")["run_id"]
    inference = {"request": {"model": "m", "messages": []}, "reply": {"text": "hi"}}
    store.record_model_turn(AGENT_A, run_id, {"assistant_text": "hi"}, inference=inference)
    store.record_model_turn(AGENT_A, run_id, {"assistant_text": "again", "inference": {"x": 1}})
    first, second = store.get_trace(AGENT_A, run_id)["records"][1:]
    assert first["inference"] == inference
    assert "inference" not in second  # a caller's own field is not kept


def test_a_version_1_sqlite_store_gains_forked_from_and_keeps_its_runs(db_path: Path) -> None:
    old = RunStore(db_path)
    run_id = old.start(AGENT_A, intent="before")["run_id"]
    old.close()
    conn = sqlite3.connect(db_path)  # back to version 1, as carnb wrote it before forks
    conn.execute("ALTER TABLE runs DROP COLUMN forked_from")
    conn.execute("PRAGMA user_version=1")
    conn.close()
    store = RunStore(db_path)
    try:
        (summary,) = store.list_runs(HOST, "agent-a")["runs"]
        assert summary["run_id"] == run_id and summary["forked_from"] is None
        fork = store.start(
            HOST, intent="x", agent_id="agent-a", forked_from={"run_id": run_id, "turn": 1}
        )
        assert store.list_runs(HOST, "agent-a")["runs"][0]["run_id"] == fork["run_id"]
    finally:
        store.close()
    version = sqlite3.connect(db_path).execute("PRAGMA user_version").fetchone()[0]
    assert version == 2

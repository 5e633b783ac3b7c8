"""Listeners see every committed record in order; concurrent writers get disjoint indexes."""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from carnb.errors import InvalidParams
from carnb.runs import RunStore
from tests.runs.runs_helpers import AGENT_A, AGENT_B, HOST, UNBOUND, settle, turns


def test_listener_sees_every_record_in_order_with_contiguous_cursors(store: RunStore) -> None:
    events: list[dict[str, Any]] = []
    store.add_listener(events.append)
    run_id = store.start(AGENT_A, intent="watched")["run_id"]
    store.record_turns(AGENT_A, run_id, turns(3))
    store.record_turns(AGENT_A, run_id, turns(2, start=3))
    with pytest.raises(InvalidParams):
        store.record_turns(AGENT_A, run_id, [])  # refused: no event
    store.record_turns(AGENT_B, run_id, turns(1))  # not the owner: no event
    store.complete(AGENT_A, run_id, {"status": "success"})
    other = store.start(UNBOUND, intent="other", agent_name="bot")["run_id"]
    store.end_incomplete(other)
    settle(store)

    mine = [e for e in events if e["run_id"] == run_id]
    assert [e["cursor"] for e in mine] == list(range(7))
    assert [e["record"] for e in mine] == store.get_trace(AGENT_A, run_id)["records"]
    assert {e["agent_id"] for e in mine} == {"agent-a"}
    assert [e["status"] for e in mine] == ["in_progress"] * 6 + ["completed"]
    assert set(mine[0]) == {"run_id", "agent_id", "record", "cursor", "status"}
    theirs = [e for e in events if e["run_id"] == other]
    assert [(e["cursor"], e["record"]["record"], e["status"]) for e in theirs] == [
        (0, "started", "in_progress"),
        (1, "ended", "incomplete"),
    ]
    assert theirs[0]["agent_id"] == "name:bot"


def test_listener_runs_after_commit(sqlite_store: RunStore, db_path: Path) -> None:
    store = sqlite_store
    reader = sqlite3.connect(db_path)
    seen: list[tuple[int, int]] = []

    def check(event: dict[str, Any]) -> None:
        n = reader.execute(
            "SELECT count(*) FROM records WHERE run_id=?", (event["run_id"],)
        ).fetchone()[0]
        seen.append((event["cursor"], n))

    store.add_listener(check)
    run_id = store.start(AGENT_A, intent="x")["run_id"]
    store.record_turns(AGENT_A, run_id, turns(2))
    reader.close()
    # Every record of the write is visible to another connection when its event arrives.
    assert seen == [(0, 1), (1, 3), (2, 3)]


def test_unsubscribe_and_a_failing_listener(
    store: RunStore, caplog: pytest.LogCaptureFixture
) -> None:
    got: list[int] = []

    def broken(event: dict[str, Any]) -> None:
        raise RuntimeError("view crashed")

    store.add_listener(broken)
    remove = store.add_listener(lambda e: got.append(e["cursor"]))
    run_id = store.start(AGENT_A, intent="x")["run_id"]
    with caplog.at_level(logging.ERROR, logger="carnb.runs"):
        assert store.record_turns(AGENT_A, run_id, turns(1))["ok"] is True
        settle(store)
    assert "run listener" in caplog.text and "view crashed" in caplog.text
    assert got == [0, 1]
    remove()
    remove()  # idempotent
    store.record_turns(AGENT_A, run_id, turns(1))
    settle(store)
    assert got == [0, 1]
    assert [r["index"] for r in store.get_trace(AGENT_A, run_id)["records"]] == [0, 1, 2]


def test_concurrent_record_turns_get_contiguous_disjoint_indexes(store: RunStore) -> None:
    run_id = store.start(AGENT_A, intent="busy")["run_id"]
    settle(store)  # the start is announced before the listener comes
    cursors: list[int] = []
    store.add_listener(lambda e: cursors.append(e["cursor"]))
    results: list[dict[str, Any]] = []
    results_lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker(seed: int) -> None:
        rnd = random.Random(seed)
        barrier.wait()
        for _ in range(25):
            r = store.record_turns(AGENT_A, run_id, turns(rnd.randint(1, 12), start=seed * 1000))
            with results_lock:
                results.append(r)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 200 and all(r["ok"] for r in results)
    taken: set[int] = set()
    for r in results:
        span = set(range(r["base_index"], r["base_index"] + r["count"]))
        assert not span & taken
        taken |= span
    total = sum(r["count"] for r in results)
    assert taken == set(range(1, total + 1))
    trace = store.get_trace(HOST, run_id)
    assert [r["index"] for r in trace["records"]] == list(range(total + 1))
    settle(store)
    assert cursors == list(range(1, total + 1))  # listener order follows the indexes
    # Each batch stayed together: a batch's turns share one writer's prompts in order.
    for r in results:
        batch = trace["records"][r["base_index"] : r["base_index"] + r["count"]]
        assert [t["turn"]["prompt"] for t in batch] == [
            f"p{batch[0]['turn']['parameters']['q'] + i}" for i in range(r["count"])
        ]


def test_concurrent_starts_with_one_idempotency_key_make_one_run(store: RunStore) -> None:
    ids: list[str] = []
    barrier = threading.Barrier(6)

    def go() -> None:
        barrier.wait()
        ids.append(store.start(AGENT_A, intent="once", idempotency_key="same")["run_id"])

    threads = [threading.Thread(target=go) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(ids) == 6 and len(set(ids)) == 1
    assert len(store.list_runs(HOST, "agent-a")["runs"]) == 1

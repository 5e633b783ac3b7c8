"""Durability: committed before returning, survives close/reopen and a killed process."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from carnb.errors import CarnbError
from carnb.runs import RunStore
from tests.runs.runs_helpers import AGENT_A, AGENT_A_LATER, HOST, UNBOUND, indexes, turns


def test_runs_survive_close_and_reopen(db_path: Path) -> None:
    store = RunStore(db_path)
    done = store.start(AGENT_A, intent="done", idempotency_key="k")["run_id"]
    store.record_turns(AGENT_A, done, turns(3))
    store.complete(AGENT_A, done, {"status": "success", "summary": "ok"})
    open_run = store.start(AGENT_A, intent="still open")["run_id"]
    store.record_turns(AGENT_A, open_run, turns(2))
    named = store.start(UNBOUND, intent="named", agent_name="bot")["run_id"]
    before = {r: store.get_trace(HOST, r) for r in (done, open_run, named)}
    listed = store.list_runs(AGENT_A, "agent-a")
    store.close()

    reopened = RunStore(db_path)
    try:
        assert {r: reopened.get_trace(HOST, r) for r in before} == before
        assert reopened.list_runs(AGENT_A, "agent-a") == listed
        # The agent (authenticated) picks its open run up again; indexes continue.
        assert reopened.record_turns(AGENT_A_LATER, open_run, turns(1))["base_index"] == 3
        assert reopened.start(AGENT_A, intent="done", idempotency_key="k")["run_id"] == done
        # A session id of the new store is not the old session: session ids restart per process.
        assert reopened.record_turns(UNBOUND, named, turns(1))["dropped"] == "run_not_found"
        assert reopened.get_trace(UNBOUND, named) == {"run_id": named, "not_found": True}
        assert reopened.list_runs(UNBOUND, "name:bot")["runs"] == []
    finally:
        reopened.close()


def test_every_write_is_committed_before_it_returns(sqlite_store: RunStore, db_path: Path) -> None:
    store = sqlite_store
    reader = sqlite3.connect(db_path)  # an independent connection, as another process would be
    try:
        run_id = store.start(AGENT_A, intent="x")["run_id"]
        count = "SELECT count(*) FROM records WHERE run_id=?"
        assert reader.execute(count, (run_id,)).fetchone()[0] == 1
        store.record_turns(AGENT_A, run_id, turns(4))
        assert reader.execute(count, (run_id,)).fetchone()[0] == 5
        store.cancel(HOST, run_id, "stop")
        assert (
            reader.execute("SELECT status FROM runs WHERE run_id=?", (run_id,)).fetchone()[0]
            == "cancelled"
        )
        assert reader.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        reader.close()


def test_a_killed_process_loses_nothing_it_was_told_was_written(db_path: Path) -> None:
    script = textwrap.dedent(f"""
        import os, sys
        from carnb.runs import Caller, RunStore
        s = RunStore({str(db_path)!r})
        a = Caller("s1", "agent-a")
        r = s.start(a, intent="crash test")["run_id"]
        s.record_turns(a, r, [{{"output": i}} for i in range(10)])
        print(r, flush=True)
        os._exit(9)  # no close, no cleanup
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=60,
    )
    assert proc.returncode == 9, proc.stderr
    run_id = proc.stdout.strip()
    with RunStore(db_path) as store:
        trace = store.get_trace(AGENT_A, run_id)
        assert trace["status"] == "in_progress"
        assert [r["index"] for r in trace["records"]] == list(range(11))
        # The server of the new process ends it when it decides the owner is gone.
        assert store.end_incomplete(run_id, "server restarted") is True


def test_close_is_idempotent_and_a_closed_store_says_so(db_path: Path) -> None:
    store = RunStore(db_path)
    run_id = store.start(AGENT_A, intent="x")["run_id"]
    store.close()
    store.close()
    assert store.closed
    with pytest.raises(CarnbError, match="is closed"):
        store.record_turns(AGENT_A, run_id, turns(1))
    with pytest.raises(CarnbError, match="is closed"):
        store.get_trace(AGENT_A, run_id)
    assert store.open() is store and store.open() is store
    # Same object, same session epoch: the starting session still owns its runs.
    assert store.record_turns(AGENT_A, run_id, turns(1))["base_index"] == 1
    store.close()


def test_two_stores_on_one_file_append_contiguously(db_path: Path) -> None:
    """Two processes (here: two stores, two connections) writing one agent's run."""
    one, two = RunStore(db_path), RunStore(db_path)
    try:
        run_id = one.start(AGENT_A, intent="shared")["run_id"]
        results: list[dict] = []
        lock = threading.Lock()

        def write(store: RunStore) -> None:
            for i in range(30):
                r = store.record_turns(AGENT_A_LATER, run_id, turns(1 + i % 4))
                with lock:
                    results.append(r)

        threads = [threading.Thread(target=write, args=(s,)) for s in (one, two)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        spans = sorted((r["base_index"], r["count"]) for r in results)
        assert len(results) == 60 and all(r["ok"] for r in results)
        total = sum(c for _, c in spans)
        assert indexes(one, run_id) == list(range(total + 1))
        next_base = 1
        for base, count in spans:
            assert base == next_base
            next_base += count
    finally:
        one.close()
        two.close()


def test_a_newer_schema_is_refused_with_a_clear_error(db_path: Path) -> None:
    RunStore(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA user_version=99")
    conn.close()
    with pytest.raises(CarnbError, match="schema version 99.*upgrade carnb"):
        RunStore(db_path)


def test_memory_store_works_for_tests() -> None:
    with RunStore(":memory:") as store:
        run_id = store.start(AGENT_A, intent="x")["run_id"]
        assert store.record_turns(AGENT_A, run_id, turns(2))["count"] == 2


def test_close_during_writes_from_another_thread_neither_hangs_nor_corrupts(
    db_path: Path,
) -> None:
    store = RunStore(db_path)
    run_id = store.start(AGENT_A, intent="x")["run_id"]
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        while not stop.is_set():
            try:
                store.record_turns(AGENT_A, run_id, turns(50))
            except Exception as exc:  # the store closing under it is expected
                errors.append(exc)
                return

    t = threading.Thread(target=writer)
    t.start()
    time.sleep(0.3)
    store.close()
    stop.set()
    t.join(10)
    assert not t.is_alive()
    assert all("is closed" in str(e) for e in errors), errors
    assert not Path(f"{db_path}-wal").exists()  # the last close checkpointed and removed it
    with RunStore(db_path) as again:
        recs = again.get_trace(AGENT_A, run_id)["records"]
        assert [r["index"] for r in recs] == list(range(len(recs)))
    check = sqlite3.connect(db_path)
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    check.close()

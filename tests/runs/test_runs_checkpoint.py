"""WAL checkpoints run off the commit path, and the WAL still restarts instead of growing."""

from __future__ import annotations

import gc
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from carnb.runs import RunStore
from tests.runs.runs_helpers import AGENT_A, turns

BIG = [{"output": "z" * 1500, "n": i} for i in range(50)]


def wal_salt(db_path: Path) -> bytes:
    """Salt-1 of the WAL header: SQLite changes it each time the WAL restarts from the start."""
    with open(f"{db_path}-wal", "rb") as f:
        return f.read(20)[16:20]


def wait_for(predicate, timeout: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_commits_do_not_checkpoint_and_the_background_thread_restarts_the_wal(
    db_path: Path,
) -> None:
    with RunStore(db_path) as store:
        run_id = store.start(AGENT_A, intent="x")["run_id"]
        for _ in range(40):  # ~3 MB of turns
            store.record_turns(AGENT_A, run_id, BIG)
        first = wal_salt(db_path)

        def restarted() -> bool:
            store.record_turns(AGENT_A, run_id, turns(1))  # a write restarts a copied WAL
            return wal_salt(db_path) != first

        assert wait_for(restarted), "the WAL was never checkpointed and restarted"


def checkpoint_threads() -> int:
    return sum(t.name == "carnb-runs-checkpoint" for t in threading.enumerate())


def test_in_commit_checkpoints_can_be_chosen(db_path: Path) -> None:
    before = checkpoint_threads()
    with RunStore(db_path, checkpoint="auto") as store:
        assert checkpoint_threads() == before
        run_id = store.start(AGENT_A, intent="x")["run_id"]
        store.record_turns(AGENT_A, run_id, turns(3))
    with pytest.raises(ValueError, match="checkpoint must be"):
        RunStore(db_path, checkpoint="never")
    with pytest.raises(ValueError, match="synchronous must be"):
        RunStore(db_path, synchronous="sometimes")


def test_wal_stays_bounded_under_a_steady_stream_of_writes(db_path: Path) -> None:
    """Without a restart the WAL would hold every byte written (~60 MB here)."""
    with RunStore(db_path) as store:
        run_id = store.start(AGENT_A, intent="x")["run_id"]
        salts = set()
        for i in range(800):
            store.record_turns(AGENT_A, run_id, BIG)
            if i % 20 == 0:
                salts.add(wal_salt(db_path))
        written = store.get_trace(AGENT_A, run_id, after=40_000)["cursor"] * 1500
        wal = Path(f"{db_path}-wal").stat().st_size
        assert len(salts) > 1, "the WAL never restarted during the stream"
        assert wal < written * 0.5, (wal, written)


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
                store.record_turns(AGENT_A, run_id, BIG)
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


def test_a_store_dropped_without_close_stops_its_thread(db_path: Path) -> None:
    before = checkpoint_threads()
    store = RunStore(db_path)
    assert checkpoint_threads() == before + 1
    store.close()
    assert checkpoint_threads() == before
    store.open()
    assert checkpoint_threads() == before + 1
    del store
    gc.collect()
    assert wait_for(lambda: checkpoint_threads() == before, timeout=10)

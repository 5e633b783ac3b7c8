"""Two `python -m carnb serve` processes on one PostgreSQL store: SIGKILL of the one a client
writes through loses no record it acknowledged, and the other server serves the whole trace."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Client

pytestmark = [pytest.mark.reliability, pytest.mark.postgres]


def kill_during_writes(server: Any, write_once: Callable[[int], list[Any]]) -> list[Any]:
    """Call ``write_once(0)``, ``write_once(1)``, ... in a thread, collecting what each call
    acknowledged, until 200 items are acknowledged; then SIGKILL ``server`` mid-write. Returns
    every acknowledged item."""
    acked: list[Any] = []
    stopped = threading.Event()

    def write() -> None:
        i = 0
        try:
            while not stopped.is_set():
                acked.extend(write_once(i))
                i += 1
        except Exception:
            pass  # the server died under us

    t = threading.Thread(target=write)
    t.start()
    deadline = time.monotonic() + 20
    while len(acked) < 200:
        assert time.monotonic() < deadline, "writes too slow"
        time.sleep(0.005)
    server.stop(signal.SIGKILL)
    stopped.set()
    t.join(10)
    return acked


def test_sigkill_mid_write_loses_no_acknowledged_record(
    serve_process: Any, pg_url: str, tmp_path: Path
) -> None:
    a = serve_process("--agent", "bot", "--store", pg_url, home_dir=tmp_path / "a")
    b = serve_process("--agent", "bot", "--store", pg_url, home_dir=tmp_path / "b")
    token = a.info["agents"]["bot"]
    assert "bot" not in b.info["agents"]  # B knows bot from the store, not its token

    writer = Client(a.url)
    writer.call("session.auth", {"agent_id": "bot", "token": token})
    run_id = writer.call("runs.start", {"intent": "killed mid-write"})["run_id"]

    def write_once(i: int) -> list[Any]:
        turns = [{"i": i, "j": j} for j in range(4)]
        r = writer.call("runs.record_turns", {"run_id": run_id, "turns": turns})
        return list(range(r["base_index"], r["base_index"] + r["count"]))

    acked = kill_during_writes(a, write_once)

    reader = Client(b.url)
    try:
        reader.call("session.auth", {"agent_id": "bot", "token": token})  # same token on B
        trace = reader.full_trace(run_id)
        indexes = [r["index"] for r in trace["records"]]
        assert indexes == list(range(len(indexes)))  # contiguous, nothing half-written
        assert set(acked) <= set(indexes)
        assert len(indexes) >= 1 + len(acked)
        # the run goes on through B
        more = reader.call("runs.record_turns", {"run_id": run_id, "turns": [{"after": "kill"}]})
        assert more["base_index"] == len(indexes)
    finally:
        reader.close()


def test_sigkill_mid_write_loses_no_acknowledged_fact(
    serve_process: Any, pg_url: str, tmp_path: Path
) -> None:
    a = serve_process("--agent", "bot", "--store", pg_url, home_dir=tmp_path / "a")
    b = serve_process("--agent", "bot", "--store", pg_url, home_dir=tmp_path / "b")
    token = a.info["agents"]["bot"]
    writer = Client(a.url)
    writer.call("session.auth", {"agent_id": "bot", "token": token})

    def write_once(i: int) -> list[Any]:
        fact_id = f"k-{i}"
        writer.call("memory.add_fact", {"subject": "kill", "body": f"fact {i}", "fact_id": fact_id})
        return [fact_id]

    acked = kill_during_writes(a, write_once)

    reader = Client(b.url)
    try:
        reader.call("session.auth", {"agent_id": "bot", "token": token})
        import psycopg

        with psycopg.connect(pg_url) as conn:
            stored = [r[0] for r in conn.execute("SELECT fact_id FROM memgine_facts")]
        assert set(acked) <= set(stored)
        assert len(stored) == len(set(stored)) <= len(acked) + 1  # at most the one in flight
        assert reader.call("memory.fact_count") == len(stored)
        assert (
            reader.call("memory.add_fact", {"subject": "kill", "body": "after"}) == len(stored) + 1
        )
    finally:
        reader.close()

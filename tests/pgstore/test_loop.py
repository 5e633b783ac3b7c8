"""On a PostgreSQL store the event loop makes no database round trip a client can cause: while
a row or table lock makes every statement on it wait, ``session.auth`` binding an agent's graph
and a disconnect that ends the session's open run leave the loop answering everyone else."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.conftest import Client

pytestmark = [pytest.mark.reliability, pytest.mark.postgres]

FAST = 0.1  # a bystander's round trip while the database waits, seconds


def test_auth_to_a_graph_does_not_wait_on_postgresql(make_runtime: Any, pg_url: str) -> None:
    import psycopg

    rt = make_runtime(store=pg_url, auth=False)
    writer, bystander = Client(rt.url), Client(rt.url)
    try:
        writer.call("session.auth", {"agent_id": "bot"})
        writer.call("memory.add_fact", {"subject": "s", "body": "a fact"})
        writer.close()
        with psycopg.connect(pg_url) as blocker:  # every read of the graphs table now waits
            blocker.execute("LOCK TABLE memgine_graphs IN ACCESS EXCLUSIVE MODE")
            joiner = Client(rt.url)
            t0 = time.perf_counter()
            bound = joiner.call("session.auth", {"agent_id": "bot"})
            took_auth = time.perf_counter() - t0
            t0 = time.perf_counter()
            bystander.call("state.set", {"key": "k", "value": 1})
            took_bystander = time.perf_counter() - t0
        assert bound["agent_id"] == "bot"
        assert took_auth < FAST and took_bystander < FAST, (took_auth, took_bystander)
        # once the lock is gone the count arrives by itself
        deadline = time.monotonic() + 10
        count = None
        while count != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
            count = next(
                (s["fact_count"] for s in rt.snapshots() if s.get("agent_id") == "bot"), None
            )
        assert count == 1
        joiner.close()
    finally:
        bystander.close()


def test_a_disconnect_ending_a_run_does_not_wait_on_postgresql(
    make_runtime: Any, pg_url: str
) -> None:
    import psycopg

    rt = make_runtime(store=pg_url, auth=False)
    writer, bystander = Client(rt.url), Client(rt.url)
    try:
        writer.call("session.auth", {"agent_id": "bot"})
        run_id = writer.call("runs.start", {"intent": "left open"})["run_id"]
        with psycopg.connect(pg_url) as blocker:  # the run's row: ending it must wait
            blocker.execute("SELECT 1 FROM carnb_runs WHERE run_id = %s FOR UPDATE", (run_id,))
            writer.close()
            time.sleep(0.3)  # the server has seen the disconnect and waits on the row
            worst = 0.0
            for _ in range(10):
                t0 = time.perf_counter()
                bystander.call("state.set", {"key": "k", "value": 1})
                worst = max(worst, time.perf_counter() - t0)
            assert worst < FAST, worst
        deadline = time.monotonic() + 10
        status = None
        while time.monotonic() < deadline:
            host = Client(rt.url)
            host.call("session.auth", {"host_token": rt.host_token})
            status = host.call("runs.get_trace", {"run_id": run_id})["status"]
            host.close()
            if status != "running":
                break
            time.sleep(0.05)
        assert status not in (None, "running"), status
    finally:
        bystander.close()

"""Two PostgreSQL run stores on one database (as two servers): each announces the other's
records in cursor order; of runs nobody follows, only the start and the end."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from carnb.pgstore.runs import PgRunStore
from carnb.pgstore.setting import parse_store
from carnb.pgstore.store import PostgresStore
from tests.runs.runs_helpers import AGENT_A, turns

pytestmark = pytest.mark.postgres


@pytest.fixture
def two(pg_url: str) -> Iterator[tuple[PgRunStore, PgRunStore]]:
    stores = [PostgresStore(parse_store(pg_url)).open() for _ in range(2)]
    runs = [s.runs() for s in stores]
    for s in stores:
        s.listen()
    yield runs[0], runs[1]
    for s in stores:
        s.close()


def test_records_written_through_one_store_are_announced_by_the_other(
    two: tuple[PgRunStore, PgRunStore],
) -> None:
    a, b = two
    seen: list[dict[str, Any]] = []
    b.add_listener(seen.append)
    run_id = a.start(AGENT_A, intent="x")["run_id"]
    for i in range(5):
        a.record_turns(AGENT_A, run_id, turns(3, start=i * 3))
    a.complete(AGENT_A, run_id, {"status": "success"})
    assert b.sync()
    assert [e["cursor"] for e in seen] == list(range(17))
    assert [e["record"] for e in seen] == a.get_trace(AGENT_A, run_id)["records"]
    assert seen[-1]["status"] == "completed" and seen[0]["agent_id"] == "agent-a"


def test_runs_nobody_follows_announce_only_start_and_end(
    two: tuple[PgRunStore, PgRunStore],
) -> None:
    a, b = two
    followed: set[str] = set()
    b.interest = followed.__contains__
    seen: list[tuple[str, int, str]] = []
    b.add_listener(lambda e: seen.append((e["run_id"], e["cursor"], e["record"]["record"])))
    quiet = a.start(AGENT_A, intent="quiet")["run_id"]
    loud = a.start(AGENT_A, intent="loud")["run_id"]
    assert b.sync()
    followed.add(loud)
    for run_id in (quiet, loud):
        a.record_turns(AGENT_A, run_id, turns(4))
        a.complete(AGENT_A, run_id, {"status": "success"})
    assert b.sync()
    assert [s for s in seen if s[0] == quiet] == [(quiet, 0, "started"), (quiet, 5, "ended")]
    assert [s[1] for s in seen if s[0] == loud] == [0, 1, 2, 3, 4, 5]


def test_a_writer_waiting_on_one_run_does_not_hold_up_the_others(
    two: tuple[PgRunStore, PgRunStore], pg_url: str
) -> None:
    import threading
    import time

    import psycopg

    a, _ = two
    stuck = a.start(AGENT_A, intent="stuck")["run_id"]
    free = a.start(AGENT_A, intent="free")["run_id"]
    with psycopg.connect(pg_url) as blocker:
        blocker.execute("SELECT 1 FROM carnb_runs WHERE run_id = %s FOR UPDATE", (stuck,))
        waiting = threading.Thread(target=a.record_turns, args=(AGENT_A, stuck, turns(1)))
        waiting.start()
        time.sleep(0.2)
        t0 = time.perf_counter()
        assert a.record_turns(AGENT_A, free, turns(2))["ok"]
        assert a.get_trace(AGENT_A, free)["cursor"] == 2
        assert time.perf_counter() - t0 < 1.0
        assert waiting.is_alive()  # still waiting for the row
    waiting.join(10)
    assert a.get_trace(AGENT_A, stuck)["cursor"] == 1


def test_records_written_while_the_listen_connection_was_down_are_caught_up(
    two: tuple[PgRunStore, PgRunStore], pg_url: str
) -> None:
    import psycopg

    a, b = two
    followed: set[str] = set()
    b.interest = followed.__contains__
    seen: list[tuple[str, int]] = []
    b.add_listener(lambda e: seen.append((e["run_id"], e["cursor"])))
    loud = a.start(AGENT_A, intent="loud")["run_id"]
    quiet = a.start(AGENT_A, intent="quiet")["run_id"]
    followed.add(loud)
    a.record_turns(AGENT_A, loud, turns(1))
    assert b.sync()
    dbname = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'carnb-listen' AND datname = %s",
            (dbname,),
        )
    for _ in range(3):
        a.record_turns(AGENT_A, loud, turns(2))
    a.record_turns(AGENT_A, quiet, turns(2))
    a.complete(AGENT_A, quiet, {"status": "success"})
    assert b.sync(30)
    assert [c for r, c in seen if r == loud] == list(range(8))
    assert [c for r, c in seen if r == quiet] == [0, 3]

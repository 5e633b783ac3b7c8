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
    b.add_listener(lambda e: seen.append((e["run_id"], e["cursor"], e["record"]["kind"])))
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

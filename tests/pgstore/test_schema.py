"""carnb creates and versions its PostgreSQL schema itself: on an empty database, servers that
start together migrate once; a newer schema than this carnb knows is refused, nothing changed."""

from __future__ import annotations

import itertools
import threading
from typing import Any

import psycopg
import pytest

from carnb.errors import SchemaError
from carnb.pgstore.schema import Component, migrate
from carnb.pgstore.setting import parse_store
from carnb.pgstore.store import PostgresStore
from tests.runs.runs_helpers import HOST

pytestmark = pytest.mark.postgres
_names = itertools.count(1)


def test_servers_starting_together_on_an_empty_database_migrate_once(postgres: Any) -> None:
    url = postgres.create_database(f"empty{next(_names)}")  # no template: no tables at all
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def open_store() -> None:
        try:
            barrier.wait()
            pg = PostgresStore(parse_store(url)).open()
            pg.runs()
            pg.agents()
            pg.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with psycopg.connect(url) as conn:
        versions = dict(conn.execute("SELECT component, version FROM carnb_schema").fetchall())
    assert versions == {"runs": 2, "agents": 1}


def test_steps_run_in_order_and_a_newer_version_is_refused(postgres: Any) -> None:
    url = postgres.create_database(f"empty{next(_names)}")
    pg = PostgresStore(parse_store(url)).open()
    try:
        v1 = Component("demo", ("CREATE TABLE demo (a INTEGER)",))
        v2 = Component("demo", (*v1.steps, "ALTER TABLE demo ADD COLUMN b TEXT"))
        assert migrate(pg.db, v1) == 0
        assert migrate(pg.db, v2) == 1  # only step 2 runs
        assert migrate(pg.db, v2) == 2  # nothing left to do
        with pytest.raises(SchemaError, match="version 2, newer than this carnb understands"):
            migrate(pg.db, v1)
        with pg.db.transaction() as conn:
            cols = conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'demo' "
                "ORDER BY ordinal_position"
            ).fetchall()
        assert [c[0] for c in cols] == ["a", "b"]
    finally:
        pg.close()


def test_a_version_1_run_store_gains_forked_from_and_keeps_its_runs(postgres: Any) -> None:
    from carnb.pgstore.runs_sql import SCHEMA as RUNS

    url = postgres.create_database(f"empty{next(_names)}")
    pg = PostgresStore(parse_store(url)).open()
    try:
        migrate(pg.db, Component(RUNS.name, RUNS.steps[:1]))  # a store written by carnb before
        with pg.db.transaction() as conn:
            conn.execute(
                "INSERT INTO carnb_runs (run_id, agent_id, intent, status, started_at, "
                "next_index) VALUES ('run-old', 'a', 'x', 'completed', 1.0, 1)"
            )
    finally:
        pg.close()
    pg = PostgresStore(parse_store(url)).open()
    try:
        store = pg.runs()
        (old,) = store.list_runs(HOST, "a")["runs"]
        assert old["run_id"] == "run-old" and old["forked_from"] is None
        fork = store.start(
            HOST, intent="y", agent_id="a", forked_from={"run_id": "run-old", "turn": 1}
        )
        listed = {r["run_id"]: r for r in store.list_runs(HOST, "a")["runs"]}
        assert listed[fork["run_id"]]["forked_from"] == {"run_id": "run-old", "turn": 1}
    finally:
        pg.close()

"""Fixtures for the run store tests: a real SQLite file in tmp_path, or a PostgreSQL store
(a database of its own on the session's throw-away server); ``store`` runs a test on both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from carnb.runs import RunStore


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "runs.sqlite3"


@pytest.fixture
def sqlite_store(db_path: Path) -> Iterator[RunStore]:
    s = RunStore(db_path)
    yield s
    s.close()


@pytest.fixture
def pg_run_store(pg_url: str) -> Iterator[RunStore]:
    from carnb.pgstore.setting import parse_store
    from carnb.pgstore.store import PostgresStore

    pg = PostgresStore(parse_store(pg_url)).open()
    store = pg.runs()
    pg.listen()
    yield store
    pg.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> RunStore:
    name = "sqlite_store" if request.param == "sqlite" else "pg_run_store"
    s: RunStore = request.getfixturevalue(name)
    return s

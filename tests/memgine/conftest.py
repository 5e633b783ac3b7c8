"""Fixtures for the memgine tests: real graphs on both stores, no sockets, no loop.

``graph`` and ``open_graph`` run a test on SQLite (a real file in tmp_path) and on PostgreSQL
(a database of its own on the session's throw-away server, marker ``postgres``), so both
stores pass one suite. Tests of what only SQLite has (files, schema migration) use
``sqlite_graph`` or build ``Memgine(path)`` themselves."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from carnb.memgine import Memgine, MemoryHome

DATA = Path(__file__).parent / "data"

OpenGraph = Callable[..., Memgine]


@pytest.fixture
def sqlite_graph(tmp_path: Path) -> Iterator[Memgine]:
    """A persistent graph in a real SQLite file."""
    g = Memgine(tmp_path / "graph.sqlite3")
    yield g
    g.close()


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Any]:
    """A PostgreSQL store (``PostgresStore``) on a database of this test's own."""
    from carnb.pgstore.setting import parse_store
    from carnb.pgstore.store import PostgresStore

    pg = PostgresStore(parse_store(pg_url)).open()
    pg.graphs()
    yield pg
    pg.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def open_graph(
    store_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[OpenGraph]:
    """``open_graph(name="graph")``: a new engine on the persistent graph ``name`` of the
    test's store (another engine on the same name sees the same facts, like a second process
    or server); every engine opened is closed after the test."""
    opened: list[Memgine] = []
    pg = request.getfixturevalue("pg_store") if store_kind == "postgres" else None

    def make(name: str = "graph") -> Memgine:
        if pg is None:
            g = Memgine(tmp_path / f"{name}.sqlite3")
        else:
            g = Memgine(backend=pg.graphs().backend("agents", name))
        opened.append(g)
        return g

    yield make
    for g in opened:
        g.close()


@pytest.fixture
def graph(open_graph: OpenGraph) -> Memgine:
    """A persistent graph on each store."""
    return open_graph()


@pytest.fixture
def mem() -> Iterator[Memgine]:
    """An ephemeral (in-memory) graph."""
    g = Memgine()
    yield g
    g.close()


@pytest.fixture
def home(tmp_path: Path) -> Iterator[MemoryHome]:
    h = MemoryHome(tmp_path / "carnb-home")
    yield h
    h.close()


def ids(rows: list[dict]) -> list[str]:
    return [row["fact_id"] for row in rows]

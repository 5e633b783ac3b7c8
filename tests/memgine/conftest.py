"""Fixtures for the memgine tests: real SQLite graph files in tmp_path, no sockets, no loop."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from carnb.memgine import Memgine, MemoryHome

DATA = Path(__file__).parent / "data"


@pytest.fixture
def graph(tmp_path: Path) -> Iterator[Memgine]:
    """A persistent graph in a real SQLite file."""
    g = Memgine(tmp_path / "graph.sqlite3")
    yield g
    g.close()


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

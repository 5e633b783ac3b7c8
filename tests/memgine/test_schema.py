"""Graph files across schema versions: the version lives in ``PRAGMA user_version``
(:mod:`carnb.sqlite`); files written before that, and newer or foreign files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from carnb.errors import CarnbError
from carnb.memgine import Memgine
from carnb.memgine.store import SCHEMA_VERSION
from carnb.memgine.text import MAX_KEY_CHARS

LONG_WORD = "x" * 40 + "y" * 60  # longer than an index key may be


def _user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def _make_version_1(path: Path) -> None:
    """Rewrite a graph file the way carnb wrote it before user_version: a schema tag in
    ``meta``, the whole long word as its index key, and facts left pending."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE facts SET stems = replace(stems, ?, ?)", (_bounded_key(conn), LONG_WORD))
    conn.execute("INSERT INTO facts_fts(facts_fts) VALUES ('rebuild')")
    conn.execute("UPDATE meta SET value = 1 WHERE key = 'indexed_upto'")
    conn.execute("INSERT INTO meta(key, value) VALUES ('schema', 'carnb.memgine.sqlite/1')")
    conn.execute("PRAGMA user_version = 0")
    conn.close()


def _bounded_key(conn: sqlite3.Connection) -> str:
    (stems,) = conn.execute("SELECT stems FROM facts WHERE fact_id = 'long'").fetchone()
    (key,) = [k for k in stems.split(" ") if k.startswith("xxx")]
    return str(key)


def test_a_version_1_graph_is_migrated_and_long_words_are_rekeyed(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    g = Memgine(path)
    g.add_fact("blob", f"holds {LONG_WORD} inside", fact_id="long")
    g.add_fact("other", "a short fact", fact_id="short")
    g.close()
    _make_version_1(path)

    g = Memgine(path)
    try:
        assert _user_version(path) == SCHEMA_VERSION
        g.check()  # index, facts and count agree
        assert [f["fact_id"] for f in g.query(LONG_WORD)] == ["long"]
        assert [f["fact_id"] for f in g.query("short")] == ["short"]
        conn = sqlite3.connect(path)
        longest = conn.execute("SELECT max(length(term)) FROM facts_vocab").fetchone()[0]
        conn.close()
        assert longest <= MAX_KEY_CHARS
    finally:
        g.close()


def test_a_newer_graph_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite3"
    Memgine(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 7")
    conn.close()
    before = path.read_bytes()
    with pytest.raises(CarnbError, match="schema version 7.*upgrade carnb"):
        Memgine(path)
    assert path.read_bytes() == before


def test_another_sqlite_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "foreign.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(CarnbError, match="not a carnb memory graph"):
        Memgine(path)
    assert path.read_bytes() == before


def test_a_version_3_graph_gains_provenance(tmp_path: Path) -> None:
    path = tmp_path / "v3.sqlite3"
    g = Memgine(path)
    g.add_fact("db", "postgres 16", provenance={"session_kind": "notebook"})
    g.close()
    with sqlite3.connect(path) as conn:  # what a version 3 file looks like
        conn.execute("ALTER TABLE facts DROP COLUMN provenance")
        conn.execute("PRAGMA user_version = 3")
    conn.close()
    g = Memgine(path)
    assert g.facts()[0]["provenance"] == {}  # written before carnb recorded it
    g.add_fact("db", "postgres 17", provenance={"session_kind": "socket"})
    assert g.query("postgres 17", 1)[0]["provenance"]["session_kind"] == "socket"
    g.check()
    g.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
    conn.close()

"""Restoring a deleted fact (memory.restore, the explorer's undo of a delete): the fact comes
back as it was, supersession links included, on both stores."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from carnb.errors import InvalidParams
from carnb.memgine import Memgine


def links(g: Memgine) -> dict[str, Any]:
    """fact id -> the id of the fact that superseded it (None: valid), every stored fact."""
    return {f["fact_id"]: f["superseded_by"] for f in g.facts()}


def test_restoring_a_middle_fact_puts_the_chain_back(graph: Memgine) -> None:
    graph.add_fact("db", "postgres 14", fact_id="v1", tags=["ops"], confidence=0.4)
    graph.add_fact("db", "postgres 15", fact_id="v2", supersedes=["v1"], tags=["ops", "x"])
    graph.add_fact("db", "postgres 16", fact_id="v3", supersedes=["v2"])
    before = {f["fact_id"]: f for f in graph.facts()}
    graph.delete("v2")
    assert links(graph) == {"v1": "v3", "v3": None}  # the delete passed v1 to v3
    out = graph.restore("v2")
    assert out == {
        "id": "v2", "restored": True, "superseded_by": "v3", "supersedes": ["v1"],
        "fact_count": 1,
    }  # fmt: skip
    assert links(graph) == {"v1": "v2", "v2": "v3", "v3": None}
    again = {f["fact_id"]: f for f in graph.facts()}
    assert list(again) == ["v1", "v2", "v3"]  # back in its place in the creation order
    assert again["v2"] == before["v2"]  # tags, source, time and provenance as they were
    assert [r["fact_id"] for r in graph.history(fact_id="v1")] == ["v3", "v2", "v1"]
    assert graph.fact_count() == 1
    assert [r["fact_id"] for r in graph.query("postgres", 5)] == ["v3"]
    assert graph.related("v2") == ["v1", "v3"]  # the subject's chain runs through it again
    graph.check()


def test_restoring_a_valid_correction_supersedes_what_it_replaced_again(graph: Memgine) -> None:
    graph.add_fact("deploy", "fridays", fact_id="old1")
    graph.add_fact("deploy", "fridays at noon", fact_id="old2")
    graph.add_fact("deploy", "never on fridays", fact_id="fix", supersedes=["deploy"])
    graph.add_fact("other", "unrelated memo", fact_id="later")
    graph.delete("fix")
    assert graph.fact_count() == 3  # the correction withdrawn: both old facts valid again
    out = graph.restore("fix")
    assert (out["superseded_by"], out["supersedes"]) == (None, ["old1", "old2"])
    assert links(graph) == {"old1": "fix", "old2": "fix", "fix": None, "later": None}
    assert graph.fact_count() == 2
    assert [r["fact_id"] for r in graph.query("fridays", 5)] == ["fix"]
    assert "old1" not in graph.build_context("deploy fridays")
    graph.check()


def test_a_restore_keeps_what_changed_since_the_delete(graph: Memgine) -> None:
    graph.add_fact("db", "postgres 14", fact_id="a")
    graph.add_fact("db", "postgres 15", fact_id="b", supersedes=["a"])
    graph.delete("b")
    graph.add_fact("db", "mysql", fact_id="c", supersedes=["a"])  # a moved on meanwhile
    out = graph.restore("b")
    assert out["supersedes"] == []  # a is c's now, and stays so
    assert links(graph)["a"] == "c"
    graph.check()


def test_the_newest_fact_restored_after_its_rowid_was_reused_comes_back_newest(
    graph: Memgine,
) -> None:
    graph.add_fact("x", "one", fact_id="x1")
    graph.add_fact("x", "two", fact_id="x2", supersedes=["x1"])
    graph.delete("x2")
    graph.add_fact("y", "three", fact_id="y1")  # may take x2's old place
    out = graph.restore("x2")
    assert out["supersedes"] == ["x1"]
    assert links(graph) == {"x1": "x2", "y1": None, "x2": None}
    graph.check()


def test_a_restored_pin_shows_in_the_context_again(graph: Memgine) -> None:
    graph.add_fact("wifi", "password in the vault", fact_id="w")
    graph.pin("w")
    graph.delete("w")
    assert "[w]" not in graph.build_context("kafka")
    graph.restore("w")
    assert "[w]" in graph.build_context("kafka")


def test_restore_refuses_a_stored_or_unknown_fact_and_leaves_the_log(graph: Memgine) -> None:
    graph.add_fact("a", "one", fact_id="a1")
    with pytest.raises(InvalidParams, match="is stored"):
        graph.restore("a1")
    with pytest.raises(InvalidParams, match="no deleted fact 'nope'"):
        graph.restore("nope")
    graph.delete("a1")
    assert [d["fact_id"] for d in graph.diff(0)["deleted"]] == ["a1"]
    graph.restore("a1")
    assert graph.diff(0)["deleted"] == []  # the deletion is undone, not a new change
    with pytest.raises(InvalidParams, match="is stored"):
        graph.restore("a1")


def test_a_deletion_logged_by_schema_4_restores_as_a_new_valid_fact(tmp_path: Path) -> None:
    path = tmp_path / "v4.sqlite3"
    g = Memgine(path)
    g.add_fact("db", "postgres 14", fact_id="a")
    g.add_fact("db", "postgres 15", fact_id="b", supersedes=["a"])
    g.delete("b")
    g.close()
    with sqlite3.connect(path) as conn:  # what a version 4 file looks like
        conn.execute("ALTER TABLE deletions DROP COLUMN kept")
        conn.execute("PRAGMA user_version = 4")
    conn.close()
    g = Memgine(path)
    out = g.restore("b", provenance={"session_kind": "notebook"})
    assert (out["superseded_by"], out["supersedes"]) == (None, [])
    assert g.query("postgres 15", 1)[0]["provenance"]["session_kind"] == "notebook"
    g.check()
    g.close()


def test_a_fact_restored_among_indexed_facts_is_indexed_again(graph: Memgine) -> None:
    graph.add_fact("db", "postgres 14", fact_id="old")
    graph.add_fact("wifi", "the password is in the vault", fact_id="w")
    graph.add_fact("db", "postgres 15", fact_id="new", supersedes=["old"])
    for i in range(40):  # past a full-text index batch: the first facts are indexed
        graph.add_fact(f"note{i}", f"memo number {i}")
    graph.delete("w")
    graph.delete("old")
    graph.restore("w")
    graph.restore("old")
    assert [r["fact_id"] for r in graph.query("vault password", 1)] == ["w"]
    assert [r["fact_id"] for r in graph.query("postgres", 5)] == ["new"]
    assert links(graph)["old"] == "new"
    graph.check()  # the index holds exactly the valid facts

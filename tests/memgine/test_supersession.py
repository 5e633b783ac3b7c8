"""Supersession: a newer fact replaces older ones; they stay as history but never
come back from retrieval; the chain survives persist/load, a reopen and a schema migration."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from carnb.errors import CarnbError, InvalidParams
from carnb.memgine import Memgine
from carnb.memgine.store import SCHEMA_VERSION

from .conftest import OpenGraph, ids


def contexts(g: Memgine, query: str) -> list[str]:
    return [g.build_context(query), g.build_context_fast(query)]


def history_ids(g: Memgine, **kw: str) -> list[str]:
    return ids(g.history(**kw))


def test_supersede_by_id_hides_the_old_fact_everywhere(graph: Memgine) -> None:
    graph.add_fact("deploy_target", "Heroku dynos", fact_id="old")
    graph.add_fact("region", "eu-west-1", fact_id="other")
    assert graph.query("heroku") != []
    assert graph.add_fact("deploy_target", "Cloudflare Workers", supersedes=["old"]) == 2
    assert graph.fact_count() == 2
    assert graph.query("heroku dynos deploy target", k=10)[0]["body"] == "Cloudflare Workers"
    assert "old" not in ids(graph.query("heroku dynos deploy target", k=10))
    for text in contexts(graph, "heroku dynos deploy target"):
        assert "Heroku" not in text and "Cloudflare Workers" in text
    assert history_ids(graph, fact_id="old") == ["ws-1", "old"]
    stored = {f["fact_id"]: f["superseded_by"] for f in graph.facts()}
    assert stored == {"old": "ws-1", "other": None, "ws-1": None}
    graph.check()


def test_supersede_by_subject_replaces_every_valid_fact_of_it(graph: Memgine) -> None:
    graph.add_fact("budget", "200k available", fact_id="b1")
    graph.add_fact("budget", "180k after travel", fact_id="b2")
    graph.add_fact("team", "five engineers", fact_id="t1")
    graph.add_fact("budget_corrected", "120k total", fact_id="b3", supersedes=["budget"])
    assert ids(graph.query("budget available travel", k=10)) == ["b3"]
    assert graph.fact_count() == 2
    assert history_ids(graph, subject="budget") == ["b3", "b2", "b1"]
    assert history_ids(graph, subject="team") == ["t1"]
    assert graph.history(subject="nobody") == []


def test_a_chain_of_three_keeps_only_the_newest_valid(graph: Memgine) -> None:
    graph.add_fact("db", "postgres 13", fact_id="v1")
    graph.add_fact("db", "postgres 15", fact_id="v2", supersedes=["db"])
    graph.add_fact("db", "postgres 16", fact_id="v3", supersedes=["db"])
    assert ids(graph.query("postgres db", k=10)) == ["v3"]
    chain = graph.history(subject="db")
    assert [(f["fact_id"], f["superseded_by"]) for f in chain] == [
        ("v3", None),
        ("v2", "v3"),
        ("v1", "v2"),
    ]
    assert history_ids(graph, fact_id="v1") == ["v3", "v2", "v1"]
    assert graph.fact_count() == 1
    graph.check()


def test_a_superseded_constraint_leaves_the_constraints_section(graph: Memgine) -> None:
    graph.add_fact("freeze", "no deploys this week", "constraint", fact_id="c1")
    assert "no deploys this week" in graph.build_context("anything")
    graph.add_fact("freeze", "deploys allowed after review", "constraint", supersedes=["c1"])
    for text in contexts(graph, "deploys"):
        assert text.startswith("## Constraints\n- [ws-1] freeze: deploys allowed after review")
        assert "no deploys this week" not in text


def test_spreading_activation_never_brings_back_a_superseded_fact(graph: Memgine) -> None:
    graph.add_fact("cache", "redis holds sessions", fact_id="seed")
    graph.add_fact("cache", "eviction policy lru", fact_id="linked")  # linked to "seed"
    assert "linked" in ids(graph.query("redis sessions", k=10))  # reached by activation
    graph.add_fact("eviction", "policy is lfu now", supersedes=["linked"])
    assert "linked" not in ids(graph.query("redis sessions", k=10))
    assert "eviction policy lru" not in graph.build_context("redis sessions")


def test_bad_supersedes_is_an_error_and_writes_nothing(graph: Memgine) -> None:
    graph.add_fact("a", "first fact", fact_id="a1")
    before = graph.facts()
    with pytest.raises(InvalidParams, match="'missing'.*nothing was written"):
        graph.add_fact("b", "second", fact_id="b1", supersedes=["a1", "missing"])
    for bad in ("x" * 5000, ["", "a1"], [1], {"a1": True}, ["a1"] * 65):
        with pytest.raises(InvalidParams, match="supersedes"):
            graph.add_fact("b", "second", fact_id="b1", supersedes=bad)  # type: ignore[arg-type]
    assert graph.facts() == before and graph.fact_count() == 1
    assert ids(graph.query("first fact")) == ["a1"]


def test_superseding_an_already_superseded_fact_by_id_is_a_no_op(graph: Memgine) -> None:
    graph.add_fact("x", "one", fact_id="x1")
    graph.add_fact("x", "two", fact_id="x2", supersedes=["x1"])
    assert graph.add_fact("y", "three", fact_id="y1", supersedes=["x1"]) == 2  # x2 and y1
    chain = graph.history(fact_id="x1")
    assert [(f["fact_id"], f["superseded_by"]) for f in chain] == [("x2", None), ("x1", "x2")]


def test_the_same_id_again_changes_nothing(graph: Memgine) -> None:
    graph.add_fact("x", "one", fact_id="x1")
    graph.add_fact("x", "two", fact_id="x2", supersedes=["x1"])
    assert graph.add_fact("x", "two", fact_id="x2", supersedes=["x1"]) == 1
    with pytest.raises(CarnbError, match="different content"):
        graph.add_fact("x", "other", fact_id="x2")


def test_deleting_a_replacement_brings_back_what_it_replaced(graph: Memgine) -> None:
    graph.add_fact("db", "postgres 13", fact_id="v1")
    graph.add_fact("db", "postgres 15", fact_id="v2", supersedes=["db"])
    graph.add_fact("db", "postgres 16", fact_id="v3", supersedes=["db"])
    graph.delete("v2")  # the middle of the chain: v1 is now superseded by v3
    assert history_ids(graph, subject="db") == ["v3", "v1"]
    assert ids(graph.query("postgres", k=10)) == ["v3"]
    graph.delete("v3")  # the valid end: v1 is valid again
    assert ids(graph.query("postgres", k=10)) == ["v1"]
    assert graph.fact_count() == 1
    graph.check()


def test_history_needs_exactly_one_of_subject_and_fact_id(graph: Memgine) -> None:
    with pytest.raises(InvalidParams):
        graph.history()
    with pytest.raises(InvalidParams):
        graph.history(subject="a", fact_id="b")
    assert graph.history(fact_id="unknown") == []


def test_consolidate_ignores_superseded_duplicates(graph: Memgine) -> None:
    graph.add_fact("tz", "utc", fact_id="t1")
    graph.add_fact("tz", "cet", fact_id="t2", supersedes=["t1"])
    graph.add_fact("tz", "utc", fact_id="t3", supersedes=["t2"])  # utc again, as a new fact
    report = graph.consolidate()
    assert report["duplicates_merged"] == 0 and report["contradictions_found"] == 0
    assert ids(graph.query("utc", k=10)) == ["t3"]


def _chain(g: Memgine) -> None:
    g.add_fact("db", "postgres 13", fact_id="v1")
    g.add_fact("db", "postgres 15", fact_id="v2", supersedes=["db"])
    g.add_fact("rule", "never drop tables", "constraint", fact_id="c1")
    g.add_fact("rule", "drop tables only with a backup", "constraint", supersedes=["c1"])


def test_persist_and_load_keep_the_chain(graph: Memgine, tmp_path: Path) -> None:
    _chain(graph)
    path = tmp_path / "snap.json"
    assert graph.persist(path) == 4
    rows = json.loads(path.read_text())["facts"]
    assert [r.get("superseded_by") for r in rows] == ["v2", None, "ws-1", None]
    other = Memgine()
    try:
        assert other.load(path) == 4
        assert other.history(subject="db") == graph.history(subject="db")
        assert other.fact_count() == 2
        assert ids(other.query("postgres", k=10)) == ["v2"]
        assert "never drop tables" not in other.build_context("tables")
        other.check()
    finally:
        other.close()


def test_a_file_whose_chain_points_nowhere_or_backwards_is_refused(
    graph: Memgine, tmp_path: Path
) -> None:
    graph.add_fact("keep", "this stays", fact_id="k")
    for link in ("nope", "a"):
        path = tmp_path / f"bad-{link}.json"
        facts = [
            {"fact_id": "a", "subject": "s", "body": "one"},
            {"fact_id": "b", "subject": "s", "body": "two", "superseded_by": link},
        ]
        path.write_text(json.dumps({"facts": facts}))
        with pytest.raises(CarnbError, match="superseded_by"):
            graph.load(path)
    assert ids(graph.facts()) == ["k"]


def test_the_chain_survives_closing_and_reopening_the_graph(open_graph: OpenGraph) -> None:
    g = open_graph()
    _chain(g)
    chain = g.history(subject="db")
    g.close()
    g = open_graph()
    assert g.history(subject="db") == chain
    assert ids(g.query("postgres", k=10)) == ["v2"]
    assert g.fact_count() == 2
    g.check()


def _make_version_2(path: Path) -> None:
    """Rewrite a graph file the way carnb version 2 wrote it: no ``superseded_by`` column and
    the full-text index over the ``facts`` table itself (and no index of pinned facts)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(
        """
        DROP TABLE facts_vocab; DROP TABLE facts_fts; DROP VIEW valid_facts;
        DROP INDEX facts_superseded; DROP INDEX facts_pinned;
        ALTER TABLE facts DROP COLUMN superseded_by;
        CREATE VIRTUAL TABLE facts_fts USING fts5(
            stems, content='facts', content_rowid='rowid', detail='none', columnsize=0,
            tokenize='unicode61 remove_diacritics 0');
        CREATE VIRTUAL TABLE facts_vocab USING fts5vocab(facts_fts, 'row');
        INSERT INTO facts_fts(facts_fts) VALUES ('rebuild');
        PRAGMA user_version = 2;
        """
    )
    conn.execute(
        "UPDATE meta SET value = (SELECT max(rowid) FROM facts) WHERE key = 'indexed_upto'"
    )
    conn.close()


def test_a_version_2_graph_migrates_and_can_supersede(tmp_path: Path) -> None:
    path = tmp_path / "v2.sqlite3"
    g = Memgine(path)
    for i in range(40):  # more than one index batch
        g.add_fact(f"s{i}", f"fact number {i} about kafka", fact_id=f"f{i}")
    g.close()
    _make_version_2(path)
    g = Memgine(path)
    try:
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        conn.close()
        g.check()
        assert g.fact_count() == 40
        assert ids(g.query("number 7", k=1)) == ["f7"]
        g.add_fact("s7", "fact seven replaced", supersedes=["f7"])
        assert "f7" not in ids(g.query("number 7 kafka", k=50))
        g.check()
    finally:
        g.close()

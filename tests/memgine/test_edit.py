"""Editing facts: edit (a supersession), pin and unpin, on both stores."""

from __future__ import annotations

import time
from typing import Any

import pytest

from carnb.errors import InvalidParams
from carnb.memgine import Memgine
from carnb.memgine.engine import RECENT_FACTS
from carnb.pgstore.memgine_sql import PINNABLE, PgGraphTx, head
from tests.memgine.conftest import OpenGraph


def test_an_edit_supersedes_the_fact_and_keeps_its_kind_tags_and_history(graph: Memgine) -> None:
    graph.add_fact("deploy", "deploys on tuesday", "knowledge", fact_id="d1", tags=["ops"])
    out = graph.edit("d1", "deploys on wednesday", provenance={"action": "edit"})
    assert out["replaces"] == "d1" and out["fact_count"] == 1
    new = graph.query("deploys", 1)[0]
    assert new["fact_id"] == out["id"] and new["body"] == "deploys on wednesday"
    assert (new["kind"], new["tags"], new["subject"]) == ("knowledge", ["ops"], "deploy")
    assert new["provenance"]["action"] == "edit"
    chain = graph.history(fact_id="d1")
    assert [(r["fact_id"], r["superseded_by"]) for r in chain] == [
        (out["id"], None), ("d1", out["id"])]  # fmt: skip
    graph.delete(out["id"])  # undoing the edit brings the old text back
    assert graph.query("deploys", 1)[0]["body"] == "deploys on tuesday"
    with pytest.raises(InvalidParams, match="no fact 'nope'"):
        graph.edit("nope", "x")


def test_an_old_fact_cannot_be_edited(graph: Memgine) -> None:
    graph.add_fact("a", "one", fact_id="a1")
    graph.edit("a1", "two")
    with pytest.raises(InvalidParams, match="superseded"):
        graph.edit("a1", "three")


def test_a_pinned_fact_is_in_every_context_until_unpinned(graph: Memgine) -> None:
    graph.add_fact("wifi", "the office wifi password is in the vault", fact_id="pin-me")
    for i in range(RECENT_FACTS + 5):
        graph.add_fact(f"note{i}", f"memo {i}")
    assert "pin-me" not in graph.build_context("kafka")
    assert graph.pin("pin-me") == {"id": "pin-me", "pinned": True, "changed": True}
    assert graph.pin("pin-me")["changed"] is False
    text = graph.build_context("kafka")
    assert text.splitlines()[-1].startswith("- [pin-me] wifi:")  # last: kept longest
    assert text.count("pin-me") == 1
    assert graph.pin("pin-me", False)["changed"] is True
    assert "pin-me" not in graph.build_context("kafka")
    assert graph.query("wifi", 1)[0]["tags"] == []


def test_a_pin_made_by_another_engine_shows_at_once(open_graph: OpenGraph) -> None:
    one, two = open_graph(), open_graph()
    one.add_fact("wifi", "password in the vault", fact_id="w")
    for i in range(RECENT_FACTS):
        one.add_fact(f"n{i}", f"memo {i}")
    assert "[w]" not in two.build_context("kafka")
    one.pin("w")
    assert "[w]" in two.build_context("kafka")  # another process or server pinned it
    edited = one.edit("w", "password in the new vault")["id"]
    ctx = two.build_context("kafka")  # the edited copy keeps the pin, the old text is gone
    assert "[w]" not in ctx and f"[{edited}] wifi: password in the new vault" in ctx


def test_diff_lists_added_superseded_and_deleted_since_a_time(graph: Memgine) -> None:
    graph.add_fact("old", "written before", fact_id="before")
    graph.add_fact("gone", "deleted later", fact_id="gone")
    since = time.time()
    graph.add_fact("new", "written after", fact_id="after")
    edited = graph.edit("before", "rewritten after")["id"]
    graph.delete("gone", {"session_kind": "notebook", "action": "delete"})
    out = graph.diff(since)
    assert [r["fact_id"] for r in out["added"]] == ["after", edited]
    assert [(r["fact_id"], r["superseded_by"]) for r in out["superseded"]] == [("before", edited)]
    assert [(d["fact_id"], d["body"]) for d in out["deleted"]] == [("gone", "deleted later")]
    assert out["deleted"][0]["provenance"]["session_kind"] == "notebook"
    assert out["deleted"][0]["deleted_at"] >= since
    later = graph.diff(time.time() + 1)
    assert later["added"] == later["superseded"] == later["deleted"] == []
    with pytest.raises(InvalidParams, match="since"):
        graph.diff("yesterday")  # type: ignore[arg-type]


@pytest.mark.postgres
def test_postgresql_reads_the_pinned_facts_through_their_index(pg_store: Any) -> None:
    g = Memgine(backend=pg_store.graphs().backend("agents", "pins"))
    g.add_fact("wifi", "password in the vault", fact_id="w")
    g.pin("w")
    with pg_store.db.transaction() as conn:
        conn.execute("SET LOCAL enable_seqscan = off")
        graph_id = conn.execute("SELECT graph_id FROM memgine_graphs WHERE name = 'pins'")
        tx = PgGraphTx(conn, head(conn, graph_id.fetchone()[0], lock=False), False)
        assert [r[1] for r in tx.pinned_rows()] == ["w"]
        plan = conn.execute(
            "EXPLAIN SELECT rowid FROM memgine_facts "
            + PINNABLE.replace("%", "%%")
            + " AND graph_id = %s",
            (tx.g,),
        ).fetchall()
    assert "memgine_facts_pinned" in " ".join(r[0] for r in plan)
    g.close()

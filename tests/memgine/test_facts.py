"""Writing facts: ids, idempotency, conflicts, links, delete, counts and input validation."""

from __future__ import annotations

import pytest

from carnb.errors import INTERNAL_ERROR, CarnbError, InvalidParams
from carnb.memgine import Memgine
from carnb.memgine.validate import MAX_BODY_BYTES


def fact_ids(g: Memgine) -> list[str]:
    return [f["fact_id"] for f in g.facts()]


def test_add_returns_count_and_mints_ws_ids(graph: Memgine) -> None:
    assert graph.add_fact("auth", "tokens expire after an hour") == 1
    assert graph.add_fact("db", "pool size is 20", "constraint") == 2
    assert fact_ids(graph) == ["ws-1", "ws-2"]
    first = graph.facts()[0]
    assert first["kind"] == "pattern" and first["source"] == "user" and first["tags"] == []
    assert graph.facts()[1]["kind"] == "constraint"


def test_fields_are_stored_as_given(graph: Memgine) -> None:
    graph.add_fact(
        "deploy", "ship on tuesday", "preference", fact_id="d-1", tags=["b", "a", "b2"],
        source="agent:planner", confidence=0.25,
    )  # fmt: skip
    (row,) = graph.facts()
    assert row["fact_id"] == "d-1"
    assert row["tags"] == ["b", "a", "b2"]  # order kept
    assert row["source"] == "agent:planner"
    assert row["confidence"] == 0.25
    assert row["created_at"] > 0


def test_none_means_the_default_for_optional_fields(graph: Memgine) -> None:
    graph.add_fact("s", "b", None, fact_id=None, tags=None, source=None, confidence=None)
    row = graph.facts()[0]
    assert (row["fact_id"], row["kind"], row["tags"], row["source"], row["confidence"]) == (
        "ws-1", "pattern", [], "user", None,
    )  # fmt: skip


def test_same_id_same_content_is_idempotent(graph: Memgine) -> None:
    assert graph.add_fact("auth", "tokens expire", fact_id="a1") == 1
    assert graph.add_fact("auth", "tokens expire", fact_id="a1") == 1
    assert graph.add_fact("auth", "tokens expire", "constraint", fact_id="a1") == 1
    assert fact_ids(graph) == ["a1"]
    assert graph.facts()[0]["kind"] == "pattern"  # nothing changed


def test_same_id_other_content_is_an_error_and_changes_nothing(graph: Memgine) -> None:
    graph.add_fact("auth", "tokens expire", fact_id="a1")
    with pytest.raises(CarnbError) as err:
        graph.add_fact("auth", "tokens never expire", fact_id="a1")
    assert not isinstance(err.value, InvalidParams)
    assert err.value.code == INTERNAL_ERROR
    assert "a1" in err.value.message and "different content" in err.value.message
    assert graph.fact_count() == 1
    assert graph.facts()[0]["body"] == "tokens expire"
    with pytest.raises(CarnbError):
        graph.add_fact("other subject", "tokens expire", fact_id="a1")


def test_minted_ids_never_shadow_a_callers_ws_id(graph: Memgine) -> None:
    graph.add_fact("mine", "caller chose this id", fact_id="ws-2")
    graph.add_fact("mine", "and this one", fact_id="ws-7")
    for i in range(8):
        graph.add_fact("auto", f"minted fact {i}")
    ids = fact_ids(graph)
    assert len(ids) == len(set(ids)) == 10
    assert ids.count("ws-2") == 1 and ids.count("ws-7") == 1
    bodies = {f["fact_id"]: f["body"] for f in graph.facts()}
    assert bodies["ws-2"] == "caller chose this id"
    assert bodies["ws-7"] == "and this one"
    assert "ws-1" in ids and "ws-10" in ids  # 2 and 7 were skipped


def test_same_subject_twice_gives_two_linked_facts(graph: Memgine) -> None:
    graph.add_fact("billing", "invoices are generated monthly")
    graph.add_fact("other", "unrelated")
    graph.add_fact("billing", "stripe webhooks retry three times")
    assert graph.fact_count() == 3
    assert graph.related("ws-1") == ["ws-3"]
    assert graph.related("ws-3") == ["ws-1"]
    assert graph.related("ws-2") == []
    assert graph.related("nope") == []


def test_delete_removes_fact_links_and_index_entries(graph: Memgine) -> None:
    graph.add_fact("billing", "invoices monthly")
    graph.add_fact("billing", "zebracorn webhooks retry")
    graph.add_fact("billing", "refunds take five days")
    assert [r["fact_id"] for r in graph.query("zebracorn")][0] == "ws-2"
    report = graph.delete("ws-2")
    assert report == {"id": "ws-2", "deleted": True, "kind": "pattern", "fact_count": 2}
    assert graph.query("zebracorn") == []  # gone from the full-text index
    assert "ws-2" not in graph.related("ws-1") and "ws-2" not in graph.related("ws-3")
    assert graph.related("ws-1") == ["ws-3"]  # the subject chain closes over the gap
    assert all(r["fact_id"] != "ws-2" for r in graph.query("invoices refunds", k=10))
    assert graph.fact_count() == 2


def test_delete_unknown_id_reports_not_deleted(graph: Memgine) -> None:
    graph.add_fact("a", "b")
    assert graph.delete("missing") == {
        "id": "missing", "deleted": False, "kind": None, "fact_count": 1,
    }  # fmt: skip


def test_deleted_id_can_be_reused(graph: Memgine) -> None:
    graph.add_fact("a", "first", fact_id="x")
    graph.delete("x")
    assert graph.add_fact("a", "second", fact_id="x") == 1
    assert graph.facts()[0]["body"] == "second"


def test_fact_count_matches_the_stored_facts(graph: Memgine) -> None:
    for i in range(5):
        graph.add_fact("s", f"body {i}")
    graph.add_fact("s", "body 0")  # a duplicate, merged by consolidate
    graph.delete("ws-2")
    assert graph.fact_count() == 5 == len(graph.facts())
    graph.consolidate()
    assert graph.fact_count() == 4 == len(graph.facts())


def test_facts_pagination_in_creation_order(graph: Memgine) -> None:
    for i in range(7):
        graph.add_fact(f"s{i % 2}", f"body {i}")
    page = graph.facts(limit=3, offset=2)
    assert [f["body"] for f in page] == ["body 2", "body 3", "body 4"]
    assert graph.facts(limit=0) == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"subject": "", "body": "b"}, "subject"),
        ({"subject": "   ", "body": "b"}, "subject"),
        ({"subject": 5, "body": "b"}, "subject"),
        ({"subject": None, "body": "b"}, "subject"),
        ({"subject": "s", "body": None}, "body"),
        ({"subject": "s", "body": ["x"]}, "body"),
        ({"subject": "s", "body": "b", "kind": ""}, "kind"),
        ({"subject": "s", "body": "b", "kind": 3}, "kind"),
        ({"subject": "s", "body": "b", "fact_id": ""}, "fact_id"),
        ({"subject": "s", "body": "b", "fact_id": 12}, "fact_id"),
        ({"subject": "s", "body": "b", "tags": "x"}, "tags"),
        ({"subject": "s", "body": "b", "tags": ["ok", 1]}, "tags[1]"),
        ({"subject": "s", "body": "b", "source": ""}, "source"),
        ({"subject": "s", "body": "b", "confidence": 1.5}, "confidence"),
        ({"subject": "s", "body": "b", "confidence": "high"}, "confidence"),
        ({"subject": "s", "body": "b", "confidence": True}, "confidence"),
        ({"subject": "s", "body": "b", "confidence": float("nan")}, "confidence"),
        ({"subject": "s\ud800", "body": "b"}, "subject"),
    ],
)
def test_bad_input_names_the_field_and_stores_nothing(
    graph: Memgine, kwargs: dict, field: str
) -> None:
    graph.add_fact("keep", "me")
    with pytest.raises(InvalidParams) as err:
        graph.add_fact(**kwargs)
    assert err.value.message.startswith(f"invalid params: {field} ")
    assert graph.fact_count() == 1


def test_body_of_one_mib_is_stored_and_larger_is_refused(graph: Memgine) -> None:
    body = ("needleword " + "alpha beta gamma delta epsilon " * 40000)[:MAX_BODY_BYTES]
    assert len(body.encode()) == MAX_BODY_BYTES
    assert graph.add_fact("big", body) == 1
    assert graph.facts()[0]["body"] == body
    assert graph.query("needleword")[0]["fact_id"] == "ws-1"
    with pytest.raises(InvalidParams) as err:
        graph.add_fact("bigger", body + "y")
    assert "body is 1048577 bytes; the limit is 1048576" in err.value.message
    assert graph.fact_count() == 1


def test_unicode_facts_round_trip(graph: Memgine) -> None:
    graph.add_fact("café/日本", "naïve façade — ünïcödé ✓ 日本語のテキスト")
    row = graph.facts()[0]
    assert row["subject"] == "café/日本"
    assert graph.query("日本語のテキスト")[0]["fact_id"] == "ws-1"
    assert graph.query("façade")[0]["fact_id"] == "ws-1"


def test_closed_graph_raises_a_clear_error_and_close_is_idempotent(open_graph) -> None:
    g = open_graph()
    g.add_fact("a", "b")
    g.close()
    g.close()
    with pytest.raises(CarnbError, match="closed"):
        g.add_fact("a", "c")
    g.start()
    assert g.fact_count() == 1
    g.close()


def test_a_file_that_is_not_a_graph_is_refused_untouched(tmp_path) -> None:
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is not a database at all" * 100)
    before = junk.read_bytes()
    with pytest.raises(CarnbError, match="not a SQLite database"):
        Memgine(junk)
    assert junk.read_bytes() == before


def test_ephemeral_graphs_are_independent() -> None:
    a, b = Memgine(), Memgine()
    a.add_fact("a", "only in a")
    assert b.fact_count() == 0 and b.query("only") == []
    assert a.persistent is False and a.path is None
    a.close()
    b.close()


def test_check_reports_a_graph_damaged_from_outside(tmp_path) -> None:
    import sqlite3

    path = tmp_path / "g.sqlite3"
    g = Memgine(path)
    for i in range(40):
        g.add_fact("s", f"fact {i}")
    g.check()
    raw = sqlite3.connect(path)
    raw.execute("DELETE FROM facts WHERE rowid = 3")  # behind the engine's back
    raw.commit()
    raw.close()
    with pytest.raises(CarnbError, match="damaged: .*full-text index.*fact_count says 40"):
        g.check()
    g.close()


@pytest.mark.postgres
def test_check_reports_a_postgresql_graph_damaged_from_outside(pg_store, pg_url) -> None:
    import psycopg

    g = Memgine(backend=pg_store.graphs().backend("agents", "g"))
    for i in range(40):
        g.add_fact("s", f"fact {i}")
    g.check()
    with psycopg.connect(pg_url) as raw:
        raw.execute("DELETE FROM memgine_facts WHERE rowid = 3")  # behind the engine's back
    damage = "damaged: fact_count says 40.*full-text index: 0 .* 3 too many"
    with pytest.raises(CarnbError, match=damage):
        g.check()
    g.close()


@pytest.mark.postgres
def test_a_nul_character_is_refused_by_postgresql_and_nothing_is_written(pg_store) -> None:
    g = Memgine(backend=pg_store.graphs().backend("agents", "g"))
    g.add_fact("s", "kept")
    with pytest.raises(InvalidParams, match="NUL.*nothing was written"):
        g.add_fact("s", "a\x00b")
    assert g.fact_count() == 1 and [f["body"] for f in g.facts()] == ["kept"]
    g.close()

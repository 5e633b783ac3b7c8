"""persist and load: round trips, replacement, accepted formats, refusals that change nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carnb.errors import CarnbError, NotFound
from carnb.memgine import Memgine

from .conftest import DATA


def snapshot(g: Memgine) -> list[tuple]:
    return [
        (f["fact_id"], f["subject"], f["body"], f["kind"], f["tags"], f["source"], f["confidence"])
        for f in g.facts()
    ]


def fill(g: Memgine) -> None:
    g.add_fact("billing", "invoices are generated monthly", tags=["finance", "ops"])
    g.add_fact("db", "never drop the users table", "constraint", source="agent:x")
    g.add_fact("billing", "stripe webhooks retry three times", confidence=0.75)
    g.add_fact("ünïcode", "naïve café ✓", fact_id="custom-1")


def test_round_trip_keeps_every_field_links_and_answers(graph: Memgine, tmp_path: Path) -> None:
    fill(graph)
    target = tmp_path / "out" / "mem.json"
    assert graph.persist(target) == 4
    data = json.loads(target.read_text(encoding="utf-8"))
    assert data["format"] == "carnb.memgine/1" and len(data["facts"]) == 4
    other = Memgine(tmp_path / "other.sqlite3")
    assert other.load(target) == 4
    assert snapshot(other) == snapshot(graph)
    assert other.related("ws-1") == ["ws-3"]
    assert without_provenance(other.query("invoices")) == without_provenance(
        graph.query("invoices")
    )
    assert other.build_context("billing") == graph.build_context("billing")
    # a snapshot is restored with its provenance; rows without one say who loaded them
    assert [f["provenance"] for f in other.facts()] == [f["provenance"] for f in graph.facts()]
    bare = tmp_path / "out" / "bare.json"
    bare.write_text(json.dumps([{"subject": "s", "body": "b"}]))
    third = Memgine(tmp_path / "third.sqlite3")
    third.load(bare, {"session_kind": "notebook"})
    said = third.facts()[0]["provenance"]
    assert said["session_kind"] == "notebook" and said["loaded_from"] == "bare.json"
    third.close()
    other.check()
    other.close()


def without_provenance(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "provenance"} for row in rows]


def test_load_replaces_rather_than_merges(graph: Memgine, tmp_path: Path) -> None:
    fill(graph)
    graph.persist(tmp_path / "a.json")
    graph.add_fact("extra", "added after the snapshot zebracorn")
    assert graph.load(tmp_path / "a.json") == 4
    assert graph.fact_count() == 4
    assert graph.query("zebracorn") == []
    assert "extra" not in {f["subject"] for f in graph.facts()}


def test_minting_continues_after_a_load(graph: Memgine, tmp_path: Path) -> None:
    path = tmp_path / "ws.json"
    path.write_text(json.dumps([{"id": "ws-41", "subject": "s", "body": "b"}]))
    graph.load(path)
    graph.add_fact("t", "new")
    assert [f["fact_id"] for f in graph.facts()] == ["ws-41", "ws-42"]


def test_missing_file_is_not_found_and_keeps_the_graph(graph: Memgine, tmp_path: Path) -> None:
    fill(graph)
    before = snapshot(graph)
    with pytest.raises(NotFound, match="no file"):
        graph.load(tmp_path / "nope.json")
    assert snapshot(graph) == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"format": "carnb.memgine/1", "facts": [', "not valid JSON"),
        (b'["\xc3\x28"]', "not UTF-8"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
        (b"42", "expected a JSON array of facts"),
        (b'{"rows": []}', "expected a JSON array of facts"),
        (b'{"format": "something/else", "facts": []}', "unknown format"),
        (b'{"format": "carnb.memgine/9", "facts": []}', "newer than this carnb"),
        (b"[1, 2]", "facts[0] must be an object"),
        (b'[{"subject": "s"}]', "facts[0] has no body (or value)"),
        (b'[{"subject": "", "body": "b"}]', "facts[0]: subject must be a non-empty string"),
        (b'[{"subject": "s", "body": "b", "tags": "x"}]', "facts[0]: tags must be a list"),
        (
            b'[{"id": "a", "subject": "s", "body": "b"}, {"id": "a", "subject": "s", "body": "c"}]',
            "facts[1] reuses id 'a' with different content",
        ),
    ],
)
def test_bad_files_are_refused_and_keep_the_graph(
    graph: Memgine, tmp_path: Path, content: bytes, message: str
) -> None:
    fill(graph)
    before = snapshot(graph)
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(CarnbError) as err:
        graph.load(path)
    assert message in err.value.message
    assert "graph was left unchanged" in err.value.message
    assert snapshot(graph) == before
    assert graph.query("invoices")[0]["fact_id"] == "ws-1"


def test_a_directory_is_refused(graph: Memgine, tmp_path: Path) -> None:
    with pytest.raises(CarnbError, match="directory"):
        graph.load(tmp_path)
    with pytest.raises(CarnbError, match="directory"):
        graph.persist(tmp_path)


def test_the_peers_persist_format_loads(graph: Memgine) -> None:
    # Written by car-runtime 0.7.0's persist_memory: [{subject, body, kind, content_type}].
    assert graph.load(DATA / "peer07_persist.json") == 3
    facts = graph.facts()
    assert [f["fact_id"] for f in facts] == ["loaded-1", "loaded-2", "loaded-3"]
    assert [f["kind"] for f in facts] == ["pattern", "constraint", "pattern"]
    assert graph.query("login")[0]["body"] == "the login token expires after one hour"
    assert graph.build_context("x").startswith("## Constraints\n- [loaded-2] db: postgres")


def test_bare_arrays_with_key_value_rows_load(graph: Memgine, tmp_path: Path) -> None:
    rows = [
        {"key": "editor", "value": "vim"},
        {"key": "limits", "value": {"cpu": 2, "mem": "4G"}},
        {"key": 7, "value": 3.5, "kind": "preference"},
        {"subject": "s", "body": "explicit", "id": "loaded-1"},
    ]
    path = tmp_path / "kv.json"
    path.write_text(json.dumps(rows))
    assert graph.load(path) == 4
    got = [(f["fact_id"], f["subject"], f["body"], f["kind"]) for f in graph.facts()]
    assert got == [
        ("loaded-2", "editor", "vim", "pattern"),
        ("loaded-3", "limits", '{"cpu":2,"mem":"4G"}', "pattern"),
        ("loaded-4", "7", "3.5", "preference"),
        ("loaded-1", "s", "explicit", "pattern"),
    ]


def test_object_with_facts_and_no_format_tag_loads(graph: Memgine, tmp_path: Path) -> None:
    path = tmp_path / "plain.json"
    path.write_text(json.dumps({"facts": [{"subject": "a", "body": "b"}], "edges": []}))
    assert graph.load(path) == 1


def test_duplicate_rows_with_the_same_id_and_content_load_once(
    graph: Memgine, tmp_path: Path
) -> None:
    row = {"fact_id": "x", "subject": "s", "body": "b"}
    path = tmp_path / "dup.json"
    path.write_text(json.dumps([row, row]))
    assert graph.load(path) == 1


def test_empty_file_list_empties_the_graph(graph: Memgine, tmp_path: Path) -> None:
    fill(graph)
    path = tmp_path / "empty.json"
    path.write_text("[]")
    assert graph.load(path) == 0
    assert graph.fact_count() == 0 and graph.query("invoices") == []
    assert graph.build_context("x") == ""


def test_persist_replaces_atomically_and_leaves_no_temp_files(
    graph: Memgine, tmp_path: Path
) -> None:
    target = tmp_path / "snap" / "mem.json"
    target.parent.mkdir()
    target.write_text("old content")
    fill(graph)
    graph.persist(target)
    assert json.loads(target.read_text())["facts"][0]["subject"] == "billing"
    assert sorted(p.name for p in target.parent.iterdir()) == ["mem.json"]


def test_ephemeral_graph_persists_and_loads(mem: Memgine, tmp_path: Path) -> None:
    fill(mem)
    mem.persist(tmp_path / "e.json")
    fresh = Memgine()
    fresh.load(tmp_path / "e.json")
    assert snapshot(fresh) == snapshot(mem)
    fresh.close()

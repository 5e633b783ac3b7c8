"""consolidate: duplicates merged, contradictions reported but kept; lifecycle of graph files."""

from __future__ import annotations

import threading
from pathlib import Path

from carnb.memgine import Memgine


def test_duplicates_merge_into_the_oldest_and_contradictions_are_reported(
    graph: Memgine,
) -> None:
    graph.add_fact("deploy", "deploys happen on tuesday", tags=["ops"])
    graph.add_fact("deploy", "deploys happen on tuesday", tags=["release", "ops"])
    graph.add_fact("deploy", "deploys happen on tuesday")
    graph.add_fact("deploy", "deploys happen on friday")
    graph.add_fact("db", "pool size is 20")
    graph.add_fact("db", "pool size is 20")
    graph.add_fact("style", "use ruff")
    report = graph.consolidate()
    assert report["duplicates_merged"] == 3
    assert report["contradictions_found"] == 1
    assert report["fact_count"] == 4 == graph.fact_count()
    assert report["contradictions"] == [{"subject": "deploy", "fact_ids": ["ws-1", "ws-4"]}]
    facts = {f["fact_id"]: f for f in graph.facts()}
    assert sorted(facts) == ["ws-1", "ws-4", "ws-5", "ws-7"]
    assert facts["ws-1"]["tags"] == ["ops", "release"]
    # the survivor is still linked to the rest of its subject and still found
    assert graph.related("ws-1") == ["ws-4"]
    assert [r["fact_id"] for r in graph.query("tuesday")][0] == "ws-1"
    assert all(r["fact_id"] not in ("ws-2", "ws-3") for r in graph.query("deploys", k=10))
    graph.check()


def test_consolidate_is_idempotent(graph: Memgine) -> None:
    graph.add_fact("a", "same")
    graph.add_fact("a", "same")
    graph.consolidate()
    again = graph.consolidate()
    assert again["duplicates_merged"] == 0
    assert again["contradictions_found"] == 0
    assert again["fact_count"] == 1


def test_consolidate_on_an_empty_graph(mem: Memgine) -> None:
    assert mem.consolidate() == {
        "duplicates_merged": 0, "contradictions_found": 0, "fact_count": 0, "contradictions": [],
    }  # fmt: skip


def checkpoint_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("carnb-memgine-checkpoint"))


def test_closing_a_file_graph_stops_its_background_thread(tmp_path: Path) -> None:
    before = checkpoint_threads()
    g = Memgine(tmp_path / "g.sqlite3")
    for i in range(50):
        g.add_fact("s", f"fact {i}")
    assert checkpoint_threads() == before + 1
    g.close()
    assert checkpoint_threads() == before
    assert (
        not (tmp_path / "g.sqlite3-wal").exists()
        or (tmp_path / "g.sqlite3-wal").stat().st_size == 0
    )
    g.start()
    assert g.fact_count() == 50 and checkpoint_threads() == before + 1
    g.close()

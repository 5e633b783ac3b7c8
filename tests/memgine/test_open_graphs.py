"""Bounded open graphs (MemoryHome closes idle graphs, least recently used first) and a
``load`` that commits in batches while another connection writes."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from carnb.errors import GraphLimit
from carnb.memgine import Memgine, MemoryHome, bulk, home, store


@pytest.fixture
def small_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MemoryHome:
    monkeypatch.setattr(home, "MAX_OPEN_GRAPHS", 3)
    monkeypatch.setattr(home, "ADMIT_WAIT_S", 0.2)
    h = MemoryHome(tmp_path / "home")
    h.start()
    return h


def test_idle_graphs_close_least_recent_first_and_reopen_with_their_facts(
    small_home: MemoryHome,
) -> None:
    graphs = []
    for i in range(5):
        g = small_home.namespace_graph(f"ns{i}")
        g.add_fact(f"s{i}", f"fact number{i}")
        graphs.append(g)
    assert small_home.open_graphs == 3
    assert [g.closed for g in graphs] == [True, True, False, False, False]
    assert small_home.namespace_graph("ns0") is graphs[0]  # the same object while held
    assert [f["body"] for f in graphs[0].query("number0")] == ["fact number0"]
    assert graphs[0].add_fact("s0", "second") == 2
    assert small_home.open_graphs == 3
    assert graphs[2].closed  # ns2 was the least recently used open graph
    small_home.close()
    assert all(g.closed for g in graphs)


def test_graphs_in_use_are_not_closed_and_a_new_one_is_refused(small_home: MemoryHome) -> None:
    graphs = [small_home.namespace_graph(f"busy{i}") for i in range(3)]
    release = threading.Event()
    held = threading.Barrier(4)

    def use(g: Memgine) -> None:
        with g._lock:  # a call in progress on the graph
            held.wait()
            release.wait(10)

    threads = [threading.Thread(target=use, args=(g,)) for g in graphs]
    for t in threads:
        t.start()
    held.wait()
    try:
        with pytest.raises(GraphLimit, match="namespace 'one more'.*all 3 open memory graphs"):
            small_home.namespace_graph("one more")
        assert not any(g.closed for g in graphs)
    finally:
        release.set()
        for t in threads:
            t.join()
    assert small_home.namespace_graph("one more").add_fact("s", "b") == 1
    assert sum(g.closed for g in graphs) == 1


def test_load_commits_in_batches_and_keeps_writes_made_between_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk, "LOAD_BATCH", 10)
    path = tmp_path / "g.sqlite3"
    loader, other = Memgine(path), Memgine(path)
    other.add_fact("old", "replaced by the load")
    rows = [{"fact_id": f"L{i}", "subject": f"topic{i % 3}", "body": f"row{i}"} for i in range(35)]
    source = tmp_path / "facts.json"
    source.write_text(json.dumps({"facts": rows}))
    counts: list[int] = []

    def between_batches(_: float) -> None:  # the pause between two commits
        counts.append(other.fact_count())
        if len(counts) == 2:
            other.add_fact("topic1", "written meanwhile", fact_id="mid")

    monkeypatch.setattr(bulk.time, "sleep", between_batches)
    assert loader.load(source) == 35
    assert counts == [10, 20, 31]  # other connections see the graph fill up batch by batch
    assert loader.fact_count() == other.fact_count() == 36
    assert [f["fact_id"] for f in loader.query("written meanwhile", k=1)] == ["mid"]
    assert loader.query("replaced") == []
    assert "mid" in loader.related("L22") or "mid" in loader.related("L25")
    loader.check()
    loader.close()
    other.close()


def test_consolidate_merges_in_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bulk, "MERGE_BATCH", 3)
    commits: list[int] = []
    g = Memgine(tmp_path / "g.sqlite3")
    for i in range(5):
        for copy in range(3):
            g.add_fact(f"s{i}", f"body {i}", tags=[f"t{copy}"])
    g.add_fact("s0", "another body")
    real = store.SqliteTx.bump_fact_count

    def per_transaction(tx: store.SqliteTx, delta: int) -> None:  # once per merge transaction
        commits.append(delta)
        real(tx, delta)

    monkeypatch.setattr(store.SqliteTx, "bump_fact_count", per_transaction)
    report = g.consolidate()
    assert report["duplicates_merged"] == 10 and report["fact_count"] == 6 == g.fact_count()
    assert commits == [-2] * 5  # one group (3 facts) per transaction
    assert report["contradictions"] == [{"subject": "s0", "fact_ids": ["ws-1", "ws-16"]}]
    assert [f["tags"] for f in g.facts()][:5] == [["t0", "t1", "t2"]] * 5
    g.check()
    g.close()

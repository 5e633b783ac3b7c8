"""Shared graphs under threads and processes: no lost or torn facts, acknowledged facts survive
a SIGKILL of the writing process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from carnb.memgine import Memgine

from .conftest import OpenGraph

ROOT = Path(__file__).resolve().parents[2]


def body_for(fact_id: str) -> str:
    return f"payload of {fact_id} marker{fact_id.replace('-', '')} " + "x" * (len(fact_id) * 7)


def test_concurrent_writers_lose_nothing(graph: Memgine) -> None:
    threads, per_thread = 4, 150
    errors: list[BaseException] = []
    counts: list[int] = []

    def writer(t: int) -> None:
        try:
            for i in range(per_thread):
                counts.append(graph.add_fact(f"subject-{i % 5}", f"thread {t} fact {i}"))
                graph.add_fact("named", body_for(f"w{t}-{i}"), fact_id=f"w{t}-{i}")
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    total = threads * per_thread * 2
    assert graph.fact_count() == total
    facts = graph.facts()
    assert len(facts) == total
    assert len({f["fact_id"] for f in facts}) == total
    for f in facts:
        if f["subject"] == "named":
            assert f["body"] == body_for(f["fact_id"])
    assert max(counts) <= total
    graph.check()


def test_readers_never_see_half_written_facts(graph: Memgine) -> None:
    stop = threading.Event()
    acked: list[str] = []
    problems: list[str] = []

    def writer() -> None:
        for i in range(300):
            fid = f"f-{i}"
            graph.add_fact(f"topic-{i % 7}", body_for(fid), fact_id=fid)
            acked.append(fid)
        stop.set()

    def reader() -> None:
        while not stop.is_set():
            seen = list(acked)
            if seen:
                fid = seen[-1]
                rows = graph.query(f"marker{fid.replace('-', '')}", k=3)
                if not rows or rows[0]["fact_id"] != fid:
                    problems.append(f"acknowledged {fid} not found by query: {rows[:1]}")
            count = graph.fact_count()
            listed = graph.facts()
            if len(listed) < count:
                problems.append(f"count {count} > listed {len(listed)}")
            for f in listed:
                if f["body"] != body_for(f["fact_id"]):
                    problems.append(f"torn fact {f['fact_id']}")

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert problems == []
    assert graph.fact_count() == 300
    graph.check()


def test_two_connections_to_one_graph_share_facts_and_caches(open_graph: OpenGraph) -> None:
    a, b = open_graph("shared"), open_graph("shared")
    b.build_context("warm the caches")
    errors: list[BaseException] = []

    def write(g: Memgine, prefix: str) -> None:
        try:
            for i in range(100):
                g.add_fact(prefix, f"{prefix} fact {i}")
        except BaseException as exc:
            errors.append(exc)

    ta = threading.Thread(target=write, args=(a, "alpha"))
    tb = threading.Thread(target=write, args=(b, "beta"))
    ta.start(), tb.start()
    ta.join(), tb.join()
    assert errors == []
    assert a.fact_count() == b.fact_count() == 200
    assert len({f["fact_id"] for f in a.facts()}) == 200
    a.add_fact("rules", "never deploy on friday", "constraint")
    assert "never deploy on friday" in b.build_context("deploy")


WRITER = r"""
import sys
from carnb.memgine import Memgine
if sys.argv[1].startswith("postgresql://"):
    from carnb.pgstore.setting import parse_store
    from carnb.pgstore.store import PostgresStore
    g = Memgine(backend=PostgresStore(parse_store(sys.argv[1])).open().graphs().backend(
        "agents", "durable"))
else:
    g = Memgine(sys.argv[1])
i = 0
while True:
    g.add_fact("crash", f"acknowledged fact number {i}", fact_id=f"c-{i}")
    print(i, flush=True)
    i += 1
"""


def test_acknowledged_facts_survive_sigkill(
    tmp_path: Path, store_kind: str, open_graph: OpenGraph, request: pytest.FixtureRequest
) -> None:
    path = tmp_path / "durable.sqlite3"
    target = str(path) if store_kind == "sqlite" else request.getfixturevalue("pg_url")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, target],
        stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout is not None
    last = -1
    for line in proc.stdout:
        last = int(line)
        if last >= 200:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert last >= 200
    g = open_graph("durable")
    ids = {f["fact_id"] for f in g.facts()}
    assert all(f"c-{i}" in ids for i in range(last + 1))
    assert g.fact_count() == len(ids) >= last + 1
    assert g.query("number 150", k=1)[0]["fact_id"] == "c-150"
    g.check()

"""Benchmark carnb servers on a PostgreSQL store beside the SQLite default, in one run.

Usage: ``.venv/bin/python bench/bench_pgstore.py [--quick]``

Starts a throw-away PostgreSQL from the machine's binaries (:mod:`carnb.testing.postgres`;
``tools/ensure-postgresql`` installs them) and real ``python -m carnb serve`` processes
(``--no-auth``, loopback). Measures:

* append-to-notification delay: a client appends one turn through server A, a subscriber on
  server B receives the ``runs.trace.event``; from the send to the receipt. PostgreSQL: A and B
  are two servers (goal <= 50 ms median). SQLite cannot share live runs between servers, so its
  figure is A = B, one server.
* record throughput: 4 servers, one writer each (its own run, batches of 10 turns), all on one
  store: PostgreSQL, and for comparison 4 servers on one SQLite file on the local disk.
* memgine over the wire, an agent's graph on each store side by side: sequential
  ``memory.add_fact``/s, ``memory.query`` (k=5) and ``memory.build_context`` medians at 100k
  facts (10k with ``--quick``), the graph filled with ``memory.load`` from the seeded corpus
  ``bench_memgine.py`` uses (goal: PostgreSQL's query median <= 10 ms and within 3x of SQLite's),
  right after the load and steady (after SQLite's checkpoint, PostgreSQL's vacuum).

Prints a Markdown table and writes ``bench/results/pgstore.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(ROOT), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

from _util import Rpc, median, pct, save, table  # noqa: E402
from bench_memgine import CORPUS_SEED, QUERY_SEED  # noqa: E402
from memgine_corpus import Corpus  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from carnb.testing.postgres import TempPostgres  # noqa: E402

AGENT = {"agent_id": "bench"}


class Server:
    """`python -m carnb serve --no-auth` with its data in ``home``."""

    def __init__(self, home: Path, *args: str) -> None:
        home.mkdir(parents=True, exist_ok=True)
        conn = home / f"conn-{time.monotonic_ns()}.json"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "carnb", "serve", "--no-auth", "--home", str(home)]
            + ["--connection-file", str(conn), *args],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        self.proc.stdout.readline()
        if not line.startswith("carnb serving on "):
            raise RuntimeError(f"serve did not start: {line!r}")
        self.url = line.removeprefix("carnb serving on ")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


def notification_delays(writer_url: str, watcher_url: str, n: int) -> list[float]:
    """Seconds from sending a one-turn append through one server to its trace event on the
    other, ``n`` times, one at a time."""
    rpc = Rpc(writer_url, AGENT)
    run_id = rpc("runs.start", {"intent": "delay"})["run_id"]
    received: dict[int, float] = {}
    ws = connect(watcher_url, compression=None, max_size=None).__enter__()
    ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "session.auth", "params": AGENT}))
    ws.recv(timeout=10)
    ws.send(
        json.dumps(
            {"jsonrpc": "2.0", "id": 2, "method": "runs.subscribe", "params": {"run_id": run_id}}
        )
    )
    while "id" not in json.loads(ws.recv(timeout=10)):
        pass
    done = threading.Event()

    def watch() -> None:
        while not done.is_set() or len(received) < n:
            try:
                msg = json.loads(ws.recv(timeout=10))
            except TimeoutError:
                return
            if msg.get("method") == "runs.trace.event":
                received[msg["params"]["cursor"]] = time.perf_counter()
                if len(received) >= n:
                    return

    t = threading.Thread(target=watch)
    t.start()
    sent: dict[int, float] = {}
    for i in range(n):
        t0 = time.perf_counter()
        r = rpc("runs.record_turns", {"run_id": run_id, "turns": [{"i": i}]})
        sent[r["base_index"]] = t0
        while r["base_index"] not in received and time.perf_counter() - t0 < 5:
            time.sleep(0.0005)
    done.set()
    t.join(15)
    ws.close()
    rpc.close()
    return [received[c] - sent[c] for c in sent if c in received]


def throughput(urls: list[str], seconds: float, batch: int = 10) -> float:
    """Records per second appended by one writer per server, together."""
    counts = [0] * len(urls)
    stop = time.perf_counter() + seconds

    def write(k: int) -> None:
        rpc = Rpc(urls[k], AGENT)
        run_id = rpc("runs.start", {"intent": f"throughput {k}"})["run_id"]
        turns = [{"prompt": "p" * 200, "output": "o" * 800, "j": j} for j in range(batch)]
        while time.perf_counter() < stop:
            counts[k] += rpc("runs.record_turns", {"run_id": run_id, "turns": turns})["count"]
        rpc.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=write, args=(k,)) for k in range(len(urls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


class _Done(Exception):
    """--only-memgine: the run store figures are skipped."""


def vacuum(store_url: str) -> None:
    """What autovacuum does to a live store soon after a bulk load (PostgreSQL 13+ vacuums
    insert-only tables too): mark pages all-visible, so index-only scans skip the heap."""
    import psycopg

    with psycopg.connect(store_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE memgine_terms, memgine_facts")


def memgine_figures(
    url: str, home: Path, n: int, settle: Any = lambda: time.sleep(2)
) -> dict[str, float]:
    """add_fact/s, query and build_context medians (ms) of agent ``bench``'s graph on the
    server at ``url`` (data directory ``home``) holding ``n`` facts: right after the load, and
    steady once ``settle()`` has run (SQLite: its WAL checkpoint; PostgreSQL: a vacuum)."""
    facts = [{"subject": s, "body": b, "kind": k} for s, b, k in Corpus(CORPUS_SEED).facts(n)]
    folder = home / "memory" / "agents" / "bench"  # the agent's persist/load folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.json").write_text(json.dumps(facts))
    rpc = Rpc(url, AGENT)
    t0 = time.perf_counter()
    assert rpc("memory.load", {"path": "corpus.json"}) == n
    load_s = time.perf_counter() - t0
    queries = Corpus(QUERY_SEED).queries(200)
    for q in queries[:50]:  # warm caches (the vocabulary, document frequencies)
        rpc("memory.query", {"query": q, "k": 5})
    first = []
    for q in queries:
        t0 = time.perf_counter()
        rpc("memory.query", {"query": q, "k": 5})
        first.append((time.perf_counter() - t0) * 1000)
    settle()
    q_ms, c_ms = [], []
    for q in queries:
        t0 = time.perf_counter()
        rpc("memory.query", {"query": q, "k": 5})
        q_ms.append((time.perf_counter() - t0) * 1000)
    for q in queries[:100]:
        t0 = time.perf_counter()
        rpc("memory.build_context", {"query": q})
        c_ms.append((time.perf_counter() - t0) * 1000)
    extra = Corpus(CORPUS_SEED + 1).facts(500)
    t0 = time.perf_counter()
    for s, b, k in extra:
        rpc("memory.add_fact", {"subject": s, "body": b, "kind": k})
    rate = len(extra) / (time.perf_counter() - t0)
    rpc.close()
    return {
        "load_s": load_s,
        "add_fact_per_s": rate,
        "query_median_ms": median(q_ms),
        "query_first_pass_median_ms": median(first),
        "query_p95_ms": pct(q_ms, 95),
        "context_median_ms": median(c_ms),
    }


def memgine_rows(n: int, pg: dict[str, float], sq: dict[str, float]) -> list[Any]:
    at = f"@{n // 1000}k"
    ratio = pg["query_median_ms"] / sq["query_median_ms"]
    return [
        (
            f"memgine: memory.query median {at}, PostgreSQL / SQLite",
            f"{pg['query_median_ms']:.2f} / {sq['query_median_ms']:.2f} ms",
            "PostgreSQL <= 10 ms",
            pg["query_median_ms"] <= 10,
        ),
        ("memgine: query median PostgreSQL / SQLite", f"{ratio:.2f}x", "<= 3x", ratio <= 3),
        (
            f"memgine: memory.query median right after the load {at}, PostgreSQL / SQLite",
            f"{pg['query_first_pass_median_ms']:.2f} / {sq['query_first_pass_median_ms']:.2f} ms",
            "",
            None,
        ),
        (
            f"memgine: memory.query p95 {at}, PostgreSQL / SQLite",
            f"{pg['query_p95_ms']:.2f} / {sq['query_p95_ms']:.2f} ms",
            "",
            None,
        ),
        (
            f"memgine: memory.build_context median {at}, PostgreSQL / SQLite",
            f"{pg['context_median_ms']:.2f} / {sq['context_median_ms']:.2f} ms",
            "",
            None,
        ),
        (
            f"memgine: sequential add_fact {at}, PostgreSQL / SQLite",
            f"{pg['add_fact_per_s']:,.0f} / {sq['add_fact_per_s']:,.0f} facts/s",
            "",
            None,
        ),
        (
            f"memgine: memory.load of {n:,} facts, PostgreSQL / SQLite",
            f"{pg['load_s']:.1f} / {sq['load_s']:.1f} s",
            "",
            None,
        ),
    ]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only-memgine", action="store_true", help="skip the run store figures")
    args = ap.parse_args()
    facts = 10_000 if args.quick else 100_000
    n, seconds = (60, 2.0) if args.quick else (300, 5.0)
    rows: list[tuple[str, str, str, bool | None]] = []
    data: dict[str, Any] = {}
    with TempPostgres() as pg, tempfile.TemporaryDirectory(prefix="carnb-bench-") as tmp:
        url = pg.create_database("bench")
        store = ("--store", url)
        homes = [Path(tmp) / f"pg{k}" for k in range(4)]
        servers = [Server(h, *store) for h in homes]
        sqlite_home = Path(tmp) / "sqlite"
        sqlite_servers = [Server(sqlite_home) for _ in range(4)]
        try:
            pg_mem = memgine_figures(servers[0].url, homes[0], facts, lambda: vacuum(url))
            sq_mem = memgine_figures(sqlite_servers[0].url, sqlite_home, facts)
            data["memgine"] = {"facts": facts, "postgresql": pg_mem, "sqlite": sq_mem}
            rows.extend(memgine_rows(facts, pg_mem, sq_mem))
            if args.only_memgine:
                raise _Done
            d_pg = notification_delays(servers[0].url, servers[1].url, n)
            d_sq = notification_delays(sqlite_servers[0].url, sqlite_servers[0].url, n)
            data["delay_ms"] = {
                "postgresql_cross_server": [x * 1000 for x in d_pg],
                "sqlite_same_server": [x * 1000 for x in d_sq],
            }
            rows.append(
                (
                    "append -> notification, PostgreSQL, A -> subscriber on B (median / p95)",
                    f"{median(d_pg) * 1000:.1f} / {pct(d_pg, 95) * 1000:.1f} ms",
                    "<= 50 ms median",
                    median(d_pg) <= 0.05,
                )
            )
            rows.append(
                (
                    "append -> notification, SQLite, one server (median / p95)",
                    f"{median(d_sq) * 1000:.1f} / {pct(d_sq, 95) * 1000:.1f} ms",
                    "(reference)",
                    None,
                )
            )
            tp_pg = throughput([s.url for s in servers], seconds)
            tp_sq = throughput([s.url for s in sqlite_servers], seconds)
            data["throughput_records_per_s"] = {"postgresql_4": tp_pg, "sqlite_4": tp_sq}
            rows.append(
                (
                    "records/s, 4 servers on one PostgreSQL (10-turn batches)",
                    f"{tp_pg:,.0f}",
                    "",
                    None,
                )
            )
            rows.append(
                ("records/s, 4 servers on one SQLite file (local disk)", f"{tp_sq:,.0f}", "", None)
            )
        except _Done:
            pass
        finally:
            for s in servers + sqlite_servers:
                s.close()
    save("pgstore", data)
    print(table(rows, "Team store: PostgreSQL beside SQLite (`bench/bench_pgstore.py`)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

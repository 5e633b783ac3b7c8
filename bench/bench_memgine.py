"""Benchmark of carnb's memgine in process, beside the peer (car-runtime 0.7.0's embedded engine).

Usage: ``.venv/bin/python bench/bench_memgine.py [--quick] [--no-peer] [--sizes N,...]``

For each size (1k, 10k, 100k facts; ``--quick``: 1k and 10k with fewer iterations) a seeded
corpus of realistic random facts (bench/memgine_corpus.py) is added to an in-memory graph one
``add_fact`` at a time, persisted to JSON, loaded into a persistent graph file, and then queried:
``query`` k=5 (median, p99), ``build_context`` and ``build_context_fast`` (median) over the same
fixed query set; then ``add_fact`` throughput on the persistent file (every write committed);
finally the slowest query after a fact of 32 long words (1 MiB) is planted, each query asking a
word never asked before (each such word once froze the engine for ~30 s); and ``build_context``
right after a superseding write with 3 facts pinned (the write makes it read the pinned facts
again).

The peer runs in its own virtual environment (/tmp/peer07, built on first use with
``pip install car-runtime==0.7.0``) as a black box, in a subprocess, on the same corpus and
queries (1k and 10k only; it grows linearly). If it cannot be installed the bench says so and
goes on without it.

Prints a Markdown table (measure | value | goal | ok) and writes bench/results/memgine.json
(``--quick``: bench/results/memgine-quick.json, ``--sizes``: memgine-sizes.json, so a CI or
partial run does not replace the full figures).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from memgine_corpus import Corpus  # noqa: E402

from carnb.memgine import Memgine  # noqa: E402

PEER_VENV = Path(os.environ.get("CARNB_PEER07_VENV", "/tmp/peer07"))
PEER_VERSION = "0.7.0"
# Peer calls per measure, by (quick, small graph): it takes ~0.2-0.5 s a call at 10k facts.
PEER_ITERS = {(True, True): 40, (True, False): 12, (False, True): 200, (False, False): 100}
CORPUS_SEED = 7
QUERY_SEED = 99

GOALS = {
    "query_median_ms_100k": 3.0,
    "query_ratio_100k_1k": 4.0,
    "context_median_ms_100k": 25.0,
    "add_persistent_per_s": 1500.0,
    "planted_query_max_ms_100k": 50.0,
}
PLANTED_SEED = 15

PEER_SCRIPT = r"""
import json, statistics, sys, time
sys.path.insert(0, sys.argv[1])
from memgine_corpus import Corpus
from car_runtime import CarRuntime
n, corpus_seed, query_seed, iters = (int(x) for x in sys.argv[2:6])
facts = Corpus(corpus_seed).facts(n)
queries = Corpus(query_seed).queries(200)
rt = CarRuntime()
t0 = time.perf_counter()
for subject, body, kind in facts:
    rt.add_fact(subject, body, kind)
add_s = time.perf_counter() - t0
def timed(fn):
    for q in queries[:5]:
        fn(q)
    out = []
    for i in range(iters):
        q = queries[i % len(queries)]
        t = time.perf_counter(); fn(q); out.append((time.perf_counter() - t) * 1000)
    return out
qt = timed(lambda q: rt.query_facts(q, 5))
ct = timed(lambda q: rt.build_context(q))
print(json.dumps({"n": n, "add_per_s": n / add_s, "query_ms": qt, "context_ms": ct,
                  "fact_count": rt.fact_count()}))
"""


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def timed_calls(fn: Any, queries: list[str], iters: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU (this thread) milliseconds per call."""
    for q in queries[:10]:
        fn(q)
    wall, cpu = [], []
    for i in range(iters):
        q = queries[i % len(queries)]
        start, start_cpu = time.perf_counter(), time.thread_time()
        fn(q)
        cpu.append((time.thread_time() - start_cpu) * 1000)
        wall.append((time.perf_counter() - start) * 1000)
    return wall, cpu


def planted_query_ms(graph: Memgine, queries: list[str], iters: int) -> list[float]:
    """Milliseconds per query after storing one fact of 32 long random words (1 MiB); every
    query carries a new word, so no cached look-up helps."""
    rng = random.Random(PLANTED_SEED)
    letters = bytes(97 + b % 26 for b in range(256))
    size = ((1 << 20) - 31) // 32
    words = [rng.randbytes(size).translate(letters).decode() for _ in range(32)]
    graph.add_fact("scraped page", " ".join(words))
    out = []
    for i in range(iters):
        query = f"{queries[i % len(queries)]} novel{i:05d}x"
        start = time.perf_counter()
        graph.query(query, 5)
        out.append((time.perf_counter() - start) * 1000)
    return out


def pinned_context_ms(graph: Memgine, queries: list[str], iters: int) -> list[float]:
    """Milliseconds per ``build_context`` right after a superseding write, with 3 facts pinned:
    each such write drops the cached pinned facts, so every measured context reads them again."""
    for fact in graph.facts(limit=3):
        graph.pin(fact["fact_id"])
    out = []
    for i in range(iters):
        graph.add_fact(
            "pin bench", f"release train number {i}", supersedes=["pin bench"] if i else None
        )
        start = time.perf_counter()
        graph.build_context(queries[i % len(queries)])
        out.append((time.perf_counter() - start) * 1000)
    return out


def bench_size(n: int, queries: list[str], iters: int, add_n: int, workdir: Path) -> dict[str, Any]:
    facts = Corpus(CORPUS_SEED).facts(n)
    extra = Corpus(CORPUS_SEED + 1).facts(add_n)
    mem = Memgine()
    start = time.perf_counter()
    for subject, body, kind in facts:
        mem.add_fact(subject, body, kind)
    add_mem_s = time.perf_counter() - start
    json_path = workdir / f"graph-{n}.json"
    start = time.perf_counter()
    persisted = mem.persist(json_path)
    persist_s = time.perf_counter() - start
    mem.close()

    graph = Memgine(workdir / f"graph-{n}.sqlite3")
    start = time.perf_counter()
    loaded = graph.load(json_path)
    load_s = time.perf_counter() - start
    assert persisted == loaded == n, (persisted, loaded, n)

    query_ms, query_cpu = timed_calls(lambda q: graph.query(q, 5), queries, iters)
    hits = sum(1 for q in queries if graph.query(q, 5))
    context_ms, context_cpu = timed_calls(graph.build_context, queries, max(50, iters // 4))
    fast_ms, _ = timed_calls(graph.build_context_fast, queries, max(50, iters // 4))
    context_chars = statistics.median(len(graph.build_context(q)) for q in queries[:50])

    start, start_cpu = time.perf_counter(), time.process_time()
    for subject, body, kind in extra:
        graph.add_fact(subject, body, kind)
    add_file_s = time.perf_counter() - start
    add_file_cpu = time.process_time() - start_cpu
    pinned_ms = pinned_context_ms(graph, queries, max(50, iters // 4))
    planted_ms = planted_query_ms(graph, queries, max(20, iters // 10))
    graph.close()
    return {
        "n": n,
        "add_memory_per_s": n / add_mem_s,
        "persist_s": persist_s,
        "load_s": load_s,
        "json_mb": json_path.stat().st_size / 1e6,
        "query_median_ms": statistics.median(query_ms),
        "query_p99_ms": percentile(query_ms, 99),
        "query_cpu_median_ms": statistics.median(query_cpu),
        "queries_with_results": hits / len(queries),
        "context_median_ms": statistics.median(context_ms),
        "context_p99_ms": percentile(context_ms, 99),
        "context_cpu_median_ms": statistics.median(context_cpu),
        "context_fast_median_ms": statistics.median(fast_ms),
        "context_median_chars": context_chars,
        "add_file_per_s": add_n / add_file_s,
        "add_file_per_cpu_s": add_n / add_file_cpu,
        "add_file_n": add_n,
        "pinned_context_median_ms": statistics.median(pinned_ms),
        "pinned_context_p99_ms": percentile(pinned_ms, 99),
        "planted_query_median_ms": statistics.median(planted_ms),
        "planted_query_max_ms": max(planted_ms),
    }


def ensure_peer() -> tuple[Path | None, str]:
    python = PEER_VENV / "bin" / "python"
    check = [str(python), "-c", "import car_runtime, importlib.metadata as m; "
             "print(m.version('car-runtime'))"]  # fmt: skip
    if python.exists():
        done = subprocess.run(check, capture_output=True, text=True)
        if done.returncode == 0 and done.stdout.strip() == PEER_VERSION:
            return python, ""
    print(
        f"(building the peer venv {PEER_VENV} with car-runtime=={PEER_VERSION} ...)",
        file=sys.stderr,
        flush=True,
    )
    steps = [
        [sys.executable, "-m", "venv", str(PEER_VENV)],
        [str(python), "-m", "pip", "install", "-q", f"car-runtime=={PEER_VERSION}"],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            return None, f"peer skipped: `{' '.join(step)}` failed: {done.stderr.strip()[-300:]}"
    done = subprocess.run(check, capture_output=True, text=True)
    if done.returncode != 0:
        return None, f"peer skipped: car_runtime does not import: {done.stderr.strip()[-300:]}"
    return python, ""


def bench_peer(python: Path, n: int, iters: int) -> dict[str, Any]:
    env = {**os.environ, "CAR_FFI_NO_DAEMON_WARNING": "1"}
    env.pop("CAR_DAEMON_URL", None)
    done = subprocess.run(
        [str(python), "-c", PEER_SCRIPT, str(HERE), str(n), str(CORPUS_SEED), str(QUERY_SEED),
         str(iters)],
        capture_output=True, text=True, env=env, timeout=3600,
    )  # fmt: skip
    if done.returncode != 0:
        return {"n": n, "error": done.stderr.strip()[-500:]}
    raw = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "n": n,
        "add_per_s": raw["add_per_s"],
        "query_median_ms": statistics.median(raw["query_ms"]),
        "query_p99_ms": percentile(raw["query_ms"], 99),
        "context_median_ms": statistics.median(raw["context_ms"]),
        "fact_count": raw["fact_count"],
    }


def label(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def table(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []
    sizes = results["sizes"]
    largest = sizes[-1]["n"]
    for size in sizes:
        n = label(size["n"])
        big = size["n"] == largest and largest >= 100_000
        q_ok = "yes" if size["query_median_ms"] <= GOALS["query_median_ms_100k"] else "no"
        c_ok = "yes" if size["context_median_ms"] <= GOALS["context_median_ms_100k"] else "no"
        planted_ok = (
            "yes" if size["planted_query_max_ms"] <= GOALS["planted_query_max_ms_100k"] else "no"
        )
        rows += [
            (f"query k=5 median @{n}", f"{size['query_median_ms']:.2f} ms",
             "<= 3 ms @100k" if big else "", q_ok if big else ""),
            (f"query k=5 p99 @{n}", f"{size['query_p99_ms']:.2f} ms", "", ""),
            (f"query k=5 median CPU time @{n}", f"{size['query_cpu_median_ms']:.2f} ms", "", ""),
            (f"build_context median @{n}", f"{size['context_median_ms']:.2f} ms",
             "<= 25 ms @100k" if big else "", c_ok if big else ""),
            (f"build_context after a superseding write, 3 pinned, median @{n}",
             f"{size['pinned_context_median_ms']:.2f} ms", "<= 25 ms @100k" if big else "",
             ("yes" if size["pinned_context_median_ms"] <= GOALS["context_median_ms_100k"]
              else "no") if big else ""),
            (f"build_context after a superseding write, 3 pinned, p99 @{n}",
             f"{size['pinned_context_p99_ms']:.2f} ms", "", ""),
            (f"build_context_fast median @{n}", f"{size['context_fast_median_ms']:.2f} ms", "", ""),
            (f"add_fact in memory @{n}", f"{size['add_memory_per_s']:,.0f} facts/s", "", ""),
            (f"add_fact persistent file @{n}+", f"{size['add_file_per_s']:,.0f} facts/s",
             ">= 1,500/s", "yes" if size["add_file_per_s"] >= 1500 else "no"),
            (f"add_fact persistent file @{n}+, per CPU second (all threads)",
             f"{size['add_file_per_cpu_s']:,.0f} facts/s", "", ""),
            (f"persist @{n} ({size['json_mb']:.1f} MB)", f"{size['persist_s'] * 1000:.0f} ms",
             "", ""),
            (f"load @{n}", f"{size['load_s'] * 1000:.0f} ms", "", ""),
            (f"query, planted 1 MiB long-word fact, new words, max @{n}",
             f"{size['planted_query_max_ms']:.2f} ms", "<= 50 ms @100k" if big else "",
             (planted_ok if big else "")),
        ]  # fmt: skip
    first, last = sizes[0], sizes[-1]
    ratio = last["query_median_ms"] / first["query_median_ms"]
    results["query_ratio"] = ratio
    name = f"query median ratio {label(last['n'])}/{label(first['n'])}"
    if last["n"] >= 100_000:
        ok = "yes" if ratio <= GOALS["query_ratio_100k_1k"] else "no"
        rows.append((name, f"{ratio:.2f}x", "<= 4x", ok))
    else:
        rows.append((name, f"{ratio:.2f}x", "", ""))
    by_n = {size["n"]: size for size in sizes}
    for peer in results.get("peer", []):
        n = label(peer["n"])
        if "error" in peer:
            rows.append((f"peer 0.7.0 @{n}", "failed: " + peer["error"][:80], "", ""))
            continue
        ours = by_n.get(peer["n"])
        rows += [
            (f"peer 0.7.0 query_facts median @{n}", f"{peer['query_median_ms']:.2f} ms", "", ""),
            (f"peer 0.7.0 build_context median @{n}", f"{peer['context_median_ms']:.2f} ms",
             "", ""),
            (f"peer 0.7.0 add_fact @{n}", f"{peer['add_per_s']:,.0f} facts/s", "", ""),
        ]  # fmt: skip
        if ours:
            rows += [
                (f"query speed-up vs peer @{n}",
                 f"{peer['query_median_ms'] / ours['query_median_ms']:.1f}x", "> 1x",
                 "yes" if peer["query_median_ms"] > ours["query_median_ms"] else "no"),
                (f"build_context speed-up vs peer @{n}",
                 f"{peer['context_median_ms'] / ours['context_median_ms']:.1f}x", "> 1x",
                 "yes" if peer["context_median_ms"] > ours["context_median_ms"] else "no"),
            ]  # fmt: skip
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k and 10k only, fewer iterations")
    parser.add_argument("--no-peer", action="store_true", help="skip car-runtime 0.7.0")
    parser.add_argument(
        "--sizes", help="comma-separated graph sizes instead of the default ones (e.g. 100000)"
    )
    args = parser.parse_args()
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    if args.sizes:
        sizes = [int(n) for n in args.sizes.split(",")]
    iters = 200 if args.quick else 1000
    add_n = 500 if args.quick else 3000
    queries = Corpus(QUERY_SEED).queries(200)
    results: dict[str, Any] = {
        "bench": "memgine",
        "quick": args.quick,
        "python": platform.python_version(),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "sizes": [],
        "goals": GOALS,
    }
    with tempfile.TemporaryDirectory(prefix="carnb-bench-memgine-") as tmp:
        for n in sizes:
            print(f"(carnb memgine @{label(n)} ...)", file=sys.stderr, flush=True)
            results["sizes"].append(bench_size(n, queries, iters, add_n, Path(tmp)))
    notes: list[str] = []
    if not args.no_peer:
        python, note = ensure_peer()
        if python is None:
            notes.append(note)
        else:
            results["peer"] = []
            for n in [1_000, 10_000]:
                print(
                    f"(peer car-runtime {PEER_VERSION} @{label(n)} ...)",
                    file=sys.stderr,
                    flush=True,
                )
                peer_iters = PEER_ITERS[(args.quick, n <= 1000)]
                results["peer"].append(bench_peer(python, n, peer_iters))
    results["loadavg_end"] = os.getloadavg()
    rows = table(results)
    results["rows"] = [dict(zip(("measure", "value", "goal", "ok"), r, strict=True)) for r in rows]
    results["notes"] = notes
    print()
    print("| measure | value | goal | ok |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    for note in notes:
        print(f"\nNote: {note}")
    load = results["loadavg_start"][0], results["loadavg_end"][0]
    print(f"\n(1-minute load average at start/end: {load[0]:.1f} / {load[1]:.1f} on "
          f"{results['cpus']} CPUs; other processes inflate wall-clock figures)")  # fmt: skip
    name = "memgine-sizes" if args.sizes else "memgine-quick" if args.quick else "memgine"
    out = HERE / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out.relative_to(HERE.parent)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

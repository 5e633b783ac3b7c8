"""memgine over the wire: `memory.query`, `memory.build_context` and sequential `add_fact`
as a client of a real `python -m carnb serve` sees them, at 1k, 10k and 100k facts.

    .venv/bin/python bench/bench_memgine_wire.py [--quick]     # --quick: 1k and 10k

The graph is an agent's persistent graph, filled with `memory.load` from the same seeded
corpus `bench_memgine.py` uses; queries are the same too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import Rpc, Serve, median, pct, save, table  # noqa: E402
from bench_memgine import CORPUS_SEED, QUERY_SEED  # noqa: E402
from memgine_corpus import Corpus  # noqa: E402


def timed(fn, args_list) -> list[float]:
    out = []
    for args in args_list:
        t0 = time.perf_counter()
        fn(*args)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    queries = Corpus(QUERY_SEED).queries(200)
    rows = []
    data: dict[str, dict] = {}
    server = Serve("--agent", "bench")
    try:
        home = Path(server.tmp.name)
        agent_auth = {"token": server.info["agents"]["bench"], "agent_id": "bench"}
        for n in sizes:
            facts = [
                {"subject": s, "body": b, "kind": k} for s, b, k in Corpus(CORPUS_SEED).facts(n)
            ]
            folder = home / "memory" / "agents" / "bench"  # the agent's own persist/load folder
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"c{n}.json").write_text(json.dumps(facts))
            rpc = Rpc(server.url, agent_auth)
            t0 = time.perf_counter()
            assert rpc("memory.load", {"path": f"c{n}.json"}) == n
            load_s = time.perf_counter() - t0
            # The first pass right after a bulk load pays for the WAL checkpoint of the load
            # and cold caches; reported apart, then the steady state a live graph sees.
            first = timed(
                lambda q, rpc=rpc: rpc("memory.query", {"query": q, "k": 5}),
                [(q,) for q in queries],
            )
            time.sleep(2)
            q_ms = timed(
                lambda q, rpc=rpc: rpc("memory.query", {"query": q, "k": 5}),
                [(q,) for q in queries] * (1 if n >= 100_000 else 2),
            )
            c_ms = timed(
                lambda q, rpc=rpc: rpc("memory.build_context", {"query": q}),
                [(q,) for q in queries[:100]],
            )
            data[str(n)] = {
                "query_median_ms": median(q_ms),
                "query_p99_ms": pct(q_ms, 99),
                "query_first_pass_median_ms": median(first),
                "context_median_ms": median(c_ms),
                "load_s": load_s,
            }
            rows.append(
                (
                    f"wire: memory.query k=5 median @{n // 1000}k",
                    f"{median(q_ms):.2f} ms",
                    "<= 5 ms @100k" if n == 100_000 else "",
                    median(q_ms) <= 5 if n == 100_000 else None,
                )
            )
            rows.append(
                (f"wire: memory.query p99 @{n // 1000}k", f"{pct(q_ms, 99):.2f} ms", "", None)
            )
            rows.append(
                (
                    f"wire: memory.query median, first pass after the load @{n // 1000}k",
                    f"{median(first):.2f} ms",
                    "",
                    None,
                )
            )
            rows.append(
                (
                    f"wire: memory.build_context median @{n // 1000}k",
                    f"{median(c_ms):.2f} ms",
                    "<= 25 ms @100k" if n == 100_000 else "",
                    median(c_ms) <= 25 if n == 100_000 else None,
                )
            )
            rows.append((f"wire: memory.load of {n:,} facts", f"{load_s * 1000:.0f} ms", "", None))
            rpc.close()
        # sequential add_fact throughput over the wire, persistent (agent) and ephemeral graphs
        extra = Corpus(CORPUS_SEED + 1).facts(1_000 if args.quick else 3_000)
        for label, auth in (
            ("persistent agent graph", agent_auth),
            ("ephemeral session graph", {"token": server.info["token"]}),
        ):
            rpc = Rpc(server.url, auth)
            t0 = time.perf_counter()
            for s, b, k in extra:
                rpc("memory.add_fact", {"subject": s, "body": b, "kind": k})
            rate = len(extra) / (time.perf_counter() - t0)
            rpc.close()
            persistent = label.startswith("persistent")
            data[f"add_fact {label}"] = {"facts_per_s": rate}
            rows.append(
                (
                    f"wire: sequential add_fact, {label} (@{sizes[-1] // 1000}k+)"
                    if persistent
                    else f"wire: sequential add_fact, {label}",
                    f"{rate:,.0f} facts/s",
                    ">= 1,500/s" if persistent else "",
                    rate >= 1500 if persistent else None,
                )
            )
        if len(sizes) == 3:
            ratio = data["100000"]["query_median_ms"] / data["1000"]["query_median_ms"]
            rows.append(
                ("wire: query median ratio 100k / 1k", f"{ratio:.2f}x", "<= 4x", ratio <= 4)
            )
    finally:
        server.close()
    save("memgine_wire" + ("_quick" if args.quick else ""), data)
    return table(rows, "memgine over the wire (`bench/bench_memgine_wire.py`)")


if __name__ == "__main__":
    print(main())

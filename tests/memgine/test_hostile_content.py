"""Stored content cannot make queries slow: a fact of a few very long words once made
every new query word cost ~30 s (a quadratic vocabulary scan), and unindexed big facts were
re-read by every query. Each test measures a baseline on the same graph first, so the bounds
hold on a slow machine too."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from carnb.memgine import Memgine
from carnb.memgine.validate import MAX_BODY_BYTES

LONG_WORDS = 32
LONG_WORD_CHARS = (MAX_BODY_BYTES - (LONG_WORDS - 1)) // LONG_WORDS  # one fact of ~1 MiB
_LETTERS = bytes(97 + b % 26 for b in range(256))


def _long_word(rng: random.Random) -> str:
    return rng.randbytes(LONG_WORD_CHARS).translate(_LETTERS).decode()


def _planted_body(rng: random.Random) -> str:
    return " ".join(_long_word(rng) for _ in range(LONG_WORDS))


def _slowest(run: Callable[[str], object], queries: list[str]) -> float:
    worst = 0.0
    for text in queries:
        start = time.perf_counter()
        run(text)
        worst = max(worst, time.perf_counter() - start)
    return worst


def _fill(g: Memgine, n: int = 300) -> None:
    for i in range(n):
        g.add_fact(f"topic {i % 20}", f"note {i} about deploys, tokens and the database")


def _fresh_words(tag: str, n: int = 8) -> list[str]:
    # New letters-only words (every one is looked up as a substring of the vocabulary), plus
    # common ones: each query pays the whole per-token path, nothing comes from a cache.
    return [f"{tag}{chr(97 + i)}query deploys token" for i in range(n)]


def test_a_fact_of_long_words_does_not_slow_queries(graph: Memgine) -> None:
    rng = random.Random(15)
    _fill(graph)
    graph.query("warm up the caches")
    baseline = _slowest(graph.query, _fresh_words("before"))

    body = _planted_body(rng)
    graph.add_fact("scraped page", body, fact_id="planted")
    planted = _slowest(graph.query, _fresh_words("after"))

    assert planted < max(1.0, 20 * baseline), (baseline, planted)  # was ~30 s per query
    # The planted fact is still found by its words, whole or by a prefix of one.
    first, third = body.split(" ")[0], body.split(" ")[2]
    assert graph.query(third, k=1)[0]["fact_id"] == "planted"
    assert graph.query(first[:12], k=1)[0]["fact_id"] == "planted"


def test_big_unindexed_facts_do_not_slow_queries(graph: Memgine) -> None:
    rng = random.Random(16)
    _fill(graph, 320)  # a full batch: the next facts would wait to be indexed
    long_query = " ".join(f"word{i}" for i in range(32))
    baseline = _slowest(graph.query, [long_query, *_fresh_words("before")])

    markers = []
    for i in range(31):
        markers.append(f"marker{chr(97 + i % 26)}{chr(97 + i // 26)}")
        body = markers[-1] + " " + _planted_body(rng)
        graph.add_fact(f"big {i}", body[:MAX_BODY_BYTES])
    slowest = _slowest(graph.query, [long_query, *_fresh_words("after")])

    assert slowest < max(1.0, 20 * baseline), (baseline, slowest)  # was ~8 s per query
    assert graph.query(markers[7], k=1)[0]["subject"] == "big 7"
    assert graph.query(markers[30], k=1)[0]["subject"] == "big 30"

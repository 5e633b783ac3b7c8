"""Retrieval for memgine: bounded candidate search, exact re-scoring and spreading activation.

Costs are bounded so a query stays fast at 100k facts (MEMGINE.md, retrieval):

1. Each query token becomes a set of index keys: its stem and the stems of its synonyms (the
   full-text index holds stems, so one lookup covers exact, stem and synonym hits). Document
   frequencies come from the ``stem_df`` table (one primary-key lookup per key).
2. Candidates: every fact holding a *rare* token (few postings, bounded in total) is read from the
   index and given an upper-bound score; *common* tokens are only looked up inside that rare set,
   plus the newest facts holding all common tokens (FTS5 walks its doclists newest-first and stops
   at the limit). The best ``pool`` candidates by upper bound are re-scored exactly in Python with
   the exact/stem/synonym/substring weights.
3. Personalised PageRank from the top 5 seeds by synchronous local push (teleport 0.5, seed mass
   capped at 0.4), a few rounds with one SQL query each and a hard cap on pushed nodes.
4. Score = max(activation, keyword score); ties: newer (higher rowid) first.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from carnb.memgine import store
from carnb.memgine.text import (
    EXACT_HIT,
    MAX_QUERY_TOKENS,
    QueryTerms,
    idf,
    index_key,
    stem,
    synonym_stems,
    unique_tokens,
)

# Candidate search bounds.
RARE_MAX_DF = 2000  # a token with more postings than this is "common"
RARE_BUDGET = 6000  # total postings read for rare tokens
COMMON_PROBES = 4  # common tokens looked up inside the rare candidate set
MIN_POOL = 48  # candidates re-scored exactly (at least)

# Spreading activation (MEMGINE.md: teleport 0.5, seed weight capped at 0.4, top 5 seeds).
SEEDS = 5
TELEPORT = 0.5
SEED_CAP = 0.4
PUSH_EPSILON = 0.002
MAX_PUSHED = 256
MAX_ROUNDS = 6


@dataclass(slots=True)
class _Token:
    keys: tuple[str, ...]
    df: int
    weight: float

    def match(self) -> str:
        return "(" + " OR ".join(f'"{key}"' for key in self.keys) + ")"


def analyse(
    conn: sqlite3.Connection, query: str, fact_count: int
) -> tuple[QueryTerms, list[_Token]]:
    """Tokenize the query, look up document frequencies, weigh tokens by rarity."""
    tokens = unique_tokens(query, MAX_QUERY_TOKENS)
    keysets: list[tuple[str, ...]] = []
    wanted: set[str] = set()
    for token in tokens:
        own = index_key(stem(token))
        keys = (own, *sorted(index_key(s) for s in synonym_stems(token)))
        keysets.append(keys)
        wanted.update(keys)
    df = store.stem_dfs(conn, wanted)
    weights = [idf(fact_count, df.get(keys[0], 0)) for keys in keysets]
    per_token = [
        _Token(keys, sum(df.get(key, 0) for key in keys), weight * EXACT_HIT)
        for keys, weight in zip(keysets, weights, strict=True)
    ]
    return QueryTerms(tokens, weights), per_token


def candidates(conn: sqlite3.Connection, tokens: list[_Token], pool: int) -> list[int]:
    """Rowids worth re-scoring, best upper bound first (at most ``pool``)."""
    live = [t for t in tokens if t.df > 0]
    if not live:
        return []
    live.sort(key=lambda t: t.df)
    rare: list[_Token] = []
    spent = 0
    for token in live:
        if token.df <= RARE_MAX_DF and spent + token.df <= RARE_BUDGET:
            rare.append(token)
            spent += token.df
    chosen = {id(t) for t in rare}
    common = [t for t in live if id(t) not in chosen]
    bound: dict[int, float] = {}
    if rare:
        for token in rare:
            for (rowid,) in _match(conn, token.match()):
                bound[rowid] = bound.get(rowid, 0.0) + token.weight
        union = "(" + " OR ".join(t.match() for t in rare) + ")"
        for token in sorted(common, key=lambda t: -t.weight)[:COMMON_PROBES]:
            for (rowid,) in _match(conn, f"{token.match()} AND {union}"):
                bound[rowid] += token.weight
    if common:
        _newest(conn, common, pool, bound)
    ranked = sorted(bound.items(), key=lambda item: (-item[1], -item[0]))
    return [rowid for rowid, _ in ranked[:pool]]


def _newest(
    conn: sqlite3.Connection, common: list[_Token], pool: int, bound: dict[int, float]
) -> None:
    """Add the newest facts holding all common tokens (then each of the rarest ones alone)."""
    total = sum(t.weight for t in common)
    found = 0
    for (rowid,) in _match(conn, " AND ".join(t.match() for t in common), limit=pool):
        found += 1
        if rowid not in bound:
            bound[rowid] = total
    if found >= pool or len(common) == 1:
        return
    for token in sorted(common, key=lambda t: t.df)[:3]:
        for (rowid,) in _match(conn, token.match(), limit=pool):
            if rowid not in bound:
                bound[rowid] = token.weight


def _match(conn: sqlite3.Connection, expr: str, limit: int | None = None) -> list[tuple[int]]:
    if limit is None:
        return conn.execute(
            "SELECT rowid FROM facts_fts WHERE facts_fts MATCH ?", (expr,)
        ).fetchall()
    return conn.execute(
        "SELECT rowid FROM facts_fts WHERE facts_fts MATCH ? ORDER BY rowid DESC LIMIT ?",
        (expr, limit),
    ).fetchall()


def keyword_scores(
    conn: sqlite3.Connection, terms: QueryTerms, rowids: Sequence[int]
) -> dict[int, float]:
    """Exact keyword scores (> 0 only) of ``rowids``."""
    out: dict[int, float] = {}
    for start in range(0, len(rowids), 500):
        chunk = rowids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for rowid, fact_terms in conn.execute(
            f"SELECT rowid, terms FROM facts WHERE rowid IN ({marks})", chunk
        ):
            score = terms.score(fact_terms)
            if score > 0.0:
                out[rowid] = score
    return out


def spread(conn: sqlite3.Connection, seeds: Sequence[tuple[int, float]]) -> dict[int, float]:
    """Personalised PageRank activation from ``seeds`` by synchronous local push."""
    residual: dict[int, float] = {rowid: min(score, SEED_CAP) for rowid, score in seeds}
    estimate: dict[int, float] = {}
    frontier = [rowid for rowid, mass in residual.items() if mass > 0.0]
    pushed = 0
    for _ in range(MAX_ROUNDS):
        if not frontier or pushed >= MAX_PUSHED:
            break
        frontier = frontier[: MAX_PUSHED - pushed]
        pushed += len(frontier)
        adjacency = store.neighbours(conn, frontier)
        for node in frontier:
            mass = residual.pop(node, 0.0)
            estimate[node] = estimate.get(node, 0.0) + TELEPORT * mass
            around = adjacency.get(node, [])
            if not around:
                estimate[node] += (1.0 - TELEPORT) * mass
                continue
            share = (1.0 - TELEPORT) * mass / len(around)
            for other in around:
                residual[other] = residual.get(other, 0.0) + share
        frontier = sorted(
            (node for node, mass in residual.items() if mass > PUSH_EPSILON),
            key=lambda node: -residual[node],
        )
    for node, mass in residual.items():
        estimate[node] = estimate.get(node, 0.0) + TELEPORT * mass
    return {node: min(1.0, value) for node, value in estimate.items() if value > 0.0}


def rank(
    conn: sqlite3.Connection, query: str, want: int, fact_count: int
) -> list[tuple[int, float]]:
    """``(rowid, score)`` of the best ``want`` facts for ``query``, best first."""
    if want <= 0 or fact_count <= 0:
        return []
    terms, tokens = analyse(conn, query, fact_count)
    if not terms.tokens:
        return []
    pool = max(MIN_POOL, 2 * want)
    scores = keyword_scores(conn, terms, candidates(conn, tokens, pool))
    if not scores:
        return []
    seeds = sorted(scores.items(), key=lambda item: (-item[1], -item[0]))[:SEEDS]
    for rowid, activation in spread(conn, seeds).items():
        if activation > scores.get(rowid, 0.0):
            scores[rowid] = activation
    ranked = sorted(scores.items(), key=lambda item: (-item[1], -item[0]))
    return ranked[:want]


def match_any(query: str) -> str:
    """An FTS5 expression matching facts with any query token (or its stem or synonyms)."""
    keys: dict[str, None] = {}
    for token in unique_tokens(query, MAX_QUERY_TOKENS):
        keys[index_key(stem(token))] = None
        for synonym in synonym_stems(token):
            keys[index_key(synonym)] = None
    return " OR ".join(f'"{key}"' for key in keys)

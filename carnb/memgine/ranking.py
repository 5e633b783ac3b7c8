"""Retrieval for memgine: bounded candidate search, exact re-scoring and spreading activation.

Costs are bounded so a query stays fast at 100k facts (docs/memgine.md, Retrieval):

1. Each query token becomes a set of index keys: its stem and the stems of its synonyms (the
   full-text index holds stems, so one lookup covers exact, stem and synonym hits), plus the
   index keys that contain the token (substring hits, from the in-memory vocabulary). Document
   frequencies and the vocabulary come from :class:`~carnb.memgine.lexicon.Lexicon`.
2. Candidates: every fact holding a *rare* token (few postings, bounded in total) is read from the
   index and given an upper-bound score; *common* tokens are only looked up inside that rare set,
   plus the newest facts holding all common tokens (FTS5 walks its doclists newest-first and stops
   at the limit). The best ``pool`` candidates by upper bound are re-scored exactly in Python with
   the exact/stem/synonym/substring weights, and so are the facts not yet in the full-text index
   (the last, unfilled batch of SQLite's; see :meth:`carnb.memgine.store.SqliteTx.pending`).
   Re-scoring reads the first ``steps.SCORED_CHARS`` (64 Ki) characters of a fact's unique tokens
   and index keys, so a huge fact costs no more than a normal one; a word past that point in a
   bigger fact still makes it a candidate, but adds nothing to its score.
3. Personalised PageRank from the top 5 seeds by synchronous local push (teleport 0.5, seed mass
   capped at 0.4), a few rounds with one SQL query each and a hard cap on pushed nodes.
4. Relevance = max(activation, keyword score), the reported score; superseded facts reached
   by spreading are dropped. The order is by relevance + ``RECENCY_WEIGHT`` * recency, where
   recency halves every ``RECENCY_HALF_LIFE`` facts written since: the newer of two equally
   relevant facts wins, a clearly more relevant old fact still beats a new one. Ties: newer
   (higher rowid) first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from carnb.memgine import steps
from carnb.memgine.backend import GraphTx
from carnb.memgine.lexicon import Lexicon
from carnb.memgine.text import (
    EXACT_HIT,
    MAX_QUERY_TOKENS,
    MIN_SUBSTRING_LEN,
    SUBSTRING_HIT,
    SYNONYM_HIT,
    QueryTerms,
    idf,
    index_key,
    query_tokens,
    stem,
    synonym_stems,
)
from carnb.memgine.utility import Blend

# Candidate search bounds.
RARE_MAX_DF = 1000  # a unit with more postings than this is "common"
RARE_BUDGET = 3000  # total postings read for rare units
COMMON_PROBES = 3  # common tokens looked up inside the rare candidate set
NEWEST_TOGETHER = 3  # common units searched newest-first
MIN_POOL = 48  # candidates re-scored exactly (at least)
SUBSTRING_KEYS = 16  # index keys holding a query token as a substring, searched per token
SUBSTRING_TOKENS = 8  # query tokens looked up as substrings (the first ones)
# Substring units have no cheap document frequency: they always take the newest-first path.
UNKNOWN_DF = 1 << 60

# Spreading activation (docs/memgine.md: teleport 0.5, seed weight capped at 0.4, top 5 seeds).
SEEDS = 5
TELEPORT = 0.5
SEED_CAP = 0.4
PUSH_EPSILON = 0.01
MAX_PUSHED = 256
MAX_ROUNDS = 4

# Recency (step 4): its share of the score, and how many newer facts halve it.
RECENCY_WEIGHT = 0.1
RECENCY_HALF_LIFE = 64

# A context shows a ranked fact whose relevance reaches this share of the best one's and this
# floor (see relevant()).
RELEVANT_SHARE = 0.5
MIN_RELEVANCE = 0.2


@dataclass(slots=True)
class _Unit:
    """Index keys searched together for one query token: its own stem (``own``), its synonyms'
    stems, or the keys that contain it (substring hits)."""

    keys: tuple[str, ...]
    df: int
    weight: float  # upper bound of what a hit adds to a keyword score (before normalising)
    own: bool


def analyse(
    tx: GraphTx, lexicon: Lexicon, query: str, fact_count: int
) -> tuple[QueryTerms, list[_Unit]]:
    """Tokenize the query, look up document frequencies, weigh tokens by rarity; each token
    gives up to three search units: its stem, its synonyms, index keys containing it."""
    tokens = query_tokens(query, MAX_QUERY_TOKENS)
    owns = [index_key(stem(token)) for token in tokens]
    df = lexicon.docfreq(tx, set(owns))
    weights = [idf(fact_count, min(fact_count, df.get(own, 0))) for own in owns]
    units: list[_Unit] = []
    substring_tokens = SUBSTRING_TOKENS
    for token, own, weight in zip(tokens, owns, weights, strict=True):
        units.append(_Unit((own,), df.get(own, 0), weight * EXACT_HIT, True))
        synonyms = tuple(sorted({index_key(s) for s in synonym_stems(token)} - {own}))
        if synonyms:
            syn_df = lexicon.docfreq(tx, set(synonyms))
            units.append(_Unit(synonyms, sum(syn_df.values()), weight * SYNONYM_HIT, False))
        if len(token) >= MIN_SUBSTRING_LEN and token.isalnum() and substring_tokens > 0:
            substring_tokens -= 1
            skip = {own, *synonyms}
            around = [k for k in lexicon.containing(tx, token) if k not in skip]
            if around:
                keys = tuple(around[:SUBSTRING_KEYS])
                units.append(_Unit(keys, UNKNOWN_DF, weight * SUBSTRING_HIT, False))
    return QueryTerms(tokens, weights), units


def candidates(tx: GraphTx, units: list[_Unit], pool: int) -> list[int]:
    """Rowids worth re-scoring, best upper bound first (at most ``pool``).

    Rare units (few postings, within a total budget) are read whole; common units are only
    probed inside that rare set and, newest first with a limit, on their own (all common
    tokens together first, then the most selective ones alone)."""
    live = sorted((u for u in units if u.df > 0), key=lambda u: u.df)
    if not live:
        return []
    rare: list[_Unit] = []
    common: list[_Unit] = []
    spent = 0
    for unit in live:
        if unit.df <= RARE_MAX_DF and spent + unit.df <= RARE_BUDGET:
            rare.append(unit)
            spent += unit.df
        else:
            common.append(unit)
    bound: dict[int, float] = {}
    if rare:
        for unit in rare:
            for rowid in tx.match([unit.keys]):
                bound[rowid] = bound.get(rowid, 0.0) + unit.weight
        union = [key for unit in rare for key in unit.keys]
        probes = sorted((u for u in common if u.own), key=lambda u: -u.weight)[:COMMON_PROBES]
        for unit in probes:
            for rowid in tx.match([unit.keys, union]):
                bound[rowid] += unit.weight
    if common:
        _newest(tx, common, pool, bound)
    ranked = sorted(bound.items(), key=lambda item: (-item[1], -item[0]))
    return [rowid for rowid, _ in ranked[:pool]]


def _newest(tx: GraphTx, common: list[_Unit], pool: int, bound: dict[int, float]) -> None:
    """Add the newest facts holding the (up to 3 most selective) common tokens together, and
    if those are too few, the newest holding each of the 3 most selective common units."""
    found = 0
    together = [u for u in common if u.own][:NEWEST_TOGETHER]
    if len(together) >= 2:
        total = sum(u.weight for u in together)
        for rowid in tx.match([u.keys for u in together], limit=pool):
            found += 1
            if rowid not in bound:
                bound[rowid] = total
    if found >= pool:
        return
    for unit in common[:NEWEST_TOGETHER]:
        for rowid in tx.match([unit.keys], limit=pool):
            if rowid not in bound:
                bound[rowid] = unit.weight


def keyword_scores(tx: GraphTx, terms: QueryTerms, rowids: Sequence[int]) -> dict[int, float]:
    """Exact keyword scores (> 0 only) of ``rowids``."""
    out: dict[int, float] = {}
    for rowid, fact_terms, fact_stems in steps.scored_terms(tx, rowids):
        score = terms.score(fact_terms, fact_stems)
        if score > 0.0:
            out[rowid] = score
    return out


def spread(tx: GraphTx, seeds: Sequence[tuple[int, float]]) -> dict[int, float]:
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
        adjacency = tx.neighbours(frontier)
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


@dataclass(frozen=True)
class Ranking:
    """One query's ranking: the best facts and what each score came from."""

    ranked: list[tuple[int, float]]  # (rowid, relevance), best first
    terms: QueryTerms | None
    keyword: dict[int, float]  # keyword score of each fact the words reach
    activation: dict[int, float]  # spreading activation of each fact it reaches
    top: int  # the newest rowid, for recency


def rank(
    tx: GraphTx,
    lexicon: Lexicon,
    query: str,
    want: int,
    fact_count: int,
    blend: Blend | None = None,
) -> list[tuple[int, float]]:
    """``(rowid, score)`` of the best ``want`` facts for ``query``, best first."""
    return ranking(tx, lexicon, query, want, fact_count, blend).ranked


def cut(found: Ranking, k: int) -> Ranking:
    """``found`` with its best ``k`` facts only."""
    return replace(found, ranked=found.ranked[:k])


def ranking(
    tx: GraphTx,
    lexicon: Lexicon,
    query: str,
    want: int,
    fact_count: int,
    blend: Blend | None = None,
) -> Ranking:
    """The best ``want`` facts for ``query`` with the parts of their scores; ``blend`` (with a
    weight above 0) mixes each fact's utility into the order (:mod:`carnb.memgine.utility`)."""
    nothing = Ranking([], None, {}, {}, 0)
    if want <= 0 or fact_count <= 0:
        return nothing
    pending = tx.pending()
    lexicon.see_pending(pending)
    terms, tokens = analyse(tx, lexicon, query, fact_count)
    if not terms.tokens:
        return nothing
    pool = max(MIN_POOL, 2 * want)
    keyword = keyword_scores(tx, terms, candidates(tx, tokens, pool))
    for rowid, fact_terms, fact_stems, _ in pending:
        score = terms.score(fact_terms, fact_stems)
        if score > 0.0:
            keyword[rowid] = score
    if not keyword:
        return Ranking([], terms, {}, {}, 0)
    scores = dict(keyword)
    seeds = sorted(scores.items(), key=lambda item: (-item[1], -item[0]))[:SEEDS]
    activation = spread(tx, seeds)
    reached: list[int] = []
    for rowid, value in activation.items():
        if value > scores.get(rowid, 0.0):
            if rowid not in scores:
                reached.append(rowid)
            scores[rowid] = value
    for rowid in tx.superseded_among(reached) if reached else ():
        del scores[rowid]
    top = tx.max_rowid()
    if blend is not None and blend.weight > 0:
        uses, all_uses = tx.uses(list(scores)), tx.all_uses()
        ranked = sorted(
            scores.items(),
            key=lambda item: (
                -(blend.key(item[1], uses.get(item[0], 0), all_uses)
                  + recency_bonus(top - item[0])),
                -item[0],
            ),
        )  # fmt: skip
    else:
        ranked = sorted(
            scores.items(), key=lambda item: (-with_recency(item[1], top - item[0]), -item[0])
        )
    return Ranking(ranked[:want], terms, keyword, activation, top)


def relevant(ranked: Sequence[tuple[int, float]]) -> list[tuple[int, float]]:
    """The ranked facts worth a context line: relevance at least ``RELEVANT_SHARE`` of the best
    one's and at least ``MIN_RELEVANCE``, in the given order."""
    if not ranked:
        return []
    floor = max(MIN_RELEVANCE, RELEVANT_SHARE * max(score for _, score in ranked))
    return [(rowid, score) for rowid, score in ranked if score >= floor]


def with_recency(relevance: float, newer: int) -> float:
    """Ordering key of a fact with this relevance and ``newer`` facts written after it."""
    return relevance + recency_bonus(newer)


def recency_bonus(newer: int) -> float:
    """What recency adds to the ordering key of a fact with ``newer`` facts written after it."""
    bonus: float = RECENCY_WEIGHT * 0.5 ** (max(0, newer) / RECENCY_HALF_LIFE)
    return bonus


def newest_matching(tx: GraphTx, query: str, limit: int) -> list[int]:
    """Rowids of the newest ``limit`` facts sharing a stem (or a synonym's stem) with the query,
    newest first: the lexical filter of ``build_context_fast`` (no scores)."""
    keys: dict[str, None] = {}
    for token in query_tokens(query, MAX_QUERY_TOKENS):
        keys[index_key(stem(token))] = None
        for synonym in synonym_stems(token):
            keys[index_key(synonym)] = None
    if not keys or limit <= 0:
        return []
    found = tx.match([list(keys)], limit=limit)
    for rowid, _, stems, _ in reversed(tx.pending()):
        if not keys.keys().isdisjoint(stems.split(" ")):
            found.append(rowid)
    found.sort(reverse=True)
    return found[:limit]

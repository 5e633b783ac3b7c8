"""Whole-graph operations on one graph's connection: replacing it from loaded facts, and
consolidating duplicates. The caller (:class:`~carnb.memgine.engine.Memgine`) holds the
graph's lock and a write transaction."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from carnb.memgine import store
from carnb.memgine.interchange import LoadedFact
from carnb.memgine.text import fact_keys, fact_terms

# Contested subjects listed (with up to 10 fact ids each) in the consolidate report.
CONTRADICTION_SAMPLES = 20


def prepare(loaded: list[LoadedFact]) -> list[store.NewFact]:
    """Index terms for each loaded fact (done before the write transaction starts)."""
    now = time.time()
    facts: list[store.NewFact] = []
    for fact in loaded:
        terms = fact_terms(fact.subject, fact.body)
        created = fact.created_at if fact.created_at is not None else now
        facts.append(
            store.NewFact(
                fact.fact_id, fact.subject, fact.body, fact.kind, fact.tags, fact.source,
                fact.confidence, created, terms, fact_keys(terms),
            )
        )  # fmt: skip
    return facts


def replace(conn: sqlite3.Connection, facts: list[store.NewFact]) -> None:
    """Make ``facts`` the whole graph. Minting continues after the highest ``ws-<n>`` loaded."""
    store.clear(conn)
    store.bulk_insert(conn, facts)
    highest = max((ws_number(f.fact_id) for f in facts), default=0)
    if highest >= store.get_meta_int(conn, "next_ws"):
        store.set_meta(conn, "next_ws", highest + 1)


def ws_number(fact_id: str) -> int:
    """``n`` for an id ``ws-<n>``, else 0."""
    head, _, number = fact_id.partition("-")
    if head == "ws" and number.isdigit() and len(number) < 19:
        return int(number)
    return 0


def consolidate(conn: sqlite3.Connection) -> dict[str, Any]:
    """Merge exact duplicates (same subject and body: the oldest survives and keeps the union
    of the tags); report subjects holding different bodies without resolving them."""
    merged = 0
    for keep, *dups in store.duplicate_groups(conn):
        store.merge_into(conn, keep, dups)
        merged += len(dups)
    store.bump_fact_count(conn, -merged)
    contested = store.contested_subjects(conn)
    samples = [
        {"subject": subject, "fact_ids": store.ids_of_subject(conn, subject, 10)}
        for subject in contested[:CONTRADICTION_SAMPLES]
    ]
    return {
        "duplicates_merged": merged,
        "contradictions_found": len(contested),
        "fact_count": store.get_meta_int(conn, "fact_count"),
        "contradictions": samples,
    }

"""Whole-graph operations on one graph's connection: replacing it from loaded facts, and
consolidating duplicates. The caller (:class:`~carnb.memgine.engine.Memgine`) holds the
graph's lock; both open their own transactions, one per bounded batch, so another process
sharing the file never waits long for the write lock."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from carnb.errors import FactIdTaken
from carnb.memgine import steps
from carnb.memgine.backend import GraphTx, NewFact
from carnb.memgine.interchange import LoadedFact
from carnb.memgine.text import fact_keys, fact_terms

# Contested subjects listed (with up to 10 fact ids each) in the consolidate report.
CONTRADICTION_SAMPLES = 20
# A load commits this many facts, or about this many characters of them, per transaction
# (measured: ~40 ms per 1000 short facts), so another process's writes wait about one batch.
LOAD_BATCH = 1000
LOAD_BATCH_CHARS = 2 << 20
# Pause after each batch's commit: a writer waiting for the lock (SQLite polls every few to
# 100 ms) gets in between batches instead of waiting for the whole load.
LOAD_PAUSE_S = 0.01

# consolidate merges about this many facts per transaction.
MERGE_BATCH = 500

Transaction = Callable[[], AbstractContextManager[GraphTx]]


def prepare(loaded: list[LoadedFact], loader: dict[str, Any]) -> list[NewFact]:
    """Index terms for each loaded fact (done before the write transaction starts). Its
    provenance is the file's (a snapshot restored as it was written), or else ``loader`` (who
    loaded it, from which file) with the time of the load."""
    now = time.time()
    facts: list[NewFact] = []
    for fact in loaded:
        terms = fact_terms(fact.subject, fact.body)
        created = fact.created_at if fact.created_at is not None else now
        said = fact.provenance or {**loader, "at": now}
        provenance = json.dumps(said, ensure_ascii=False, default=str)
        facts.append(
            NewFact(
                fact.fact_id, fact.subject, fact.body, fact.kind, fact.tags, fact.source,
                fact.confidence, created, terms, fact_keys(terms), provenance,
            )
        )  # fmt: skip
    return facts


def replace(write: Transaction, facts: Sequence[NewFact]) -> None:
    """Make ``facts`` the whole graph: one short transaction empties it (and moves ``ws-<n>``
    minting past the highest id loaded), then each batch of :func:`batches` commits on its own,
    so the write lock is never held for long. Readers meanwhile see the graph fill up;
    another connection's writes land between batches and are kept. ``write()`` opens a write
    transaction (:meth:`Memgine._write`)."""
    with write() as tx:
        tx.clear()
        highest = max((ws_number(f.fact_id) for f in facts), default=0)
        if highest >= tx.next_ws():
            tx.set_next_ws(highest + 1)
    done = 0
    for batch in batches(facts):
        with write() as tx:
            try:
                steps.append_batch(tx, batch)
            except FactIdTaken as exc:
                raise FactIdTaken(
                    f"memory.load stopped after {done} of {len(facts)} facts: another "
                    f"connection stored one of the file's fact ids meanwhile ({exc}); load again"
                ) from exc
        done += len(batch)
        if done < len(facts):
            time.sleep(LOAD_PAUSE_S)


def batches(facts: Sequence[NewFact]) -> Iterator[Sequence[NewFact]]:
    """``facts`` cut into runs of at most ``LOAD_BATCH`` facts and about ``LOAD_BATCH_CHARS``."""
    start, size = 0, 0
    for end, fact in enumerate(facts, start=1):
        size += len(fact.subject) + len(fact.body) + len(fact.terms) + len(fact.stems)
        if end - start >= LOAD_BATCH or size >= LOAD_BATCH_CHARS:
            yield facts[start:end]
            start, size = end, 0
    if start < len(facts):
        yield facts[start:]


def ws_number(fact_id: str) -> int:
    """``n`` for an id ``ws-<n>``, else 0."""
    head, _, number = fact_id.partition("-")
    if head == "ws" and number.isdigit() and len(number) < 19:
        return int(number)
    return 0


def consolidate(read: Transaction, write: Transaction) -> dict[str, Any]:
    """Merge exact duplicates (same subject and body: the oldest survives and keeps the union
    of the tags); report subjects holding different bodies without resolving them.

    The groups are found in a read (no write lock during the scan), then merged at most
    ``MERGE_BATCH`` facts per transaction; a group changed meanwhile by another connection is
    merged as it stands now. ``read()``/``write()`` open a transaction (:class:`Memgine`)."""
    with read() as tx:
        groups = tx.duplicate_groups()
    merged = 0
    for chunk in _chunks(groups, MERGE_BATCH):
        with write() as tx:
            removed = 0
            for group in chunk:
                alive = steps.same_content(tx, group)
                if len(alive) > 1:
                    steps.merge_into(tx, alive[0], alive[1:])
                    removed += len(alive) - 1
            tx.bump_fact_count(-removed)
        merged += removed
    with read() as tx:
        contested = tx.contested_subjects()
        samples = [
            {"subject": subject, "fact_ids": tx.ids_of_subject(subject, 10)}
            for subject in contested[:CONTRADICTION_SAMPLES]
        ]
        count = tx.fact_count()
    return {
        "duplicates_merged": merged,
        "contradictions_found": len(contested),
        "fact_count": count,
        "contradictions": samples,
    }


def _chunks(groups: list[list[int]], size: int) -> Iterator[list[list[int]]]:
    """Runs of whole groups holding about ``size`` facts each."""
    chunk: list[list[int]] = []
    held = 0
    for group in groups:
        chunk.append(group)
        held += len(group)
        if held >= size:
            yield chunk
            chunk, held = [], 0
    if chunk:
        yield chunk

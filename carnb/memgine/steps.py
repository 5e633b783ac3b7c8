"""memgine's multi-statement steps, written once over :class:`~carnb.memgine.backend.GraphTx`.

Each function here is a loop of policy (which facts a name designates, how far a supersession
chain is followed, which facts fit a context, how loaded facts are linked, how duplicates merge)
over the single statements a store offers, so SQLite and PostgreSQL run the same policy by
construction and a store holds only its SQL. The caller holds the graph's lock and the
transaction ``tx``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from carnb.memgine.backend import Changed, GraphTx, Linked, NewFact

# Re-scoring reads this many characters of a candidate's terms and stems (:func:`scored_terms`),
# so scoring a fact costs the same however big it is.
SCORED_CHARS = 64 * 1024
# Rowids per statement where a step reads rows by rowid.
CHUNK = 500


def mint_id(tx: GraphTx) -> str:
    """The next free ``ws-<n>`` (a caller's own ``ws-7`` is skipped, never shadowed)."""
    n = tx.next_ws()
    while tx.rowid_of(f"ws-{n}") is not None:
        n += 1
    tx.set_next_ws(n + 1)
    return f"ws-{n}"


def resolve_targets(tx: GraphTx, names: Sequence[str]) -> tuple[list[Changed], list[str]]:
    """The valid facts that ``names`` (fact ids, else subjects) designate, oldest first, and the
    names that designate no fact at all. A name that is a fact id designates that fact (nothing
    when it is already superseded); otherwise every valid fact with that subject, and none when
    they are all superseded already."""
    found: dict[int, Changed] = {}
    missing: list[str] = []
    for name in names:
        by_id = tx.target(name)
        targets = [by_id] if by_id is not None else tx.targets_of_subject(name)
        if not targets:
            missing.append(name)
        for rowid, fact_id, kind, stems, superseded_by in targets:
            if superseded_by is None:
                found[rowid] = (rowid, fact_id, kind, stems)
    return [found[r] for r in sorted(found)], missing


def supersede_by_ids(tx: GraphTx, links: Sequence[tuple[str, str]]) -> None:
    """After a load: ``(old fact_id, new fact_id)`` pairs; each old fact still valid is
    superseded by the new one when both are stored."""
    for old_id, new_id in links:
        old = tx.target(old_id)
        new = tx.rowid_of(new_id)
        if old is not None and old[4] is None and new is not None:
            tx.supersede([old[:4]], new)


def history(tx: GraphTx, start: Sequence[int], limit: int) -> list[tuple[Any, ...]]:
    """The facts linked to ``start`` by supersession (either way, transitively), ``start``
    included, newest first, at most ``limit``: ``FACT_COLUMNS, confidence, created_at,
    superseded_by's fact_id``."""
    seen: set[int] = set(start)
    frontier = list(start)
    while frontier and len(seen) < limit:
        frontier = [r for r in tx.supersession_step(frontier) if r not in seen]
        frontier = frontier[: limit - len(seen)]
        seen.update(frontier)
    chosen = sorted(seen, reverse=True)[:limit]
    return tx.stored_rows(chosen) if chosen else []


def newest_valid_lines(tx: GraphTx, room: int, most: int) -> tuple[list[int], bool]:
    """Rowids of the newest valid non-constraint facts (at most ``most``) whose context lines
    fit in ``room`` characters together, newest first, and whether that is all of them. Stops
    at the first fact that does not fit, so it reads no more rows than it returns."""
    out: list[int] = []
    used = 0
    for rowid, size in tx.line_sizes():
        used += size
        if used > room or len(out) >= most:
            return out, False
        out.append(rowid)
    return out, True


def scored_terms(tx: GraphTx, rowids: Sequence[int]) -> Iterator[tuple[int, str, str]]:
    """``(rowid, terms, stems)`` of the stored ones of ``rowids``, each cut to its first
    ``SCORED_CHARS`` characters (whole tokens)."""
    for start in range(0, len(rowids), CHUNK):
        chunk = rowids[start : start + CHUNK]
        for rowid, terms, stems in tx.term_prefixes(chunk, SCORED_CHARS + 1):
            yield rowid, whole_tokens(terms), whole_tokens(stems)


def whole_tokens(text: str) -> str:
    """``text`` (read as ``SCORED_CHARS + 1`` characters at most) without a cut last token."""
    if len(text) <= SCORED_CHARS:
        return text
    return text[: max(0, text.rfind(" ", 0, SCORED_CHARS + 1))]


def append_batch(tx: GraphTx, facts: Sequence[NewFact]) -> None:
    """Append ``facts`` after the newest stored fact, each linked after the newest fact with its
    subject (stored or earlier in ``facts``), indexed and counted. Other connections may have
    written between two batches of one load; a fact id stored meanwhile raises
    :class:`~carnb.memgine.backend.FactIdTaken`."""
    base = tx.max_rowid()
    newest: dict[str, int | None] = {}
    rows: list[Linked] = []
    for rowid, fact in enumerate(facts, start=base + 1):
        if fact.subject not in newest:
            newest[fact.subject] = tx.newest_of_subject(fact.subject)
        rows.append((rowid, fact, newest[fact.subject]))
        newest[fact.subject] = rowid
    tx.insert_batch(rows)
    tx.bump_fact_count(len(facts))


def same_content(tx: GraphTx, rowids: Sequence[int]) -> list[int]:
    """Those of ``rowids`` still stored, still valid and with the content (subject and body) of
    the oldest such one, ascending (for merging a duplicate group found in an earlier
    transaction: a fact superseded meanwhile is no longer a duplicate)."""
    rows = tx.valid_contents(rowids)
    return [rowid for rowid, subject, body in rows if (subject, body) == rows[0][1:]]


def merge_into(tx: GraphTx, keep: int, dups: Sequence[int]) -> None:
    """Remove the valid facts ``dups``; ``keep`` gets the union of their tags and takes over what
    they superseded. The caller counts the removed facts."""
    tags: list[str] = json.loads(tx.tags_and_stems(keep)[0])
    for dup in dups:
        dup_tags, stems = tx.tags_and_stems(dup)
        tags.extend(tag for tag in json.loads(dup_tags) if tag not in tags)
        tx.release(dup, keep)
        tx.remove_fact(dup, stems)
    tx.set_tags(keep, json.dumps(tags, ensure_ascii=False))


def restore(
    tx: GraphTx, fact: NewFact, rowid: int | None, successor: str | None, replaced: Sequence[str]
) -> tuple[int, str | None, list[str]]:
    """Store a deleted fact again with its supersession links as the delete left them: it is
    superseded by ``successor`` again (when that fact is still stored) and supersedes again the
    facts of ``replaced`` that are still valid or still superseded by ``successor`` (where the
    delete passed them). It returns to its old place, ``rowid``, when that is free and still lies
    between those facts; otherwise it becomes the newest fact, and then valid (a fact is only
    ever superseded by a newer one). Returns its rowid, the id of its successor and the ids of
    the facts it supersedes again."""
    after = tx.target(successor) if successor is not None else None
    after_rowid = None if after is None else after[0]
    olds = [t for t in (tx.target(name) for name in replaced) if t is not None]
    olds = [t for t in olds if t[4] is None or (after_rowid is not None and t[4] == after_rowid)]
    fits = (
        rowid is not None
        and rowid > max((t[0] for t in olds), default=0)
        and (after_rowid is None or rowid < after_rowid)
        and not tx.rows_by_rowid([rowid], "fact_id")
    )
    if fits and rowid is not None:
        tx.insert_fact_at(fact, rowid)
    else:
        rowid, after, after_rowid = tx.insert_fact(fact), None, None
    tx.bump_fact_count(1)
    if after_rowid is not None:
        tx.supersede([(rowid, fact.fact_id, fact.kind, fact.stems)], after_rowid)
    tx.supersede([t[:4] for t in olds if t[4] is None], rowid)
    tx.repoint([t[0] for t in olds if t[4] is not None], rowid)
    return rowid, None if after is None else after[1], [t[1] for t in olds]

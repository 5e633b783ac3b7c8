"""One memgine graph: the synchronous, thread-safe engine behind ``memory.*``.

:class:`Memgine` is the policy (validation, supersession, ranking, context) over one graph's
storage, a :class:`~carnb.memgine.backend.GraphBackend`: by default SQLite (a file, or
``:memory:`` for an ephemeral graph; :mod:`carnb.memgine.sqlite_graph`), or a team's PostgreSQL
store. It holds an ``RLock``; every public method takes the lock, so one graph can be shared by
the server loop and worker threads (``asyncio.to_thread``). Writes run in transactions serialised
with every other writer of the graph and are committed before the method returns.
Errors are :mod:`carnb.errors` types: :class:`InvalidParams` for bad input (naming the field),
:class:`CarnbError` for conflicts and storage failures; nothing is changed when one is raised.

Cost: ``add_fact``, ``query``, ``build_context*``, ``delete``, ``fact_count`` take about a
millisecond even at 100k facts. ``persist``, ``load`` and ``consolidate`` touch the whole graph
(up to seconds at 100k facts) and hold the graph's lock while they read or write it, so a caller
on an event loop should run them, and any call that may wait for them, in a worker thread.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from carnb.errors import CallerFault, InvalidParams, ServerFault
from carnb.memgine import bulk, context, interchange, proactive, ranking, steps, utility, validate
from carnb.memgine.backend import (
    FACT_COLUMNS,
    PINNED,
    GraphBackend,
    GraphTx,
    NewFact,
)
from carnb.memgine.lexicon import Lexicon
from carnb.memgine.sqlite_graph import SqliteGraph
from carnb.memgine.text import fact_keys, fact_terms

log = logging.getLogger("carnb.memgine")

# Facts ranked for the ``## Facts`` section of a context (fewer when the budget left after the
# constraints cannot hold that many), plus a margin for constraints among the ranked facts; of
# them, the relevant ones are shown (ranking.relevant).
CONTEXT_FACTS = 64
# The newest valid facts every context shows (the conversation's working set), relevant or not.
RECENT_FACTS = 8
CONSTRAINT_MARGIN = 8
CONSTRAINT = "constraint"
# memory.history returns at most this many facts; memory.diff this many of each change.
HISTORY_LIMIT = 1000
DIFF_LIMIT = 1000


class Memgine:
    """A memory graph (docs/memgine.md). ``path=None``: an in-memory graph that dies on close.
    ``backend``: where the graph is stored instead (a PostgreSQL store's graph)."""

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, backend: GraphBackend | None = None
    ) -> None:
        self.path: Path | None = None if path is None else Path(path).expanduser().absolute()
        self._backend: GraphBackend = backend if backend is not None else SqliteGraph(self.path)
        self.persistent: bool = self._backend.persistent
        self._lock = threading.RLock()
        self._lexicon = Lexicon()
        # Rendered "## Constraints" block and its size; None when it must be rebuilt.
        self._constraints: tuple[str, int] | None = None
        # The valid pinned facts ``(rowid, fact_id, subject, body)``; None when to be re-read.
        self._pinned: list[tuple[int, str, str, str]] | None = None
        # The graph's utility blend (memory.utility_set); None when to be re-read.
        self._blend: utility.Blend | None = None
        # Set by close_if_idle: the next use opens the graph again, after admit(self).
        self._reopen = False
        self.admit: Callable[[Memgine], None] | None = None
        self.last_used = time.monotonic()
        self.start()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Open the graph (idempotent). A persistent graph's folder is created as needed."""
        with self._lock:
            if self._backend.is_open:
                return
            self._backend.open()
            self._forget()

    def close(self) -> None:
        """Close the graph (idempotent). An in-memory graph's facts are gone afterwards."""
        with self._lock:
            self._reopen = False
            self._backend.close()

    @property
    def closed(self) -> bool:
        return not self._backend.is_open

    @property
    def holds_files(self) -> bool:
        """Whether the open graph holds file descriptors (MemoryHome bounds those)."""
        return self._backend.holds_files

    def __repr__(self) -> str:
        return f"Memgine({self._backend.label!r})"

    def _forget(self) -> None:
        """Drop the caches derived from the stored graph (another connection wrote to it)."""
        self._lexicon.clear()
        self._constraints = None
        self._pinned = None
        self._blend = None

    def _ready(self) -> None:
        """The caller holds the lock: a graph closed while idle opens again here."""
        self.last_used = time.monotonic()
        if not self._backend.is_open:
            if not self._reopen:
                raise ServerFault("memory graph is closed")
            self._resume()

    # -- closing while idle (MemoryHome bounds the open graphs) ------------------------------

    def close_if_idle(self) -> bool:
        """Close the graph's connection and checkpoint thread now unless a call is using it
        (never waits); its next use opens it again. Returns whether it was closed."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            if not self._backend.is_open or not self._backend.holds_files:
                return False
            self.close()
            self._reopen = True
            return True
        finally:
            self._lock.release()

    def _resume(self) -> None:
        if self.admit is not None:
            self.admit(self)  # makes room (closing other idle graphs) and starts it, or refuses
        self.start()
        self._reopen = False

    @contextmanager
    def _write(self) -> Iterator[GraphTx]:
        with self._lock:
            self._ready()
            try:
                with self._backend.write() as tx:
                    if tx.foreign_change:
                        self._forget()
                    yield tx
            except BaseException:
                self._forget()  # caches may already count the change that was rolled back
                raise

    @contextmanager
    def _read(self) -> Iterator[GraphTx]:
        """A consistent snapshot for multi-statement reads."""
        with self._lock:
            self._ready()
            with self._backend.read() as tx:
                if tx.foreign_change:
                    self._forget()
                yield tx

    # -- facts -------------------------------------------------------------------------------

    def add_fact(self, subject: str, body: str, kind: str | None = "pattern", **kw: Any) -> int:
        """Store a fact; returns the number of valid facts after the write (:meth:`write`)."""
        return self.write(subject, body, kind, **kw)[1]

    def write(
        self,
        subject: str,
        body: str,
        kind: str | None = "pattern",
        *,
        fact_id: str | None = None,
        tags: list[str] | None = None,
        source: str | None = "user",
        confidence: float | None = None,
        supersedes: list[str] | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> tuple[str, int]:
        """Store a fact; returns its id and the number of valid facts after the write.

        Same id with the same subject and body: nothing changes (``supersedes`` included). Same
        id with other content: :class:`CarnbError`, nothing changes. No id: ``ws-<n>``, never an
        existing id. ``supersedes``: fact ids or subjects (an id wins) whose valid facts this one
        replaces; a name that is neither is :class:`InvalidParams` and nothing is written.
        ``None`` for an optional field means its default (so a handler can pass params through).
        ``provenance``: who is writing (the server's account, :func:`written_by`); ``at``, the
        time of the write, is added.
        """
        subject = validate.subject(subject)
        body = validate.body(body)
        kind = validate.name("pattern" if kind is None else kind, "kind")
        fact_id = validate.optional_name(fact_id, "fact_id")
        tag_list = validate.tags(tags)
        source = validate.name("user" if source is None else source, "source")
        stored_confidence = validate.confidence(confidence)
        replaced = validate.supersedes(supersedes)
        terms = fact_terms(subject, body)
        now = time.time()
        fact = NewFact(
            fact_id or "", subject, body, kind, tag_list, source, stored_confidence,
            now, terms, fact_keys(terms), written_by(provenance, now),
        )  # fmt: skip
        with self._write() as tx:
            if fact_id is not None:
                stored = tx.content_of(fact_id)
                if stored is not None:
                    if stored == (subject, body):
                        return fact_id, tx.fact_count()
                    raise CallerFault(
                        f"fact {fact_id!r} already exists with different content; delete it "
                        "first or use another id"
                    )
            targets, missing = steps.resolve_targets(tx, replaced)
            if missing:
                raise InvalidParams(
                    f"supersedes names no stored fact id or subject: {missing[0]!r}"
                    + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                    + "; nothing was written"
                )
            if fact_id is None:
                fact.fact_id = steps.mint_id(tx)
            rowid = tx.insert_fact(fact)
            tx.bump_fact_count(1)
            tx.supersede(targets, rowid)
            count = tx.fact_count()
            self._lexicon.added(fact.stems)  # under the lock; dropped if the commit fails
            for _, _, _, old_stems in targets:
                self._lexicon.removed(old_stems)
            if kind == CONSTRAINT or any(t[2] == CONSTRAINT for t in targets):
                self._constraints = None
            if targets or PINNED in tag_list:
                self._pinned = None
        return fact.fact_id, count

    def related(self, fact_id: str) -> list[str]:
        """Ids of the facts linked to ``fact_id`` (``RelatedTo``: the previous and the next fact
        with the same subject); ``[]`` for an unknown id."""
        fact_id = validate.name(fact_id, "id")
        with self._read() as tx:
            rowid = tx.rowid_of(fact_id)
            if rowid is None:
                return []
            around = tx.neighbours([rowid])[rowid]
            ids = tx.rows_by_rowid(around, "fact_id")
        return [ids[r][0] for r in sorted(around) if r in ids]

    def fact_count(self) -> int:
        with self._read() as tx:
            return tx.fact_count()

    def fact_count_if_idle(self) -> int | None:
        """The count, or ``None`` at once when another call holds the graph (a long load, say):
        for callers on the server's loop, which must never wait for a graph."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            return self.fact_count()  # the lock is re-entrant: taken at once now
        finally:
            self._lock.release()

    def delete(self, fact_id: str, provenance: dict[str, Any] | None = None) -> dict[str, Any]:
        """Remove a fact, its edges and index entries: ``{id, deleted, kind, fact_count}``.
        The deletion log keeps its text and who deleted it (``provenance``) for ``diff``."""
        fact_id = validate.name(fact_id, "id")
        with self._write() as tx:
            row = tx.deletable(fact_id)
            if row is None:
                count = tx.fact_count()
                return {"id": fact_id, "deleted": False, "kind": None, "fact_count": count}
            rowid, kind, stems, successor = row
            stored = tx.stored_rows([rowid])[0]
            _, subject, body, _, tags, source, wrote, confidence, created_at, after = stored
            replaced = [r for r in tx.supersession_step([rowid]) if r != successor]
            ids = tx.rows_by_rowid(replaced, "fact_id") if replaced else {}
            kept = {
                "rowid": rowid, "tags": json.loads(tags), "source": source,
                "confidence": confidence, "created_at": created_at,
                "provenance": json.loads(wrote), "superseded_by": after,
                "supersedes": sorted(ids[r][0] for r in ids),
            }  # fmt: skip
            now = time.time()
            tx.log_deletion(
                (fact_id, subject, body, kind, now, written_by(provenance, now)),
                json.dumps(kept, ensure_ascii=False, default=str),
            )  # fmt: skip
            revived = tx.release(rowid, successor)
            tx.remove_fact(rowid, stems, valid=successor is None)
            if successor is None:
                tx.bump_fact_count(-1)
                self._lexicon.removed(stems)
            count = tx.fact_count()
            for _, _, _, old_stems in revived:
                self._lexicon.added(old_stems)
            if kind == CONSTRAINT or any(r[2] == CONSTRAINT for r in revived):
                self._constraints = None
            self._pinned = None
        return {"id": fact_id, "deleted": True, "kind": kind, "fact_count": count}

    def restore(self, fact_id: str, provenance: dict[str, Any] | None = None) -> dict[str, Any]:
        """Store the newest deleted fact with this id again, as it was: its content, tags,
        source, confidence, time and provenance, and its supersession links
        (:func:`carnb.memgine.steps.restore`); the deletion leaves the log.
        ``{id, restored, superseded_by, supersedes, fact_count}``. A deletion logged before
        carnb kept these comes back as a new valid fact written by ``provenance``."""
        fact_id = validate.name(fact_id, "id")
        with self._write() as tx:
            if tx.rowid_of(fact_id) is not None:
                raise InvalidParams(f"fact {fact_id!r} is stored; there is nothing to restore")
            taken = tx.take_deletion(fact_id)
            if taken is None:
                raise InvalidParams(f"no deleted fact {fact_id!r} to restore")
            (_, subject, body, kind, at, _), kept_text = taken
            kept: dict[str, Any] = json.loads(kept_text) if kept_text else {}
            terms = fact_terms(subject, body)
            fact = NewFact(
                fact_id, subject, body, kind, list(kept.get("tags", [])),
                str(kept.get("source", "user")), kept.get("confidence"),
                float(kept.get("created_at", at)), terms, fact_keys(terms),
                json.dumps(kept["provenance"], ensure_ascii=False) if "provenance" in kept
                else written_by(provenance, time.time()),
            )  # fmt: skip
            _, after, replaced = steps.restore(
                tx, fact, kept.get("rowid"), kept.get("superseded_by"), kept.get("supersedes", [])
            )  # fmt: skip
            count = tx.fact_count()
            self._forget()  # document frequencies, constraints and pins may all have changed
        return {
            "id": fact_id, "restored": True, "superseded_by": after, "supersedes": replaced,
            "fact_count": count,
        }  # fmt: skip

    def diff(self, since: float) -> dict[str, Any]:
        """What changed since a time: the facts written since (valid or superseded meanwhile),
        the facts superseded since, and the facts deleted since (each list oldest first, at
        most ``DIFF_LIMIT``)."""
        since = validate.since(since)
        with self._read() as tx:
            added = tx.stored_rows(tx.written_since(since, DIFF_LIMIT))
            superseded = tx.stored_rows(tx.superseded_since(since, DIFF_LIMIT))
            deleted = tx.deleted_since(since, DIFF_LIMIT)
        return {
            "since": since,
            "added": [_stored_dict(r) for r in reversed(added)],
            "superseded": [_stored_dict(r) for r in reversed(superseded)],
            "deleted": [
                {
                    "fact_id": d[0],
                    "subject": d[1],
                    "body": d[2],
                    "kind": d[3],
                    "deleted_at": d[4],
                    "provenance": json.loads(d[5]),
                }
                for d in deleted
            ],  # fmt: skip
        }

    def edit(
        self,
        fact_id: str,
        body: str,
        subject: str | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Replace a valid fact by an edited copy (same kind, tags and source; ``subject``
        kept unless given) that supersedes it, so the old text stays in its history:
        ``{id, replaces, fact_count}``."""
        fact_id = validate.name(fact_id, "id")
        with self._read() as tx:
            target = tx.target(fact_id)
            if target is None:
                raise InvalidParams(f"no fact {fact_id!r} to edit")
            if target[4] is not None:
                raise InvalidParams(
                    f"fact {fact_id!r} is superseded; edit the fact that replaced it"
                )
            old = tx.rows_by_rowid([target[0]], FACT_COLUMNS)[target[0]]
        _, old_subject, _, kind, tags, source, _ = old
        new_id, count = self.write(
            old_subject if subject is None else subject, body, kind, tags=json.loads(tags),
            source=source, supersedes=[fact_id], provenance=provenance,
        )  # fmt: skip
        return {"id": new_id, "replaces": fact_id, "fact_count": count}

    def pin(self, fact_id: str, pinned: bool = True) -> dict[str, Any]:
        """Pin a valid fact (every context shows it) or unpin it, by its ``PINNED`` tag:
        ``{id, pinned, changed}``."""
        fact_id = validate.name(fact_id, "id")
        with self._write() as tx:
            target = tx.target(fact_id)
            if target is None:
                raise InvalidParams(f"no fact {fact_id!r} to pin")
            if target[4] is not None and pinned:
                raise InvalidParams(
                    f"fact {fact_id!r} is superseded; pin the fact that replaced it"
                )
            tags, _ = tx.tags_and_stems(target[0])
            now = json.loads(tags)
            wanted = ([*now, PINNED] if PINNED not in now else now) if pinned else [
                t for t in now if t != PINNED]  # fmt: skip
            changed = wanted != now
            if changed:
                tx.set_tags(target[0], json.dumps(wanted, ensure_ascii=False))
                self._pinned = None
        return {"id": fact_id, "pinned": pinned, "changed": changed}

    def facts(self, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
        """Stored facts, superseded ones included, in creation order (``confidence`` is the
        stored one, maybe ``None``; ``superseded_by`` the replacing fact's id or ``None``)."""
        limit, offset = validate.limit_offset(limit, offset)
        with self._read() as tx:
            rows = tx.fact_rows(limit, offset)
        return [_stored_dict(row) for row in rows]

    def history(
        self, subject: str | None = None, fact_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The supersession chain of a subject (its facts) or of one fact: every fact linked to
        them by supersession, either way, newest first, at most ``HISTORY_LIMIT``; ``[]`` when
        nothing matches. Each row is a stored fact with ``superseded_by`` (``None``: valid)."""
        if (subject is None) == (fact_id is None):
            raise InvalidParams("give exactly one of subject and fact_id")
        with self._read() as tx:
            if fact_id is not None:
                rowid = tx.rowid_of(validate.name(fact_id, "fact_id"))
                start = [] if rowid is None else [rowid]
            else:
                start = tx.rowids_of_subject(validate.subject(subject), HISTORY_LIMIT)
            rows = steps.history(tx, start, HISTORY_LIMIT)
        return [_stored_dict(row) for row in rows]

    def check(self) -> None:
        """Verify the stored graph (SQLite integrity, the full-text index against the facts,
        the fact count); raises :class:`CarnbError` naming what is wrong. Changes nothing (the
        pending batch is indexed inside a transaction that is rolled back)."""
        with self._lock:
            self._ready()
            problems = self._backend.problems()
        if problems:
            raise ServerFault(f"memory graph {self!r} is damaged: " + "; ".join(problems[:5]))

    # -- retrieval ---------------------------------------------------------------------------

    def query(self, query: str, k: int = 5, *, explain: bool = False) -> list[dict[str, Any]]:
        """The ``k`` most relevant facts, best first, ``confidence`` = score in [0, 1].
        ``explain``: each row also says why it ranked (:func:`_explained`)."""
        query = validate.query(query)
        k = validate.k(k)
        if k <= 0:
            return []
        with self._read() as tx:
            blend = self._blend_of(tx)
            want = k if blend.weight <= 0 else min(validate.MAX_K, 2 * k)
            found = ranking.ranking(tx, self._lexicon, query, want, tx.fact_count(), blend)
            found = ranking.cut(found, k)
            rowids = [rowid for rowid, _ in found.ranked]
            rows = tx.rows_by_rowid(rowids, FACT_COLUMNS)
            why = _explained(tx, found, rowids) if explain else {}
        out = []
        for rowid, score in found.ranked:
            row = rows.get(rowid)
            if row is not None:
                fact = {**_fact_dict(row), "confidence": round(score, 6)}
                if explain:
                    fact["explain"] = why[rowid]
                out.append(fact)
        return out

    def build_context(self, query: str, model_context_window: int | None = None) -> str:
        """Constraints, then the recent facts and the relevant ones within the token budget,
        most relevant last (docs/memgine.md, Context).

        Recent: the ``RECENT_FACTS`` newest valid facts, oldest first. Relevant: the ranked
        facts whose relevance reaches ``RELEVANT_SHARE`` of the best one's (and at least
        ``MIN_RELEVANCE``), at most ``CONTEXT_FACTS``, ascending by score. Pinned facts come
        last, always. The budget is an upper bound: the render drops lines from the top (the
        oldest recent fact, then the least relevant) only when the text would pass it."""
        query = validate.query(query)
        budget = context.budget_tokens(validate.window(model_context_window))
        with self._read() as tx:
            block, size = self._constraint_block(tx)
            if self._pinned is None:
                self._pinned = tx.pinned_rows()
            pinned = {row[0]: row[1:] for row in self._pinned}
            room = context.fact_room(budget, size)
            newest, _ = steps.newest_valid_lines(tx, room, RECENT_FACTS)
            want = context.fact_slots(budget, size, CONTEXT_FACTS)
            count = tx.fact_count()
            blend = self._blend_of(tx)
            ranked = ranking.rank(
                tx, self._lexicon, query, want + CONSTRAINT_MARGIN, count, blend
            )  # fmt: skip
            relevant = ranking.relevant(ranked)
            chosen = {r for r, _ in relevant}
            rows = tx.rows_by_rowid(
                [r for r, _ in relevant] + [r for r in newest if r not in chosen],
                "fact_id, subject, body, kind",
            )  # fmt: skip
        best = [
            r for r, _ in relevant if r in rows and rows[r][3] != CONSTRAINT and r not in pinned
        ][:want]
        recent = sorted(r for r in newest if r not in chosen and r not in pinned)
        lines = [rows[r][:3] for r in recent + best[::-1] if r in rows]
        lines += [pinned[r] for r in sorted(pinned)]
        return context.render(block, lines, budget)

    def build_context_fast(self, query: str, model_context_window: int | None = None) -> str:
        """Constraints, then the newest facts matching the query lexically, in creation order
        (no ranking, no spreading), within the token budget (oldest dropped first)."""
        query = validate.query(query)
        budget = context.budget_tokens(validate.window(model_context_window))
        with self._read() as tx:
            block, size = self._constraint_block(tx)
            want = context.fact_slots(budget, size, CONTEXT_FACTS)
            found = ranking.newest_matching(tx, query, want + CONSTRAINT_MARGIN)
            rows = tx.rows_by_rowid(found, "fact_id, subject, body, kind")
        lines = [rows[r][:3] for r in sorted(rows) if rows[r][3] != CONSTRAINT][-want:]
        return context.render(block, lines, budget)

    # -- proactive memory ----------------------------------------------------------------

    def intervene(self, request: dict[str, Any]) -> dict[str, Any]:
        """At most one grounded reminder for the next action, or an explicit silence
        (:mod:`carnb.memgine.proactive`); an injected reminder counts as a use of its fact
        (utility-aware retrieval)."""
        parsed = proactive.parse_request(request)
        with self._lock:
            answer = proactive.decide(self._candidates, parsed, {"facts": self.fact_count()})
            if answer["decision"] == "inject":
                with self._write() as tx:
                    rowid = tx.rowid_of(answer["selected"]["fact_id"])
                    if rowid is not None:
                        tx.add_use(rowid)
            return answer

    # -- utility-aware retrieval ---------------------------------------------------------

    def utility_get(self) -> dict[str, float]:
        """The graph's utility blend: ``{utility_weight, utility_exploration}``."""
        with self._read() as tx:
            return self._blend_of(tx).as_dict()

    def utility_set(self, changes: dict[str, Any]) -> dict[str, float]:
        """Change the blend (an omitted field keeps its value; clamped, a non-finite number
        is 0); returns the blend as stored. Every engine on the graph uses it from its next
        query or context (another server's at its next transaction)."""
        with self._write() as tx:
            blend = utility.applied(self._blend_of(tx), changes)
            tx.set_utility_blend(blend.weight, blend.exploration)
            self._blend = blend
        return blend.as_dict()

    def _blend_of(self, tx: GraphTx) -> utility.Blend:
        if self._blend is None:
            stored = tx.utility_blend()
            self._blend = utility.Blend() if stored is None else utility.Blend(*stored)
        return self._blend

    def evaluate(self, cases: Any) -> dict[str, Any]:
        """Precision and recall of the selector and its baselines on labelled cases."""
        parsed = proactive.parse_cases(cases)
        with self._lock:
            return proactive.evaluate(self._candidates, parsed, {"facts": self.fact_count()})

    def _candidates(self, text: str, k: int) -> list[dict[str, Any]]:
        return self.query(text, k)

    def _constraint_block(self, tx: GraphTx) -> tuple[str, int]:
        """The rendered constraints section (cached until a constraint changes)."""
        if self._constraints is None:
            block = context.constraints_block(tx.constraint_rows())
            self._constraints = (block, len(block))
        return self._constraints

    # -- whole graph -------------------------------------------------------------------------

    def persist(self, path: Path) -> int:
        """Write the whole graph as JSON at ``path`` (already sandbox-resolved), atomically;
        returns the number of facts written. Links are not written: they follow from subjects
        and order, and ``load`` rebuilds them."""
        with self._read() as tx:
            facts = tx.fact_rows()
        return interchange.write_atomic(Path(path), map(_persisted_dict, facts))

    def load(self, path: Path, provenance: dict[str, Any] | None = None) -> int:
        """Replace the graph with the file's facts; returns the count.

        The file is read and checked first: a missing, corrupt or foreign file raises and
        leaves the graph as it was. The graph is then emptied and refilled in batches, each
        its own transaction (:func:`carnb.memgine.bulk.replace`), so another process's writes
        never wait for the whole load. A fact's provenance is the file's, or else the loader's
        (``provenance``) naming the file."""
        loaded = interchange.read(Path(path))
        facts = bulk.prepare(loaded, {**(provenance or {}), "loaded_from": Path(path).name})
        links = [(f.fact_id, f.superseded_by) for f in loaded if f.superseded_by]
        with self._lock:
            try:
                bulk.replace(self._write, facts)
                # supersession links once every fact is stored, in short transactions too
                for start in range(0, len(links), bulk.LOAD_BATCH):
                    with self._write() as tx:
                        steps.supersede_by_ids(tx, links[start : start + bulk.LOAD_BATCH])
            finally:
                self._forget()
        log.info("memgine: loaded %d facts from %s", len(facts), path)
        return len(facts)

    def consolidate(self) -> dict[str, Any]:
        """Merge exact duplicates (same subject and body: the oldest survives and keeps the
        union of the tags); report subjects holding different bodies without resolving them."""
        with self._lock:
            report = bulk.consolidate(self._read, self._write)
            if report["duplicates_merged"]:
                self._forget()
        return report


def written_by(provenance: dict[str, Any] | None, at: float) -> str:
    """A fact's stored provenance: the writer's account plus the time, as JSON text."""
    return json.dumps({**(provenance or {}), "at": at}, ensure_ascii=False, default=str)


def _explained(tx: GraphTx, found: ranking.Ranking, rowids: list[int]) -> dict[int, dict[str, Any]]:
    """Why each of ``rowids`` ranked: the query words it holds (how each matched, its rarity
    weight, its share of the keyword score), the keyword score, the activation spreading gave
    it, the relevance (the larger: its ``confidence``), the recency bonus of the order and how
    many facts were written after it, whether it is a constraint, whether build_context would
    show it as relevant, and its supersession state (valid; the ids it replaced)."""
    words: dict[int, list[dict[str, object]]] = {}
    if found.terms is not None:
        for rowid, terms, stems in steps.scored_terms(tx, rowids):
            words[rowid] = found.terms.explain(terms, stems)
    shown = {rowid for rowid, _ in ranking.relevant(found.ranked)}
    kinds = tx.rows_by_rowid(rowids, "fact_id, kind")
    relevance = dict(found.ranked)
    out: dict[int, dict[str, Any]] = {}
    for rowid in rowids:
        newer = found.top - rowid
        replaced = [r for r in tx.supersession_step([rowid]) if r != rowid]
        ids = tx.rows_by_rowid(replaced, "fact_id") if replaced else {}
        out[rowid] = {
            "words": words.get(rowid, []),
            "keyword_score": round(found.keyword.get(rowid, 0.0), 6),
            "activation": round(found.activation.get(rowid, 0.0), 6),
            "relevance": round(relevance[rowid], 6),
            "recency": round(ranking.recency_bonus(newer), 6),
            "newer_facts": newer,
            "constraint": rowid in kinds and kinds[rowid][1] == CONSTRAINT,
            "in_context": rowid in shown,
            "superseded_by": None,
            "supersedes": sorted(ids[r][0] for r in ids),
        }
    return out


def _stored_dict(row: tuple[Any, ...]) -> dict[str, Any]:
    """A ``GraphTx.fact_rows`` / ``steps.history`` row as a dict."""
    return {
        **_fact_dict(row[:7]),
        "confidence": row[7],
        "created_at": row[8],
        "superseded_by": row[9],
    }


def _persisted_dict(row: tuple[Any, ...]) -> dict[str, Any]:
    """A fact as persisted: ``superseded_by`` only when it is superseded."""
    out = _stored_dict(row)
    if out["superseded_by"] is None:
        del out["superseded_by"]
    return out


def _fact_dict(row: tuple[Any, ...]) -> dict[str, Any]:
    fact_id, subject, body, kind, tags, source, provenance = row
    return {
        "fact_id": fact_id,
        "subject": subject,
        "body": body,
        "kind": kind,
        "tags": json.loads(tags),
        "source": source,
        "provenance": json.loads(provenance),
    }

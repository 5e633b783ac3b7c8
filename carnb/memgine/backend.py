"""The seam between memgine's policy and its stores: what a graph's storage must offer.

:class:`~carnb.memgine.engine.Memgine` (policy: validation, supersession, ranking, context) sees
its storage only through :class:`GraphBackend` (open, close, transactions) and, inside a
transaction, :class:`GraphTx` (every read and write memgine runs, with the same meaning whatever
the store). Two stores implement them: SQLite (:mod:`carnb.memgine.sqlite_graph` over
:mod:`carnb.memgine.store`: one file per graph, or memory) and PostgreSQL
(:mod:`carnb.pgstore.memgine_sql`: every graph of a team in shared tables). Both pass one test
suite, so ranking, supersession and context rules are the same on either.

Rows are identified by ``rowid``: a graph's creation order (increasing, never reused while the
fact is stored). ``foreign_change`` on a transaction says another connection (another kernel or
server) wrote to the graph since this engine last looked, so caches derived from the stored
graph must be dropped.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(slots=True)
class NewFact:
    """A validated fact ready to be inserted (``terms`` and ``stems`` already computed)."""

    fact_id: str
    subject: str
    body: str
    kind: str
    tags: list[str]
    source: str
    confidence: float | None
    created_at: float
    terms: str
    stems: str
    # Who wrote it and when, as JSON text: decided by the server, never by a client field.
    provenance: str = "{}"


# (rowid, fact_id, kind, stems) of a fact whose validity changes
Changed = tuple[int, str, str, str]
# (rowid, terms, stems, kind) of a valid fact not yet in the full-text index
Pending = tuple[int, str, str, str]
# (rowid, fact_id, kind, stems, superseded_by) of a fact a name may designate
Target = tuple[int, str, str, str, int | None]
# (rowid, fact, prev) of a fact to append: its rowid and the newest earlier fact of its subject
Linked = tuple[int, NewFact, int | None]

# (fact_id, subject, body, kind, deleted_at, provenance JSON of the deleter) of a deleted fact
Deleted = tuple[str, str, str, str, float, str]
# What a deleted fact needs to be restored as it was (JSON in the deletion log; None for a
# row logged before carnb kept it): its rowid, tags, source, confidence, created_at,
# provenance, the id of the fact that superseded it and the ids of those it superseded.
Kept = str | None
# The tag that pins a fact: every context shows it (memory.pin sets it).
PINNED = "pinned"
# Column lists :meth:`GraphTx.rows_by_rowid` accepts (names common to every store).
FACT_COLUMNS = "fact_id, subject, body, kind, tags, source, provenance"
LINE_COLUMNS = "fact_id, subject, body, kind"


class GraphTx(Protocol):
    """One transaction on one graph (the engine holds the graph's lock): single statements
    only; the loops of policy over them are :mod:`carnb.memgine.steps`."""

    foreign_change: bool

    # -- counters and ids
    def fact_count(self) -> int: ...
    def max_rowid(self) -> int: ...
    def next_ws(self) -> int: ...
    def set_next_ws(self, n: int) -> None: ...

    # -- single facts
    def content_of(self, fact_id: str) -> tuple[str, str] | None: ...
    def rowid_of(self, fact_id: str) -> int | None: ...
    def deletable(self, fact_id: str) -> tuple[int, str, str, int | None] | None: ...
    def newest_of_subject(self, subject: str) -> int | None:
        """The rowid of the newest fact (valid or not) with ``subject``."""

    def insert_fact(self, fact: NewFact) -> int:
        """Store and index a fact, linked after the newest fact with its subject; its rowid."""

    def bump_fact_count(self, delta: int) -> None: ...
    def remove_fact(self, rowid: int, stems: str, *, valid: bool = True) -> None: ...
    def tags_and_stems(self, rowid: int) -> tuple[str, str]:
        """The stored fact's tags (JSON text) and index keys."""

    def set_tags(self, rowid: int, tags: str) -> None: ...

    # -- supersession
    def target(self, fact_id: str) -> Target | None: ...
    def targets_of_subject(self, subject: str) -> list[Target]: ...
    def supersede(self, olds: Sequence[Changed], new_rowid: int) -> None:
        """Mark valid facts superseded by ``new_rowid``: out of the index and the count."""

    def release(self, rowid: int, successor: int | None) -> list[Changed]:
        """Before the fact at ``rowid`` is deleted: what it superseded passes to ``successor``,
        or (``None``) becomes valid again, indexed and counted; returns the revived facts."""

    def supersession_step(self, rowids: Sequence[int]) -> list[int]:
        """The facts that superseded one of ``rowids`` or that one of them superseded."""

    def superseded_among(self, rowids: Sequence[int]) -> set[int]:
        """The superseded facts among ``rowids`` (not empty)."""

    def rowids_of_subject(self, subject: str, limit: int) -> list[int]: ...

    # -- reads for answers
    def fact_rows(self, limit: int | None = None, offset: int = 0) -> list[tuple[Any, ...]]:
        """``FACT_COLUMNS, confidence, created_at, superseded_by's fact_id`` in creation order
        (valid and superseded facts)."""

    def stored_rows(self, rowids: Sequence[int]) -> list[tuple[Any, ...]]:
        """The rows of :meth:`fact_rows` for the stored ones of ``rowids``, newest first."""

    def constraint_rows(self) -> list[tuple[str, str, str]]: ...
    # -- changes over time (memory.diff)
    def written_since(self, at: float, limit: int) -> list[int]:
        """Rowids of the stored facts created at or after ``at``, oldest first."""

    def superseded_since(self, at: float, limit: int) -> list[int]:
        """Rowids of the facts replaced by a fact created at or after ``at``, oldest first."""

    def log_deletion(self, deleted: Deleted, kept: Kept) -> None: ...
    def take_deletion(self, fact_id: str) -> tuple[Deleted, Kept] | None:
        """Remove the newest deletion of ``fact_id`` from the log and return it."""

    def insert_fact_at(self, fact: NewFact, rowid: int) -> None:
        """Store and index a fact at a free ``rowid``, spliced into its subject's chain between
        the facts of that subject around it (the inverse of :meth:`remove_fact`)."""

    def repoint(self, rowids: Sequence[int], new_rowid: int) -> None:
        """Superseded facts ``rowids`` are superseded by ``new_rowid`` from now on."""

    def deleted_since(self, at: float, limit: int) -> list[Deleted]:
        """The deletions at or after ``at``, oldest first."""

    def pinned_rows(self) -> list[tuple[int, str, str, str]]:
        """``(rowid, fact_id, subject, body)`` of the valid non-constraint facts tagged
        ``PINNED``, oldest first (a constraint is always shown anyway)."""

    def rows_by_rowid(self, rowids: Sequence[int], columns: str) -> dict[int, tuple[Any, ...]]: ...

    # -- utility-aware retrieval (carnb.memgine.utility)
    def utility_blend(self) -> tuple[float, float] | None:
        """The graph's stored ``(weight, exploration)``; None when never set."""

    def set_utility_blend(self, weight: float, exploration: float) -> None: ...
    def uses(self, rowids: Sequence[int]) -> dict[int, int]:
        """How often each of ``rowids`` was used (only the used ones)."""

    def all_uses(self) -> int: ...
    def add_use(self, rowid: int) -> None: ...
    def line_sizes(self) -> Iterator[tuple[int, int]]:
        """``(rowid, size)`` of the valid non-constraint facts, newest first, lazily: ``size``
        estimates a fact's context line (id, subject and body lengths + 8)."""

    def neighbours(self, rowids: Sequence[int]) -> dict[int, list[int]]: ...

    # -- the full-text index
    def match(self, all_of: Sequence[Sequence[str]], limit: int | None = None) -> list[int]:
        """Rowids of the indexed valid facts holding, for each group of ``all_of``, at least
        one of its index keys; newest first and at most ``limit`` when a limit is given."""

    def pending(self) -> list[Pending]: ...
    def term_prefixes(self, rowids: Sequence[int], chars: int) -> list[tuple[int, str, str]]:
        """``(rowid, terms, stems)`` of the stored ones of ``rowids`` (at most
        :data:`carnb.memgine.steps.CHUNK`), each text cut to its first ``chars`` characters."""

    def newest_postings(self, key: str, probe: int) -> tuple[int, int | None]: ...
    def vocabulary(self, limit: int, max_chars: int) -> list[str]: ...

    # -- whole graph
    def clear(self) -> None: ...
    def insert_batch(self, rows: Sequence[Linked]) -> None:
        """Store and index facts numbered and linked by the caller, after every stored fact
        (:class:`FactIdTaken` when an id is stored already; the caller counts them)."""

    def duplicate_groups(self) -> list[list[int]]: ...
    def valid_contents(self, rowids: Sequence[int]) -> list[tuple[int, str, str]]:
        """``(rowid, subject, body)`` of the stored valid ones of ``rowids``, oldest first."""

    def contested_subjects(self) -> list[str]: ...
    def ids_of_subject(self, subject: str, limit: int) -> list[str]: ...


class GraphBackend(Protocol):
    """Where one graph is stored; the engine serialises calls with its own lock."""

    @property
    def persistent(self) -> bool: ...
    @property
    def label(self) -> str:
        """How errors and ``repr`` name the graph (a path, ``:memory:``, a store key)."""

    @property
    def is_open(self) -> bool: ...
    @property
    def holds_files(self) -> bool:
        """Whether an open graph holds file descriptors (bounded by MemoryHome)."""

    def open(self) -> None: ...
    def close(self) -> None: ...
    def write(self) -> AbstractContextManager[GraphTx]:
        """A write transaction, serialised with every other writer of the graph (any process);
        committed when the block ends, rolled back on error."""

    def read(self) -> AbstractContextManager[GraphTx]:
        """A consistent snapshot for multi-statement reads."""

    def problems(self) -> list[str]:
        """What is wrong with the stored graph; changes nothing."""

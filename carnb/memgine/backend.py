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

from carnb.errors import CarnbError


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


class FactIdTaken(CarnbError):
    """A batch of loaded facts holds an id another connection stored meanwhile."""


# (rowid, fact_id, kind, stems) of a fact whose validity changes
Changed = tuple[int, str, str, str]
# (rowid, terms, stems, kind) of a valid fact not yet in the full-text index
Pending = tuple[int, str, str, str]

# Column lists :meth:`GraphTx.rows_by_rowid` accepts (names common to every store).
FACT_COLUMNS = "fact_id, subject, body, kind, tags, source"
LINE_COLUMNS = "fact_id, subject, body, kind"


class GraphTx(Protocol):
    """One transaction on one graph (the engine holds the graph's lock)."""

    foreign_change: bool

    # -- counters and ids
    def fact_count(self) -> int: ...
    def max_rowid(self) -> int: ...
    def mint_id(self) -> str:
        """The next free ``ws-<n>`` (a caller's own ``ws-7`` is skipped, never shadowed)."""

    def next_ws(self) -> int: ...
    def set_next_ws(self, n: int) -> None: ...

    # -- single facts
    def content_of(self, fact_id: str) -> tuple[str, str] | None: ...
    def rowid_of(self, fact_id: str) -> int | None: ...
    def deletable(self, fact_id: str) -> tuple[int, str, str, int | None] | None: ...
    def insert_fact(self, fact: NewFact) -> int: ...
    def bump_fact_count(self, delta: int) -> None: ...
    def remove_fact(self, rowid: int, stems: str, *, valid: bool = True) -> None: ...

    # -- supersession
    def resolve_targets(self, names: Sequence[str]) -> tuple[list[Changed], list[str]]: ...
    def supersede(self, olds: Sequence[Changed], new_rowid: int) -> None: ...
    def release(self, rowid: int, successor: int | None) -> list[Changed]: ...
    def supersede_by_ids(self, links: Sequence[tuple[str, str]]) -> None: ...
    def superseded_among(self, rowids: Sequence[int]) -> set[int]: ...
    def history(self, start: Sequence[int], limit: int) -> list[tuple[Any, ...]]: ...
    def rowids_of_subject(self, subject: str, limit: int) -> list[int]: ...

    # -- reads for answers
    def fact_rows(self, limit: int | None = None, offset: int = 0) -> list[tuple[Any, ...]]: ...
    def constraint_rows(self) -> list[tuple[str, str, str]]: ...
    def rows_by_rowid(self, rowids: Sequence[int], columns: str) -> dict[int, tuple[Any, ...]]: ...
    def newest_valid_lines(self, room: int) -> tuple[list[int], bool]: ...
    def neighbours(self, rowids: Sequence[int]) -> dict[int, list[int]]: ...

    # -- the full-text index
    def match(self, all_of: Sequence[Sequence[str]], limit: int | None = None) -> list[int]:
        """Rowids of the indexed valid facts holding, for each group of ``all_of``, at least
        one of its index keys; newest first and at most ``limit`` when a limit is given."""

    def pending(self) -> list[Pending]: ...
    def terms_of(self, rowids: Sequence[int]) -> Iterator[tuple[int, str, str]]: ...
    def newest_postings(self, key: str, probe: int) -> tuple[int, int | None]: ...
    def vocabulary(self, limit: int, max_chars: int) -> list[str]: ...

    # -- whole graph
    def clear(self) -> None: ...
    def append_batch(self, facts: Sequence[NewFact]) -> None: ...
    def duplicate_groups(self) -> list[list[int]]: ...
    def same_content(self, rowids: Sequence[int]) -> list[int]: ...
    def merge_into(self, keep: int, dups: Sequence[int]) -> None: ...
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

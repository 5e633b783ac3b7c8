"""The seam between the run store's policy and its databases: what a run store's storage offers.

:class:`~carnb.runs.store.RunStore` (validation, ownership, lifecycle, listeners) sees its
storage only through :class:`RunBackend` (open, close, transactions) and, inside a transaction,
:class:`RunTx` (every statement the policy runs, with the same meaning on every database). Two
backends implement them: SQLite (:mod:`carnb.runs.db`: one file) and PostgreSQL
(:mod:`carnb.pgstore.runs_sql`: shared by every server of a team). Both pass one test suite.

Run rows are dicts keyed by :data:`RUN_KEYS`; records are the public shapes of
:mod:`carnb.runs.records`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from carnb.runs import records as rec

RUN_KEYS = (
    "run_id",
    "agent_id",
    "intent",
    "status",
    "started_at",
    "ended_at",
    "next_index",
    "turn_count",
    "owner_session_id",
    "owner_epoch",
    "forked_from",
)
RUN_COLUMNS = ", ".join(RUN_KEYS)
Row = dict[str, Any]
# (store epoch, session id): the session that started a run
Session = tuple[str, str]


def run_row(values: Sequence[Any]) -> Row:
    """A run row from the values of :data:`RUN_COLUMNS`."""
    return dict(zip(RUN_KEYS, values, strict=True))


def run_columns(serial: str, real: str) -> str:
    """The runs table's column definitions, given a database's types for the creation sequence
    and for timestamps. Version 1 of both stores' schemas: a change is a new migration of
    each."""
    return f"""(
    seq {serial},
    run_id TEXT NOT NULL UNIQUE,
    agent_id TEXT NOT NULL,
    intent TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at {real} NOT NULL,
    ended_at {real},
    next_index INTEGER NOT NULL,
    turn_count INTEGER NOT NULL DEFAULT 0,
    owner_session_id TEXT,
    owner_epoch TEXT,
    idem_scope TEXT,
    idempotency_key TEXT
)"""


# Version 2 of both stores' schemas: a fork's parent, ``{"run_id", "turn"}`` as JSON text.
FORKED_FROM_COLUMN = "forked_from TEXT"


@dataclass(frozen=True, slots=True)
class NewRun:
    """A run to insert: ``in_progress``, its ``started`` record (index 0) appended by the
    caller. ``idem_scope``/``idempotency_key`` make a repeated start find it."""

    run_id: str
    agent_id: str
    intent: str
    started_at: float
    client_id: str
    epoch: str
    idem_scope: str | None
    idempotency_key: str | None
    forked_from: str | None = None  # JSON text of {run_id, turn}: the run this one forks
    # the columns :meth:`values` fills, in its order
    COLUMNS: ClassVar[str] = (
        "run_id, agent_id, intent, status, started_at, next_index, owner_session_id, "
        "owner_epoch, idem_scope, idempotency_key, forked_from"
    )

    def values(self) -> tuple[object, ...]:
        """The values of :attr:`COLUMNS`."""
        return (
            self.run_id, self.agent_id, self.intent, rec.IN_PROGRESS, self.started_at, 0,
            self.client_id, self.epoch, self.idem_scope, self.idempotency_key, self.forked_from,
        )  # fmt: skip


class RunTx(Protocol):
    """One transaction on a run store. In a write transaction :meth:`fetch_run` holds the run
    until commit and :meth:`find_idempotent` the key, against every other writer (any process
    or server), so indexes stay contiguous and an idempotent start makes one run."""

    def fetch_run(self, run_id: str) -> Row | None: ...
    def find_idempotent(self, scope: str, key: str) -> tuple[str, str] | None:
        """``(run_id, agent_id)`` of the run started with this key in this scope."""

    def insert_run(self, run: NewRun) -> None: ...
    def append(self, run_id: str, base: int, kind: str, ts: float, bodies: Sequence[str]) -> None:
        """Records ``base, base+1, ...`` of one kind (``bodies`` are JSON object texts); moves
        the run's ``next_index`` (and ``turn_count`` for turns)."""

    def set_ended(self, run_id: str, status: str, ts: float) -> None: ...
    def open_runs_of_session(self, epoch: str, client_id: str) -> list[str]:
        """Ids of the session's ``in_progress`` runs, oldest first."""

    def list_runs(self, agent_id: str, only: Session | None, limit: int | None) -> list[Row]:
        """Run rows of ``agent_id``, newest first, at most ``limit`` (``None``: all);
        ``only=(epoch, client_id)`` keeps that session's."""

    def read_records(self, run_id: str, after: int, limit: int | None) -> list[dict[str, Any]]:
        """Records with index > ``after``, in index order, at most ``limit`` (``None``: all)."""

    def run_counts_by_agent(self) -> dict[str, int]:
        """How many runs each owner id has (every owner, ``name:`` labels included)."""

    def model_turn_usage(self, after: Any, span: int) -> tuple[list[tuple[Any, ...]], Any]:
        """The model turns among the next ``span`` records of the store after cursor ``after``
        (None: from the first), summed by run: ``(agent_id, run_id, model_id, calls,
        input_tokens, output_tokens)``, a token count that is not a positive integer counting 0
        and a model id that is not a string counting None; and the cursor to read on from
        (None: no records are left). A chunk at a time, so no read holds the store for long."""


class RunBackend(Protocol):
    """Where the runs are stored; thread-safe."""

    @property
    def label(self) -> str:
        """How errors name the store (a path, a PostgreSQL address)."""

    @property
    def closed(self) -> bool: ...
    def open(self) -> None: ...
    def close(self) -> None: ...
    def read(self) -> AbstractContextManager[RunTx]: ...
    def write(self, committed: Callable[[], None]) -> AbstractContextManager[RunTx]:
        """One write transaction, committed when the block ends (rolled back on error, nothing
        written); then ``committed()`` is called in the writing thread. A backend that
        serialises its writers (SQLite) calls it before the next write begins, so what it
        announces comes in commit order."""

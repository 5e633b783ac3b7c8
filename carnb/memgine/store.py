"""The SQLite store of one memgine graph: schema, connection settings and the row-level writes.

One connection per graph (``check_same_thread=False``; the owning :class:`~carnb.memgine.engine.
Memgine` serialises access with its lock). Files use WAL with ``synchronous=NORMAL``: a committed
transaction is in the WAL file before ``COMMIT`` returns, so it survives the process being killed
(SIGKILL) right after; only an operating-system crash or power loss may lose the last commits,
which is out of scope (docs/memgine.md: "an acknowledged fact is never lost, even if the kernel is
killed").

Tables:
- ``facts``: one row per fact; ``rowid`` is the creation order; ``terms`` holds the fact's unique
  tokens (space-joined, read by the re-scorer), ``stems`` their unique index keys; ``prev`` is
  the previous fact with the same subject: the ``RelatedTo`` links form one chain per subject
  (neighbours = ``prev`` and the fact whose ``prev`` this is), which costs one index entry per
  write instead of an edge table with two indexes.
- ``facts_fts``: FTS5 index over ``facts.stems`` (external content, kept in sync explicitly;
  ``detail=none, columnsize=0``: memgine only asks "which facts hold this stem"). New facts are
  indexed in batches of ``INDEX_BATCH``: facts past ``meta.indexed_upto`` are not in the index
  yet and readers score them directly (:func:`pending`). A commit that writes one FTS5 segment
  costs several times a plain row insert, so batching makes ``add_fact`` about twice as fast;
  the batch is indexed inside the transaction of the fact that fills it, so the mark and the
  index never disagree, whoever crashes.
- ``facts_vocab``: FTS5's view of the index vocabulary (no storage of its own).
- ``meta``: schema tag, the ``ws-<n>`` counter, the fact count and ``indexed_upto``.

A write touches few pages (the row and three small indexes; an FTS segment once per batch),
which keeps commits and the WAL small. WAL checkpoints run on a background thread
(:class:`Checkpointer`) so a commit never waits for one.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from carnb.errors import CarnbError

log = logging.getLogger("carnb.memgine")

SCHEMA_TAG = "carnb.memgine.sqlite/1"
RELATED_TO = "RelatedTo"
# New facts are added to the full-text index this many at a time (see pending()).
INDEX_BATCH = 32

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS facts (
    rowid INTEGER PRIMARY KEY,
    fact_id TEXT NOT NULL UNIQUE,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    kind TEXT NOT NULL,
    tags TEXT NOT NULL,
    source TEXT NOT NULL,
    confidence REAL,
    created_at REAL NOT NULL,
    terms TEXT NOT NULL,
    stems TEXT NOT NULL,
    prev INTEGER
);
CREATE INDEX IF NOT EXISTS facts_subject ON facts(subject);
CREATE INDEX IF NOT EXISTS facts_prev ON facts(prev) WHERE prev IS NOT NULL;
CREATE INDEX IF NOT EXISTS facts_constraints ON facts(kind) WHERE kind = 'constraint';
CREATE VIRTUAL TABLE IF NOT EXISTS facts_fts USING fts5(
    stems, content='facts', content_rowid='rowid', detail='none', columnsize=0,
    tokenize='unicode61 remove_diacritics 0'
);
CREATE VIRTUAL TABLE IF NOT EXISTS facts_vocab USING fts5vocab(facts_fts, 'row');
"""


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


def _create_private(path: Path) -> None:
    """Create a new database file readable by its owner only (SQLite gives its -wal and -shm
    files the same mode), whatever the umask or the data directory's mode."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


def connect(path: Path | None) -> sqlite3.Connection:
    """Open (and if needed create) a graph database; ``None`` gives an in-memory graph."""
    target = ":memory:" if path is None else str(path)
    try:
        if path is not None:
            _create_private(path)
        conn = sqlite3.connect(target, isolation_level=None, check_same_thread=False, timeout=10.0)
    except OSError as exc:
        raise CarnbError(
            f"memory graph file {path} cannot be created: {exc.strerror or exc}; "
            "make the carnb data directory writable (--home / CARNB_HOME)"
        ) from exc
    except sqlite3.Error as exc:
        raise CarnbError(f"memory graph file {path} cannot be opened: {exc}") from exc
    try:
        _check_existing(conn, path)  # before any pragma: never convert someone else's file
        _configure(conn, persistent=path is not None)
        _ensure_schema(conn)
    except sqlite3.Error as exc:
        conn.close()
        raise CarnbError(f"memory graph file {path} cannot be opened: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _configure(conn: sqlite3.Connection, *, persistent: bool) -> None:
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("PRAGMA cache_size = -32768")
    if persistent:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            log.warning("memgine: journal_mode is %s, not wal", mode)
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA mmap_size = 268435456")
        # Checkpoints normally run on a background thread (Checkpointer); this is the backstop.
        conn.execute("PRAGMA wal_autocheckpoint = 16384")
        conn.execute("PRAGMA journal_size_limit = 67108864")


def _check_existing(conn: sqlite3.Connection, path: Path | None) -> None:
    """Refuse a file that is not a SQLite database, or one that is not a carnb graph."""
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError as exc:
        raise CarnbError(
            f"memory graph file {path} is not a SQLite database ({exc}); move it away and a "
            "new empty graph will be created"
        ) from exc
    if tables and "meta" not in tables:
        raise CarnbError(
            f"memory graph file {path} is a SQLite database but not a carnb memory graph; "
            "move it away and a new empty graph will be created"
        )
    if "meta" in tables:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None or row[0] != SCHEMA_TAG:
            found = None if row is None else row[0]
            raise CarnbError(
                f"memory graph file {path} has schema {found!r}, this carnb reads {SCHEMA_TAG!r}"
            )


def _ensure_schema(conn: sqlite3.Connection) -> None:
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone():
        return
    conn.execute("BEGIN IMMEDIATE")
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.executemany(
        "INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)",
        [("schema", SCHEMA_TAG), ("next_ws", 1), ("fact_count", 0), ("indexed_upto", 0)],
    )
    conn.execute("COMMIT")


def get_meta_int(conn: sqlite3.Connection, key: str) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return int(row[0]) if row is not None else 0


def set_meta(conn: sqlite3.Connection, key: str, value: int | str) -> None:
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))


def bump_fact_count(conn: sqlite3.Connection, delta: int) -> None:
    conn.execute("UPDATE meta SET value = value + ? WHERE key = 'fact_count'", (delta,))


def insert_fact(conn: sqlite3.Connection, fact: NewFact) -> int:
    """Insert a fact, linked after the newest fact with the same subject, and index the
    pending facts when a batch is full; returns its rowid. Caller holds a transaction."""
    row = conn.execute("SELECT max(rowid) FROM facts WHERE subject = ?", (fact.subject,)).fetchone()
    cur = conn.execute(
        "INSERT INTO facts(fact_id, subject, body, kind, tags, source, confidence, created_at, "
        "terms, stems, prev) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (*_values(fact), row[0]),
    )
    rowid = cur.lastrowid
    assert rowid is not None
    if rowid - get_meta_int(conn, "indexed_upto") >= INDEX_BATCH:
        index_pending(conn)
    return rowid


def index_pending(conn: sqlite3.Connection) -> None:
    """Add every fact past the ``indexed_upto`` mark to the full-text index and move the mark.
    Caller holds a transaction."""
    mark = get_meta_int(conn, "indexed_upto")
    conn.execute(
        "INSERT INTO facts_fts(rowid, stems) SELECT rowid, stems FROM facts WHERE rowid > ?",
        (mark,),
    )
    top = conn.execute("SELECT max(rowid) FROM facts").fetchone()[0]
    set_meta(conn, "indexed_upto", max(mark, top or 0))


def pending(conn: sqlite3.Connection) -> list[tuple[int, str, str, str]]:
    """``(rowid, terms, stems, kind)`` of the facts not yet in the full-text index (fewer than
    ``INDEX_BATCH``), oldest first."""
    mark = get_meta_int(conn, "indexed_upto")
    return conn.execute(
        "SELECT rowid, terms, stems, kind FROM facts WHERE rowid > ? ORDER BY rowid", (mark,)
    ).fetchall()


def _values(fact: NewFact) -> tuple[object, ...]:
    return (
        fact.fact_id,
        fact.subject,
        fact.body,
        fact.kind,
        json.dumps(fact.tags, ensure_ascii=False),
        fact.source,
        fact.confidence,
        fact.created_at,
        fact.terms,
        fact.stems,
    )


def remove_fact(conn: sqlite3.Connection, rowid: int, stems: str) -> None:
    """Delete a fact, its index entry and its links (the same-subject chain closes over the
    gap: the next fact links to the previous one). Caller holds a transaction."""
    if rowid <= get_meta_int(conn, "indexed_upto"):
        conn.execute(
            "INSERT INTO facts_fts(facts_fts, rowid, stems) VALUES ('delete', ?, ?)",
            (rowid, stems),
        )
    conn.execute(
        "UPDATE facts SET prev = (SELECT prev FROM facts WHERE rowid = ?) WHERE prev = ?",
        (rowid, rowid),
    )
    conn.execute("DELETE FROM facts WHERE rowid = ?", (rowid,))


def clear(conn: sqlite3.Connection) -> None:
    """Remove every fact and index entry. Caller holds a transaction."""
    conn.execute("INSERT INTO facts_fts(facts_fts) VALUES ('delete-all')")
    conn.execute("DELETE FROM facts")
    set_meta(conn, "fact_count", 0)
    set_meta(conn, "indexed_upto", 0)


def bulk_insert(conn: sqlite3.Connection, facts: Sequence[NewFact]) -> None:
    """Fill an empty graph: rowids 1..n in order, same-subject links, then the index is built
    in one pass. Caller holds a transaction."""
    last: dict[str, int] = {}

    def rows() -> Iterator[tuple[object, ...]]:
        for rowid, fact in enumerate(facts, start=1):
            yield (rowid, *_values(fact), last.get(fact.subject))
            last[fact.subject] = rowid

    conn.executemany(
        "INSERT INTO facts(rowid, fact_id, subject, body, kind, tags, source, confidence, "
        "created_at, terms, stems, prev) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows(),
    )
    conn.execute("INSERT INTO facts_fts(facts_fts) VALUES ('rebuild')")
    set_meta(conn, "fact_count", len(facts))
    set_meta(conn, "indexed_upto", len(facts))


def neighbours(conn: sqlite3.Connection, rowids: Sequence[int]) -> dict[int, list[int]]:
    """``RelatedTo`` neighbours of ``rowids``: the previous and the next fact with the same
    subject (one statement, two indexed look-ups, for the whole batch)."""
    adj: dict[int, list[int]] = {r: [] for r in rowids}
    if not rowids:
        return adj
    marks = ",".join("?" * len(rowids))
    for node, other in conn.execute(
        f"SELECT rowid, prev FROM facts WHERE rowid IN ({marks}) AND prev IS NOT NULL "
        f"UNION ALL SELECT prev, rowid FROM facts WHERE prev IN ({marks})",
        (*rowids, *rowids),
    ):
        adj[node].append(other)
    return adj


class Checkpointer:
    """Background WAL checkpoints for one graph file, so a commit never waits for one.

    ``poke()`` after a commit; the worker thread (its own connection) runs a PASSIVE checkpoint
    at most every ``interval`` seconds while there are new commits. The writing connection keeps
    a high ``wal_autocheckpoint`` as a safety net. Checkpoint timing does not affect durability:
    committed data is in the WAL either way."""

    def __init__(self, path: Path, interval: float = 0.25) -> None:
        self.path = path
        self.interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"carnb-memgine-checkpoint:{self.path.name}", daemon=True
        )
        self._thread.start()

    def poke(self) -> None:
        self._wake.set()

    def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        self._wake.set()
        thread.join()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            log.warning("memgine: no background checkpoints for %s: %s", self.path, exc)
            return
        try:
            conn.execute("PRAGMA busy_timeout = 100")
            while not self._stop.is_set():
                self._wake.wait()
                if self._stop.wait(self.interval):
                    break
                self._wake.clear()
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:
                    log.debug("memgine: checkpoint of %s skipped: %s", self.path, exc)
        finally:
            conn.close()

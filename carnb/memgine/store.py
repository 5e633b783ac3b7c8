"""The SQLite store of one memgine graph: its schema and every SQL statement memgine runs.

No policy here (what may be written, what a query returns, caching, transactions: the engine
:mod:`carnb.memgine.engine` with :mod:`carnb.memgine.steps`, :mod:`carnb.memgine.ranking` and
:mod:`carnb.memgine.lexicon`): :class:`SqliteTx`, the :class:`~carnb.memgine.backend.GraphTx` of
SQLite, reads and writes rows inside whatever transaction the caller holds. Files are opened, and
their schema versions migrated, by :mod:`carnb.sqlite`.

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
  write instead of an edge table with two indexes. ``superseded_by`` is the rowid of the newer
  fact that replaced this one (``memory.add_fact {supersedes}``), NULL while the fact is valid:
  a superseded fact stays as history but leaves the full-text index, the fact count and every
  read that serves retrieval.
- ``valid_facts``: a view of the valid facts' stems, the full-text index's content.
- ``facts_fts``: FTS5 index over ``valid_facts.stems`` (external content, kept in sync explicitly;
  ``detail=none, columnsize=0``: memgine only asks "which facts hold this stem"). New facts are
  indexed in batches of ``INDEX_BATCH``: facts past ``meta.indexed_upto`` are not in the index
  yet and readers score them directly (:meth:`SqliteTx.pending`). A commit that writes one FTS5
  segment costs several times a plain row insert, so batching makes ``add_fact`` about twice as
  fast; the batch is indexed inside the transaction of the fact that fills it, so the mark and
  the index never disagree, whoever crashes.
- ``facts_vocab``: FTS5's view of the index vocabulary (no storage of its own).
- ``meta``: the ``ws-<n>`` counter, the fact count and ``indexed_upto`` (the schema version is
  ``PRAGMA user_version``).

Bounds that keep every query cheap whatever the facts hold: index keys are at most
``MAX_KEY_CHARS`` long and the pending facts hold at most about ``PENDING_CHARS`` of terms (a
bigger fact is indexed at once); re-scoring reads at most
:data:`carnb.memgine.steps.SCORED_CHARS` of a fact.

A write touches few pages (the row and three small indexes; an FTS segment once per batch),
which keeps commits and the WAL small. WAL checkpoints run on a background thread
(:class:`Checkpointer`) so a commit never waits for one.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from carnb import sqlite
from carnb.errors import CarnbError, FactIdTaken, GraphBusy, SchemaError, ServerFault
from carnb.memgine.backend import (
    PINNED,
    Changed,
    Deleted,
    Kept,
    Linked,
    NewFact,
    Pending,
    Target,
)
from carnb.memgine.text import MAX_KEY_CHARS, fact_keys

log = logging.getLogger("carnb.memgine")

# Files written before carnb used ``PRAGMA user_version`` carry this tag in ``meta`` (version 1).
LEGACY_SCHEMA_TAG = "carnb.memgine.sqlite/1"
# Version 2 bounds index keys (text.MAX_KEY_CHARS); migrating from 1 re-keys long words.
# Version 3 adds supersession (facts.superseded_by, the index holds valid facts only).
# Version 4 adds provenance (facts.provenance: who wrote the fact, JSON) and the deletion log.
# Version 5 adds deletions.kept (what restoring a deleted fact needs, JSON), the index of the
# valid pinned facts and facts.uses (reminders memory.intervene gave of it).
SCHEMA_VERSION = 5
RELATED_TO = "RelatedTo"
# New facts are added to the full-text index this many at a time, or sooner once the pending
# facts hold this many characters of terms: every query re-scores the pending facts (pending()).
INDEX_BATCH = 32
PENDING_CHARS = 64 * 1024

# The valid facts that may be pinned (tags LIKE: a cheap superset, the JSON test decides); the
# partial index facts_pinned holds exactly these.
_PINNED_WHERE = f"WHERE superseded_by IS NULL AND tags LIKE '%\"{PINNED}\"%'"
_CREATE = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE facts (
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
    prev INTEGER,
    superseded_by INTEGER,
    provenance TEXT NOT NULL DEFAULT '{{}}',
    uses INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE deletions (
    fact_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    kind TEXT NOT NULL,
    deleted_at REAL NOT NULL,
    provenance TEXT NOT NULL,
    kept TEXT
);
CREATE INDEX deletions_at ON deletions(deleted_at);
CREATE INDEX facts_subject ON facts(subject);
CREATE INDEX facts_prev ON facts(prev) WHERE prev IS NOT NULL;
CREATE INDEX facts_constraints ON facts(kind) WHERE kind = 'constraint';
CREATE INDEX facts_pinned ON facts(kind) {_PINNED_WHERE};
INSERT INTO meta(key, value) VALUES ('next_ws', 1), ('fact_count', 0), ('indexed_upto', 0)
"""
# Supersession and the index of valid facts: part of a new file, and what migration 2 -> 3 adds.
_VALID_INDEX = """
CREATE INDEX facts_superseded ON facts(superseded_by) WHERE superseded_by IS NOT NULL;
CREATE VIEW valid_facts(rowid, stems) AS SELECT rowid, stems FROM facts
    WHERE superseded_by IS NULL;
CREATE VIRTUAL TABLE facts_fts USING fts5(
    stems, content='valid_facts', content_rowid='rowid', detail='none', columnsize=0,
    tokenize='unicode61 remove_diacritics 0'
);
CREATE VIRTUAL TABLE facts_vocab USING fts5vocab(facts_fts, 'row')
"""
# How long a write waits for another connection's write lock (another kernel or server on the
# same data directory) before it fails with :class:`GraphBusy`. Long writes commit in batches
# (:func:`append_batch`), so a fair wait is far shorter. Callers on an event loop must not wait.
LOCK_WAIT_S = 5.0
# How long SQLite's own busy handler waits before a write retries its BEGIN: after a few
# hundred ms of waiting that handler sleeps 100 ms between tries, so a writer beside a bulk load
# (which frees the lock only for a moment between batches) would miss most of those moments.
LOCK_POLL_MS = 5
_PRAGMAS = (
    f"busy_timeout = {int(LOCK_WAIT_S * 1000)}",
    "temp_store = MEMORY",
    "cache_size = -32768",
)
_FILE_PRAGMAS = (
    "synchronous = NORMAL",
    "mmap_size = 268435456",
    # Checkpoints normally run on a background thread (Checkpointer); this is the backstop.
    "wal_autocheckpoint = 16384",
    "journal_size_limit = 67108864",
)


def connect(path: Path | None) -> sqlite3.Connection:
    """Open (and if needed create or migrate) a graph database; ``None``: an in-memory graph."""
    pragmas = _PRAGMAS if path is None else _PRAGMAS + _FILE_PRAGMAS
    return sqlite.connect(path, _SCHEMA, timeout_s=LOCK_WAIT_S, pragmas=pragmas)


def _legacy_version(conn: sqlite3.Connection, path: Path | None) -> int | None:
    """1 for a graph written before ``user_version`` was used; None for a foreign file."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() is None:
        return None
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    if row is None or row[0] != LEGACY_SCHEMA_TAG:
        found = None if row is None else row[0]
        raise SchemaError(
            f"memory graph file {path} has schema {found!r}; this carnb reads "
            f"{LEGACY_SCHEMA_TAG!r} or user_version {SCHEMA_VERSION}"
        )
    return 1


def _rekey_long_words(conn: sqlite3.Connection) -> None:
    """Version 1 -> 2: facts holding index keys longer than ``MAX_KEY_CHARS`` get bounded keys
    (:func:`carnb.memgine.text.index_key`) and the full-text index is rebuilt; every fact ends
    up indexed."""
    changed = []
    for rowid, terms, stems in conn.execute(
        "SELECT rowid, terms, stems FROM facts WHERE length(stems) > ?", (MAX_KEY_CHARS,)
    ).fetchall():
        keys = fact_keys(terms)
        if keys != stems:
            changed.append((keys, rowid))
    conn.execute("DELETE FROM meta WHERE key = 'schema'")
    if changed:
        conn.executemany("UPDATE facts SET stems = ? WHERE rowid = ?", changed)
        conn.execute("INSERT INTO facts_fts(facts_fts) VALUES ('rebuild')")
        tx = SqliteTx(conn)
        tx.set_meta("indexed_upto", tx.max_rowid())
    else:
        SqliteTx(conn).index_pending()  # version 1 let the pending facts grow past PENDING_CHARS


def _add_supersession(conn: sqlite3.Connection) -> None:
    """Version 2 -> 3: the ``superseded_by`` column, and the full-text index re-created over
    the ``valid_facts`` view (every fact of a version 2 file is valid) and filled."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(facts)")}
    if "superseded_by" not in columns:
        conn.execute("ALTER TABLE facts ADD COLUMN superseded_by INTEGER")
    for name, kind in (("facts_vocab", "TABLE"), ("facts_fts", "TABLE")):
        conn.execute(f"DROP {kind} IF EXISTS {name}")
    conn.execute("DROP INDEX IF EXISTS facts_superseded")
    conn.execute("DROP VIEW IF EXISTS valid_facts")
    _run_script(conn, _VALID_INDEX)
    conn.execute("INSERT INTO facts_fts(facts_fts) VALUES ('rebuild')")
    tx = SqliteTx(conn)
    tx.set_meta("indexed_upto", tx.max_rowid())
    count = conn.execute("SELECT count(*) FROM facts WHERE superseded_by IS NULL").fetchone()[0]
    tx.set_meta("fact_count", int(count))


def _add_provenance(conn: sqlite3.Connection) -> None:
    """Version 3 -> 4: the ``provenance`` column (``{}``: written before carnb recorded it) and
    the ``deletions`` log."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(facts)")}
    if "provenance" not in columns:
        conn.execute("ALTER TABLE facts ADD COLUMN provenance TEXT NOT NULL DEFAULT '{}'")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS deletions (fact_id TEXT NOT NULL, subject TEXT NOT NULL, "
        "body TEXT NOT NULL, kind TEXT NOT NULL, deleted_at REAL NOT NULL, "
        "provenance TEXT NOT NULL)"
    )
    conn.execute("CREATE INDEX IF NOT EXISTS deletions_at ON deletions(deleted_at)")


def _add_kept(conn: sqlite3.Connection) -> None:
    """Version 4 -> 5: ``deletions.kept`` (NULL for the deletions logged before: such a fact is
    restored as a new valid fact), ``facts.uses`` and the index of pinned facts."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(deletions)")}
    if "kept" not in columns:
        conn.execute("ALTER TABLE deletions ADD COLUMN kept TEXT")
    if "uses" not in {row[1] for row in conn.execute("PRAGMA table_info(facts)")}:
        conn.execute("ALTER TABLE facts ADD COLUMN uses INTEGER NOT NULL DEFAULT 0")
    conn.execute(f"CREATE INDEX IF NOT EXISTS facts_pinned ON facts(kind) {_PINNED_WHERE}")


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


_SCHEMA = sqlite.Schema(
    "memory graph file",
    SCHEMA_VERSION,
    _CREATE + ";" + _VALID_INDEX,
    migrations={1: _rekey_long_words, 2: _add_supersession, 3: _add_provenance, 4: _add_kept},
    legacy=_legacy_version,
)


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
        fact.provenance,
    )


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


_DELETED = "fact_id, subject, body, kind, deleted_at, provenance"
_FACT_COLUMNS_F = "f.fact_id, f.subject, f.body, f.kind, f.tags, f.source, f.provenance"


def data_version(conn: sqlite3.Connection) -> int:
    """Changes when another connection commits to the file (``PRAGMA data_version``)."""
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def begin_write(conn: sqlite3.Connection) -> None:
    """``BEGIN IMMEDIATE`` on ``conn``, trying again every few ms while another connection holds
    the write lock, for up to :data:`LOCK_WAIT_S`; then the last ``database is locked`` error."""
    deadline = time.monotonic() + LOCK_WAIT_S
    conn.execute(f"PRAGMA busy_timeout = {LOCK_POLL_MS}")
    try:
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(LOCK_WAIT_S * 1000)}")


def _is_busy(exc: sqlite3.Error) -> bool:
    text = str(exc)
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def write_failure(path: Path | None, exc: sqlite3.Error) -> CarnbError:
    """The error for a write that SQLite refused: a clear :class:`GraphBusy` when another
    connection held the write lock too long, else a generic storage failure."""
    if _is_busy(exc):
        return GraphBusy(
            f"memory graph {path} is busy: another connection (another kernel or server on "
            f"the same carnb data directory?) held its write lock for over {LOCK_WAIT_S:g} s; "
            "nothing was written, try again"
        )
    return ServerFault(f"memory graph {path or ':memory:'} write failed: {exc}")


class SqliteTx:
    """:class:`~carnb.memgine.backend.GraphTx` on one SQLite connection inside one transaction
    (:class:`~carnb.memgine.sqlite_graph.SqliteGraph` begins and ends it)."""

    def __init__(self, conn: sqlite3.Connection, foreign_change: bool = False) -> None:
        self.conn = conn
        self.foreign_change = foreign_change

    def fact_count(self) -> int:
        return self.get_meta_int("fact_count")

    def next_ws(self) -> int:
        return self.get_meta_int("next_ws")

    def set_next_ws(self, n: int) -> None:
        self.set_meta("next_ws", n)

    def get_meta_int(self, key: str) -> int:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row is not None else 0

    def set_meta(self, key: str, value: float | str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def bump_fact_count(self, delta: int) -> None:
        self.conn.execute("UPDATE meta SET value = value + ? WHERE key = 'fact_count'", (delta,))

    def insert_fact(self, fact: NewFact) -> int:
        """Insert a fact, linked after the newest fact with the same subject, and index the
        pending facts when a batch is full; returns its rowid. Caller holds a transaction."""
        cur = self.conn.execute(
            "INSERT INTO facts(fact_id, subject, body, kind, tags, source, confidence, created_at, "
            "terms, stems, provenance, prev) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*_values(fact), self.newest_of_subject(fact.subject)),
        )
        rowid = cur.lastrowid
        assert rowid is not None
        mark = self.get_meta_int("indexed_upto")
        if rowid - mark >= INDEX_BATCH or self._pending_chars(mark) > PENDING_CHARS:
            self.index_pending()
        return rowid

    def _pending_chars(self, mark: int) -> int:
        row = self.conn.execute(
            "SELECT sum(length(terms)) FROM facts WHERE rowid > ?", (mark,)
        ).fetchone()
        return int(row[0] or 0)

    def index_pending(self) -> None:
        """Add every fact past the ``indexed_upto`` mark to the full-text index and move the mark.
        Caller holds a transaction."""
        mark = self.get_meta_int("indexed_upto")
        self.conn.execute(
            "INSERT INTO facts_fts(rowid, stems) SELECT rowid, stems FROM facts WHERE rowid > ? "
            "AND superseded_by IS NULL",
            (mark,),
        )
        top = self.conn.execute("SELECT max(rowid) FROM facts").fetchone()[0]
        self.set_meta("indexed_upto", max(mark, top or 0))

    def pending(self) -> list[Pending]:
        """``(rowid, terms, stems, kind)`` of the valid facts not yet in the full-text index (fewer
        than ``INDEX_BATCH``, about ``PENDING_CHARS`` of terms at most), oldest first."""
        mark = self.get_meta_int("indexed_upto")
        return self.conn.execute(
            "SELECT rowid, terms, stems, kind FROM facts WHERE rowid > ? AND superseded_by IS NULL "
            "ORDER BY rowid",
            (mark,),
        ).fetchall()

    def remove_fact(self, rowid: int, stems: str, *, valid: bool = True) -> None:
        """Delete a fact, its index entry (a valid fact's) and its links (the same-subject chain
        closes over the gap: the next fact links to the previous one). The facts it superseded are
        not touched (see :meth:`release`). Caller holds a transaction."""
        if valid:
            self._unindex(rowid, stems)
        self.conn.execute(
            "UPDATE facts SET prev = (SELECT prev FROM facts WHERE rowid = ?) WHERE prev = ?",
            (rowid, rowid),
        )
        self.conn.execute("DELETE FROM facts WHERE rowid = ?", (rowid,))

    def _unindex(self, rowid: int, stems: str) -> None:
        """Take a valid fact out of the full-text index (if it is in it yet), before it stops being
        valid or is deleted."""
        if rowid <= self.get_meta_int("indexed_upto"):
            self.conn.execute(
                "INSERT INTO facts_fts(facts_fts, rowid, stems) VALUES ('delete', ?, ?)",
                (rowid, stems),
            )

    def target(self, fact_id: str) -> Target | None:
        row: Target | None = self.conn.execute(
            "SELECT rowid, fact_id, kind, stems, superseded_by FROM facts WHERE fact_id = ?",
            (fact_id,),
        ).fetchone()
        return row

    def targets_of_subject(self, subject: str) -> list[Target]:
        return self.conn.execute(
            "SELECT rowid, fact_id, kind, stems, superseded_by FROM facts WHERE subject = ?",
            (subject,),
        ).fetchall()

    def newest_of_subject(self, subject: str) -> int | None:
        row = self.conn.execute("SELECT max(rowid) FROM facts WHERE subject = ?", (subject,))
        newest: int | None = row.fetchone()[0]
        return newest

    def supersede(self, olds: Sequence[Changed], new_rowid: int) -> None:
        """Mark valid facts as superseded by the fact at ``new_rowid``: out of the index and the
        fact count. Caller holds a transaction."""
        for rowid, _, _, stems in olds:
            self._unindex(rowid, stems)
            self.conn.execute(
                "UPDATE facts SET superseded_by = ? WHERE rowid = ?", (new_rowid, rowid)
            )
        self.bump_fact_count(-len(olds))

    def release(self, rowid: int, successor: int | None) -> list[Changed]:
        """Before the fact at ``rowid`` is deleted: what it superseded passes to its own
        ``successor`` (the fact superseding it), or, when it was valid, becomes valid again: back in
        the index (if it was in it before) and the fact count. Returns the revived facts. Caller
        holds a transaction."""
        if successor is not None:
            self.conn.execute(
                "UPDATE facts SET superseded_by = ? WHERE superseded_by = ?", (successor, rowid)
            )
            return []
        rows: list[Changed] = self.conn.execute(
            "SELECT rowid, fact_id, kind, stems FROM facts WHERE superseded_by = ? ORDER BY rowid",
            (rowid,),
        ).fetchall()
        if not rows:
            return rows
        mark = self.get_meta_int("indexed_upto")
        self.conn.execute("UPDATE facts SET superseded_by = NULL WHERE superseded_by = ?", (rowid,))
        self.conn.executemany(
            "INSERT INTO facts_fts(rowid, stems) VALUES (?, ?)",
            [(r[0], r[3]) for r in rows if r[0] <= mark],
        )
        self.bump_fact_count(len(rows))
        return rows

    def superseded_among(self, rowids: Sequence[int]) -> set[int]:
        """The superseded facts among ``rowids``."""
        marks = ",".join("?" * len(rowids))
        return {
            r
            for (r,) in self.conn.execute(
                f"SELECT rowid FROM facts WHERE rowid IN ({marks}) AND superseded_by IS NOT NULL",
                list(rowids),
            )
        }

    def supersession_step(self, rowids: Sequence[int]) -> list[int]:
        marks = ",".join("?" * len(rowids))
        step = self.conn.execute(
            f"SELECT superseded_by FROM facts WHERE rowid IN ({marks}) "
            f"AND superseded_by IS NOT NULL "
            f"UNION SELECT rowid FROM facts WHERE superseded_by IN ({marks})",
            (*rowids, *rowids),
        )
        return [r for (r,) in step]

    def stored_rows(self, rowids: Sequence[int]) -> list[tuple[Any, ...]]:
        marks = ",".join("?" * len(rowids))
        return self.conn.execute(
            f"SELECT {_FACT_COLUMNS_F}, f.confidence, f.created_at, s.fact_id FROM facts f "
            f"LEFT JOIN facts s ON s.rowid = f.superseded_by WHERE f.rowid IN ({marks}) "
            "ORDER BY f.rowid DESC",
            list(rowids),
        ).fetchall()

    def rowids_of_subject(self, subject: str, limit: int) -> list[int]:
        """Rowids of the facts (valid or not) with ``subject``, newest first."""
        rows = self.conn.execute(
            "SELECT rowid FROM facts WHERE subject = ? ORDER BY rowid DESC LIMIT ?",
            (subject, limit),
        ).fetchall()
        return [r for (r,) in rows]

    def line_sizes(self) -> Iterator[tuple[int, int]]:
        """The valid non-constraint facts' rowids and line sizes, newest first, read as
        consumed."""
        cursor = self.conn.execute(
            "SELECT rowid, length(fact_id) + length(subject) + length(body) + 8 FROM facts "
            "WHERE superseded_by IS NULL AND kind != 'constraint' ORDER BY rowid DESC"
        )
        try:
            for rowid, size in cursor:
                yield rowid, int(size)
        finally:
            cursor.close()

    def clear(self) -> None:
        """Remove every fact and index entry. Caller holds a transaction."""
        self.conn.execute("INSERT INTO facts_fts(facts_fts) VALUES ('delete-all')")
        self.conn.execute("DELETE FROM facts")
        self.set_meta("fact_count", 0)
        self.set_meta("indexed_upto", 0)

    def neighbours(self, rowids: Sequence[int]) -> dict[int, list[int]]:
        """``RelatedTo`` neighbours of ``rowids``: the previous and the next fact with the same
        subject (one statement, two indexed look-ups, for the whole batch)."""
        adj: dict[int, list[int]] = {r: [] for r in rowids}
        if not rowids:
            return adj
        marks = ",".join("?" * len(rowids))
        for node, other in self.conn.execute(
            f"SELECT rowid, prev FROM facts WHERE rowid IN ({marks}) AND prev IS NOT NULL "
            f"UNION ALL SELECT prev, rowid FROM facts WHERE prev IN ({marks})",
            (*rowids, *rowids),
        ):
            adj[node].append(other)
        return adj

    def content_of(self, fact_id: str) -> tuple[str, str] | None:
        """``(subject, body)`` of a stored fact, or None."""
        row = self.conn.execute(
            "SELECT subject, body FROM facts WHERE fact_id = ?", (fact_id,)
        ).fetchone()
        return None if row is None else (row[0], row[1])

    def rowid_of(self, fact_id: str) -> int | None:
        row = self.conn.execute("SELECT rowid FROM facts WHERE fact_id = ?", (fact_id,)).fetchone()
        return None if row is None else int(row[0])

    def deletable(self, fact_id: str) -> tuple[int, str, str, int | None] | None:
        """``(rowid, kind, stems, superseded_by)`` of a stored fact (what :meth:`remove_fact` and
        :meth:`release` need), or None."""
        row = self.conn.execute(
            "SELECT rowid, kind, stems, superseded_by FROM facts WHERE fact_id = ?", (fact_id,)
        ).fetchone()
        return None if row is None else (row[0], row[1], row[2], row[3])

    def fact_rows(self, limit: int | None = None, offset: int = 0) -> list[tuple[Any, ...]]:
        """``FACT_COLUMNS, confidence, created_at, superseded_by's fact_id`` in creation order
        (valid and superseded facts)."""
        return self.conn.execute(
            f"SELECT {_FACT_COLUMNS_F}, f.confidence, f.created_at, s.fact_id FROM facts f "
            "LEFT JOIN facts s ON s.rowid = f.superseded_by ORDER BY f.rowid LIMIT ? OFFSET ?",
            (-1 if limit is None else limit, offset),
        ).fetchall()

    def constraint_rows(self) -> list[tuple[str, str, str]]:
        """``(fact_id, subject, body)`` of the valid constraints in creation order."""
        return self.conn.execute(
            "SELECT fact_id, subject, body FROM facts WHERE kind = 'constraint' "
            "AND superseded_by IS NULL ORDER BY rowid"
        ).fetchall()

    def written_since(self, at: float, limit: int) -> list[int]:
        rows = self.conn.execute(
            "SELECT rowid FROM facts WHERE created_at >= ? ORDER BY rowid LIMIT ?", (at, limit)
        )
        return [r for (r,) in rows]

    def superseded_since(self, at: float, limit: int) -> list[int]:
        rows = self.conn.execute(
            "SELECT f.rowid FROM facts f JOIN facts s ON s.rowid = f.superseded_by "
            "WHERE s.created_at >= ? ORDER BY f.rowid LIMIT ?",
            (at, limit),
        )
        return [r for (r,) in rows]

    def log_deletion(self, deleted: Deleted, kept: Kept) -> None:
        self.conn.execute("INSERT INTO deletions VALUES (?, ?, ?, ?, ?, ?, ?)", (*deleted, kept))

    def deleted_since(self, at: float, limit: int) -> list[Deleted]:
        return self.conn.execute(
            f"SELECT {_DELETED} FROM deletions WHERE deleted_at >= ? ORDER BY rowid LIMIT ?",
            (at, limit),
        ).fetchall()

    def take_deletion(self, fact_id: str) -> tuple[Deleted, Kept] | None:
        row = self.conn.execute(
            "DELETE FROM deletions WHERE rowid = (SELECT max(rowid) FROM deletions "
            f"WHERE fact_id = ?) RETURNING {_DELETED}, kept",
            (fact_id,),
        ).fetchone()
        if row is None:
            return None
        return (row[0], row[1], row[2], row[3], float(row[4]), row[5]), row[6]

    def insert_fact_at(self, fact: NewFact, rowid: int) -> None:
        """Insert a fact at a free ``rowid`` (before the newest, as a restore does): linked after
        the previous fact of its subject, the next one linked after it, and indexed at once when
        the rowid is below the pending mark. Caller holds a transaction."""
        self.conn.execute(
            "INSERT INTO facts(fact_id, subject, body, kind, tags, source, confidence, created_at, "
            "terms, stems, provenance, rowid, prev) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "(SELECT max(rowid) FROM facts WHERE subject = ? AND rowid < ?))",
            (*_values(fact), rowid, fact.subject, rowid),
        )
        self.conn.execute(
            "UPDATE facts SET prev = ? WHERE rowid = "
            "(SELECT min(rowid) FROM facts WHERE subject = ? AND rowid > ?)",
            (rowid, fact.subject, rowid),
        )
        if rowid <= self.get_meta_int("indexed_upto"):
            self.conn.execute(
                "INSERT INTO facts_fts(rowid, stems) VALUES (?, ?)", (rowid, fact.stems)
            )

    def repoint(self, rowids: Sequence[int], new_rowid: int) -> None:
        self.conn.executemany(
            "UPDATE facts SET superseded_by = ? WHERE rowid = ?", [(new_rowid, r) for r in rowids]
        )

    def pinned_rows(self) -> list[tuple[int, str, str, str]]:
        """Read through the partial index ``facts_pinned`` (its condition spelled as in the
        index, so the planner uses it): as cheap at 100k facts as at 10."""
        return self.conn.execute(
            f"SELECT rowid, fact_id, subject, body FROM facts INDEXED BY facts_pinned "
            f"{_PINNED_WHERE} AND kind <> 'constraint' "
            "AND EXISTS (SELECT 1 FROM json_each(facts.tags) WHERE value = ?) ORDER BY rowid",
            (PINNED,),
        ).fetchall()

    def utility_blend(self) -> tuple[float, float] | None:
        rows = dict(
            self.conn.execute(
                "SELECT key, value FROM meta WHERE key IN ('utility_weight', 'utility_exploration')"
            ).fetchall()
        )
        if len(rows) < 2:
            return None
        return float(rows["utility_weight"]), float(rows["utility_exploration"])

    def set_utility_blend(self, weight: float, exploration: float) -> None:
        self.set_meta("utility_weight", weight)
        self.set_meta("utility_exploration", exploration)

    def uses(self, rowids: Sequence[int]) -> dict[int, int]:
        out: dict[int, int] = {}
        for start in range(0, len(rowids), 500):
            chunk = rowids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            out.update(
                self.conn.execute(
                    f"SELECT rowid, uses FROM facts WHERE rowid IN ({marks}) AND uses > 0", chunk
                ).fetchall()
            )
        return out

    def all_uses(self) -> int:
        return self.get_meta_int("all_uses")

    def add_use(self, rowid: int) -> None:
        self.conn.execute("UPDATE facts SET uses = uses + 1 WHERE rowid = ?", (rowid,))
        self.conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('all_uses', 0)")
        self.conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'all_uses'")

    def rows_by_rowid(self, rowids: Sequence[int], columns: str) -> dict[int, tuple[Any, ...]]:
        """``rowid -> (columns...)`` for the stored ones of ``rowids``."""
        out: dict[int, tuple[Any, ...]] = {}
        for start in range(0, len(rowids), 500):
            chunk = list(rowids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            for row in self.conn.execute(
                f"SELECT rowid, {columns} FROM facts WHERE rowid IN ({marks})", chunk
            ):
                out[row[0]] = row[1:]
        return out

    def term_prefixes(self, rowids: Sequence[int], chars: int) -> list[tuple[int, str, str]]:
        marks = ",".join("?" * len(rowids))
        return self.conn.execute(
            f"SELECT rowid, substr(terms, 1, ?), substr(stems, 1, ?) FROM facts "
            f"WHERE rowid IN ({marks})",
            (chars, chars, *rowids),
        ).fetchall()

    def problems(self) -> list[str]:
        """What is wrong with the stored graph (SQLite integrity, the full-text index against the
        facts, the fact count). Indexes the pending batch: the caller rolls its transaction back."""
        found = [r[0] for r in self.conn.execute("PRAGMA integrity_check") if r[0] != "ok"]
        self.index_pending()
        try:
            self.conn.execute(
                "INSERT INTO facts_fts(facts_fts, rank) VALUES ('integrity-check', 1)"
            )
        except sqlite3.DatabaseError as exc:
            found.append(f"full-text index: {exc}")
        stored = self.conn.execute(
            "SELECT count(*) FROM facts WHERE superseded_by IS NULL"
        ).fetchone()[0]
        counted = self.get_meta_int("fact_count")
        if stored != counted:
            found.append(f"fact_count says {counted} but {stored} valid facts are stored")
        return found

    def match(self, all_of: Sequence[Sequence[str]], limit: int | None = None) -> list[int]:
        """Rowids of the indexed facts holding a key of each group of ``all_of`` (newest first with
        a limit)."""
        expr = " AND ".join("(" + " OR ".join(f'"{key}"' for key in keys) + ")" for keys in all_of)
        if limit is None:
            rows = self.conn.execute("SELECT rowid FROM facts_fts WHERE facts_fts MATCH ?", (expr,))
        else:
            rows = self.conn.execute(
                "SELECT rowid FROM facts_fts WHERE facts_fts MATCH ? ORDER BY rowid DESC LIMIT ?",
                (expr, limit),
            )
        return [rowid for (rowid,) in rows]

    def newest_postings(self, key: str, probe: int) -> tuple[int, int | None]:
        """``(count, lowest rowid)`` among the newest ``probe`` indexed facts holding ``key``."""
        count, low = self.conn.execute(
            "SELECT count(*), min(rowid) FROM (SELECT rowid FROM facts_fts WHERE facts_fts MATCH ? "
            "ORDER BY rowid DESC LIMIT ?)",
            (f'"{key}"', probe),
        ).fetchone()
        return int(count), low

    def max_rowid(self) -> int:
        return int(self.conn.execute("SELECT max(rowid) FROM facts").fetchone()[0] or 0)

    def vocabulary(self, limit: int, max_chars: int) -> list[str]:
        """Up to ``limit`` index keys of at most ``max_chars`` characters (a graph written before
        keys were bounded may hold longer ones: they are left out)."""
        return [
            row[0]
            for row in self.conn.execute(
                "SELECT term FROM facts_vocab WHERE length(term) <= ? LIMIT ?", (max_chars, limit)
            )
        ]

    def duplicate_groups(self) -> list[list[int]]:
        """Rowids of the valid facts sharing subject and body, one ascending list per group of
        2+."""
        groups = self.conn.execute(
            "SELECT group_concat(rowid) FROM facts WHERE superseded_by IS NULL "
            "GROUP BY subject, body HAVING count(*) > 1"
        ).fetchall()
        return [sorted(int(x) for x in joined.split(",")) for (joined,) in groups]

    def tags_and_stems(self, rowid: int) -> tuple[str, str]:
        row = self.conn.execute("SELECT tags, stems FROM facts WHERE rowid = ?", (rowid,))
        tags, stems = row.fetchone()
        return tags, stems

    def set_tags(self, rowid: int, tags: str) -> None:
        self.conn.execute("UPDATE facts SET tags = ? WHERE rowid = ?", (tags, rowid))

    def contested_subjects(self) -> list[str]:
        """Subjects whose valid facts hold different bodies, oldest first."""
        rows = self.conn.execute(
            "SELECT subject FROM facts WHERE superseded_by IS NULL GROUP BY subject "
            "HAVING count(DISTINCT body) > 1 ORDER BY min(rowid)"
        ).fetchall()
        return [row[0] for row in rows]

    def ids_of_subject(self, subject: str, limit: int) -> list[str]:
        rows = self.conn.execute(
            "SELECT fact_id FROM facts WHERE subject = ? AND superseded_by IS NULL ORDER BY rowid "
            "LIMIT ?",
            (subject, limit),
        ).fetchall()
        return [row[0] for row in rows]

    def insert_batch(self, rows: Sequence[Linked]) -> None:
        """Numbered, linked facts (:func:`carnb.memgine.steps.append_batch`), then the index."""
        try:
            self.conn.executemany(
                "INSERT INTO facts(rowid, fact_id, subject, body, kind, tags, source, "
                "confidence, created_at, terms, stems, provenance, prev) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(rowid, *_values(fact), prev) for rowid, fact, prev in rows],
            )
        except sqlite3.IntegrityError as exc:
            raise FactIdTaken(str(exc)) from exc
        self.index_pending()

    def valid_contents(self, rowids: Sequence[int]) -> list[tuple[int, str, str]]:
        marks = ",".join("?" * len(rowids))
        return self.conn.execute(
            f"SELECT rowid, subject, body FROM facts WHERE rowid IN ({marks}) "
            "AND superseded_by IS NULL ORDER BY rowid",
            list(rowids),
        ).fetchall()

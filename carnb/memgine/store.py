"""The SQLite store of one memgine graph: its schema and every SQL statement memgine runs.

No policy here (what may be written, what a query returns, caching, transactions: the engine
:mod:`carnb.memgine.engine` with :mod:`carnb.memgine.ranking` and :mod:`carnb.memgine.lexicon`):
these functions read and write rows inside whatever transaction the caller holds. Files are
opened, and their schema versions migrated, by :mod:`carnb.sqlite`.

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
  yet and readers score them directly (:func:`pending`). A commit that writes one FTS5 segment
  costs several times a plain row insert, so batching makes ``add_fact`` about twice as fast;
  the batch is indexed inside the transaction of the fact that fills it, so the mark and the
  index never disagree, whoever crashes.
- ``facts_vocab``: FTS5's view of the index vocabulary (no storage of its own).
- ``meta``: the ``ws-<n>`` counter, the fact count and ``indexed_upto`` (the schema version is
  ``PRAGMA user_version``).

Bounds that keep every query cheap whatever the facts hold: index keys are at most
``MAX_KEY_CHARS`` long, the pending facts hold at most about ``PENDING_CHARS`` of terms (a
bigger fact is indexed at once), and re-scoring reads at most ``SCORED_CHARS`` of a fact.

A write touches few pages (the row and three small indexes; an FTS segment once per batch),
which keeps commits and the WAL small. WAL checkpoints run on a background thread
(:class:`Checkpointer`) so a commit never waits for one.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from carnb import sqlite
from carnb.errors import CarnbError
from carnb.memgine.backend import Changed, NewFact, Pending
from carnb.memgine.text import MAX_KEY_CHARS, fact_keys

log = logging.getLogger("carnb.memgine")

# Files written before carnb used ``PRAGMA user_version`` carry this tag in ``meta`` (version 1).
LEGACY_SCHEMA_TAG = "carnb.memgine.sqlite/1"
# Version 2 bounds index keys (text.MAX_KEY_CHARS); migrating from 1 re-keys long words.
# Version 3 adds supersession (facts.superseded_by, the index holds valid facts only).
SCHEMA_VERSION = 3
RELATED_TO = "RelatedTo"
# New facts are added to the full-text index this many at a time, or sooner once the pending
# facts hold this many characters of terms: every query re-scores the pending facts (pending()).
INDEX_BATCH = 32
PENDING_CHARS = 64 * 1024
# Re-scoring reads this many characters of a candidate's terms and stems (:func:`terms_of`).
SCORED_CHARS = 64 * 1024

_CREATE = """
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
    superseded_by INTEGER
);
CREATE INDEX facts_subject ON facts(subject);
CREATE INDEX facts_prev ON facts(prev) WHERE prev IS NOT NULL;
CREATE INDEX facts_constraints ON facts(kind) WHERE kind = 'constraint';
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
        raise CarnbError(
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
        set_meta(conn, "indexed_upto", max_rowid(conn))
    else:
        index_pending(conn)  # version 1 let the pending facts grow past PENDING_CHARS


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
    set_meta(conn, "indexed_upto", max_rowid(conn))
    count = conn.execute("SELECT count(*) FROM facts WHERE superseded_by IS NULL").fetchone()[0]
    set_meta(conn, "fact_count", int(count))


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


_SCHEMA = sqlite.Schema(
    "memory graph file",
    SCHEMA_VERSION,
    _CREATE + ";" + _VALID_INDEX,
    migrations={1: _rekey_long_words, 2: _add_supersession},
    legacy=_legacy_version,
)


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
    mark = get_meta_int(conn, "indexed_upto")
    if rowid - mark >= INDEX_BATCH or _pending_chars(conn, mark) > PENDING_CHARS:
        index_pending(conn)
    return rowid


def _pending_chars(conn: sqlite3.Connection, mark: int) -> int:
    row = conn.execute("SELECT sum(length(terms)) FROM facts WHERE rowid > ?", (mark,)).fetchone()
    return int(row[0] or 0)


def index_pending(conn: sqlite3.Connection) -> None:
    """Add every fact past the ``indexed_upto`` mark to the full-text index and move the mark.
    Caller holds a transaction."""
    mark = get_meta_int(conn, "indexed_upto")
    conn.execute(
        "INSERT INTO facts_fts(rowid, stems) SELECT rowid, stems FROM facts WHERE rowid > ? "
        "AND superseded_by IS NULL",
        (mark,),
    )
    top = conn.execute("SELECT max(rowid) FROM facts").fetchone()[0]
    set_meta(conn, "indexed_upto", max(mark, top or 0))


def pending(conn: sqlite3.Connection) -> list[Pending]:
    """``(rowid, terms, stems, kind)`` of the valid facts not yet in the full-text index (fewer
    than ``INDEX_BATCH``, about ``PENDING_CHARS`` of terms at most), oldest first."""
    mark = get_meta_int(conn, "indexed_upto")
    return conn.execute(
        "SELECT rowid, terms, stems, kind FROM facts WHERE rowid > ? AND superseded_by IS NULL "
        "ORDER BY rowid",
        (mark,),
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


def remove_fact(conn: sqlite3.Connection, rowid: int, stems: str, *, valid: bool = True) -> None:
    """Delete a fact, its index entry (a valid fact's) and its links (the same-subject chain
    closes over the gap: the next fact links to the previous one). The facts it superseded are
    not touched (see :func:`revive`). Caller holds a transaction."""
    if valid:
        _unindex(conn, rowid, stems)
    conn.execute(
        "UPDATE facts SET prev = (SELECT prev FROM facts WHERE rowid = ?) WHERE prev = ?",
        (rowid, rowid),
    )
    conn.execute("DELETE FROM facts WHERE rowid = ?", (rowid,))


def _unindex(conn: sqlite3.Connection, rowid: int, stems: str) -> None:
    """Take a valid fact out of the full-text index (if it is in it yet), before it stops being
    valid or is deleted."""
    if rowid <= get_meta_int(conn, "indexed_upto"):
        conn.execute(
            "INSERT INTO facts_fts(facts_fts, rowid, stems) VALUES ('delete', ?, ?)",
            (rowid, stems),
        )


def resolve_targets(
    conn: sqlite3.Connection, names: Sequence[str]
) -> tuple[list[Changed], list[str]]:
    """The valid facts that ``names`` (fact ids, else subjects) designate, and the names that
    designate no fact at all. A name that is a fact id designates that fact (nothing when it is
    already superseded); otherwise every valid fact with that subject, and none when they are
    all superseded already."""
    found: dict[int, Changed] = {}
    missing: list[str] = []
    for name in names:
        row = conn.execute(
            "SELECT rowid, fact_id, kind, stems, superseded_by FROM facts WHERE fact_id = ?",
            (name,),
        ).fetchone()
        if row is not None:
            if row[4] is None:
                found[row[0]] = row[:4]
            continue
        rows = conn.execute(
            "SELECT rowid, fact_id, kind, stems, superseded_by FROM facts WHERE subject = ?",
            (name,),
        ).fetchall()
        if not rows:
            missing.append(name)
        for r in rows:
            if r[4] is None:
                found[r[0]] = r[:4]
    return [found[r] for r in sorted(found)], missing


def supersede(conn: sqlite3.Connection, olds: Sequence[Changed], new_rowid: int) -> None:
    """Mark valid facts as superseded by the fact at ``new_rowid``: out of the index and the
    fact count. Caller holds a transaction."""
    for rowid, _, _, stems in olds:
        _unindex(conn, rowid, stems)
        conn.execute("UPDATE facts SET superseded_by = ? WHERE rowid = ?", (new_rowid, rowid))
    bump_fact_count(conn, -len(olds))


def release(conn: sqlite3.Connection, rowid: int, successor: int | None) -> list[Changed]:
    """Before the fact at ``rowid`` is deleted: what it superseded passes to its own
    ``successor`` (the fact superseding it), or, when it was valid, becomes valid again: back in
    the index (if it was in it before) and the fact count. Returns the revived facts. Caller
    holds a transaction."""
    if successor is not None:
        conn.execute(
            "UPDATE facts SET superseded_by = ? WHERE superseded_by = ?", (successor, rowid)
        )
        return []
    rows: list[Changed] = conn.execute(
        "SELECT rowid, fact_id, kind, stems FROM facts WHERE superseded_by = ? ORDER BY rowid",
        (rowid,),
    ).fetchall()
    if not rows:
        return rows
    mark = get_meta_int(conn, "indexed_upto")
    conn.execute("UPDATE facts SET superseded_by = NULL WHERE superseded_by = ?", (rowid,))
    conn.executemany(
        "INSERT INTO facts_fts(rowid, stems) VALUES (?, ?)",
        [(r[0], r[3]) for r in rows if r[0] <= mark],
    )
    bump_fact_count(conn, len(rows))
    return rows


def supersede_by_ids(conn: sqlite3.Connection, links: Sequence[tuple[str, str]]) -> None:
    """After a load: ``(old fact_id, new fact_id)`` pairs, both stored and the old one still
    valid and indexed. Caller holds a transaction."""
    for old_id, new_id in links:
        old = conn.execute(
            "SELECT rowid, fact_id, kind, stems FROM facts WHERE fact_id = ? "
            "AND superseded_by IS NULL",
            (old_id,),
        ).fetchone()
        new = rowid_of(conn, new_id)
        if old is not None and new is not None:
            supersede(conn, [old], new)


def superseded_among(conn: sqlite3.Connection, rowids: Sequence[int]) -> set[int]:
    """The superseded facts among ``rowids``."""
    if not rowids:
        return set()
    marks = ",".join("?" * len(rowids))
    return {
        r
        for (r,) in conn.execute(
            f"SELECT rowid FROM facts WHERE rowid IN ({marks}) AND superseded_by IS NOT NULL",
            list(rowids),
        )
    }


def history(conn: sqlite3.Connection, start: Sequence[int], limit: int) -> list[tuple[Any, ...]]:
    """The facts linked to ``start`` by supersession (either way, transitively), ``start``
    included, newest first, at most ``limit``: ``FACT_COLUMNS, confidence, created_at,
    superseded_by's fact_id``."""
    seen: set[int] = set(start)
    frontier = list(start)
    while frontier and len(seen) < limit:
        marks = ",".join("?" * len(frontier))
        step = conn.execute(
            f"SELECT superseded_by FROM facts WHERE rowid IN ({marks}) "
            f"AND superseded_by IS NOT NULL "
            f"UNION SELECT rowid FROM facts WHERE superseded_by IN ({marks})",
            (*frontier, *frontier),
        ).fetchall()
        frontier = [r for (r,) in step if r not in seen][: limit - len(seen)]
        seen.update(frontier)
    chosen = sorted(seen, reverse=True)[:limit]
    if not chosen:
        return []
    marks = ",".join("?" * len(chosen))
    return conn.execute(
        f"SELECT {_FACT_COLUMNS_F}, f.confidence, f.created_at, s.fact_id FROM facts f "
        f"LEFT JOIN facts s ON s.rowid = f.superseded_by WHERE f.rowid IN ({marks}) "
        "ORDER BY f.rowid DESC",
        chosen,
    ).fetchall()


def rowids_of_subject(conn: sqlite3.Connection, subject: str, limit: int) -> list[int]:
    """Rowids of the facts (valid or not) with ``subject``, newest first."""
    rows = conn.execute(
        "SELECT rowid FROM facts WHERE subject = ? ORDER BY rowid DESC LIMIT ?", (subject, limit)
    ).fetchall()
    return [r for (r,) in rows]


def newest_valid_lines(conn: sqlite3.Connection, room: int) -> tuple[list[int], bool]:
    """Rowids of the newest valid non-constraint facts whose context lines (estimated from
    the lengths of id, subject and body) fit in ``room`` characters together, newest first, and
    whether that is all of them. Stops at the first fact that does not fit, so it reads no
    more rows than fit."""
    out: list[int] = []
    used = 0
    cursor = conn.execute(
        "SELECT rowid, length(fact_id) + length(subject) + length(body) + 8 FROM facts "
        "WHERE superseded_by IS NULL AND kind != 'constraint' ORDER BY rowid DESC"
    )
    for rowid, size in cursor:
        used += int(size)
        if used > room:
            cursor.close()
            return out, False
        out.append(rowid)
    return out, True


def clear(conn: sqlite3.Connection) -> None:
    """Remove every fact and index entry. Caller holds a transaction."""
    conn.execute("INSERT INTO facts_fts(facts_fts) VALUES ('delete-all')")
    conn.execute("DELETE FROM facts")
    set_meta(conn, "fact_count", 0)
    set_meta(conn, "indexed_upto", 0)


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


# -- reads and writes for the engine (the caller holds the graph's lock, and a transaction
#    where a consistent view or a write is needed) -----------------------------------------------

_FACT_COLUMNS_F = "f.fact_id, f.subject, f.body, f.kind, f.tags, f.source"


def data_version(conn: sqlite3.Connection) -> int:
    """Changes when another connection commits to the file (``PRAGMA data_version``)."""
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def content_of(conn: sqlite3.Connection, fact_id: str) -> tuple[str, str] | None:
    """``(subject, body)`` of a stored fact, or None."""
    row = conn.execute("SELECT subject, body FROM facts WHERE fact_id = ?", (fact_id,)).fetchone()
    return None if row is None else (row[0], row[1])


def rowid_of(conn: sqlite3.Connection, fact_id: str) -> int | None:
    row = conn.execute("SELECT rowid FROM facts WHERE fact_id = ?", (fact_id,)).fetchone()
    return None if row is None else int(row[0])


def deletable(conn: sqlite3.Connection, fact_id: str) -> tuple[int, str, str, int | None] | None:
    """``(rowid, kind, stems, superseded_by)`` of a stored fact (what :func:`remove_fact` and
    :func:`release` need), or None."""
    row = conn.execute(
        "SELECT rowid, kind, stems, superseded_by FROM facts WHERE fact_id = ?", (fact_id,)
    ).fetchone()
    return None if row is None else (row[0], row[1], row[2], row[3])


def mint_id(conn: sqlite3.Connection) -> str:
    """The next free ``ws-<n>`` (a caller's own ``ws-7`` is skipped, never shadowed)."""
    n = get_meta_int(conn, "next_ws")
    while conn.execute("SELECT 1 FROM facts WHERE fact_id = ?", (f"ws-{n}",)).fetchone():
        n += 1
    set_meta(conn, "next_ws", n + 1)
    return f"ws-{n}"


def fact_rows(
    conn: sqlite3.Connection, limit: int | None = None, offset: int = 0
) -> list[tuple[Any, ...]]:
    """``FACT_COLUMNS, confidence, created_at, superseded_by's fact_id`` in creation order (valid
    and superseded facts)."""
    return conn.execute(
        f"SELECT {_FACT_COLUMNS_F}, f.confidence, f.created_at, s.fact_id FROM facts f "
        "LEFT JOIN facts s ON s.rowid = f.superseded_by ORDER BY f.rowid LIMIT ? OFFSET ?",
        (-1 if limit is None else limit, offset),
    ).fetchall()


def constraint_rows(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
    """``(fact_id, subject, body)`` of the valid constraints in creation order."""
    return conn.execute(
        "SELECT fact_id, subject, body FROM facts WHERE kind = 'constraint' "
        "AND superseded_by IS NULL ORDER BY rowid"
    ).fetchall()


def rows_by_rowid(
    conn: sqlite3.Connection, rowids: Sequence[int], columns: str
) -> dict[int, tuple[Any, ...]]:
    """``rowid -> (columns...)`` for the stored ones of ``rowids``."""
    out: dict[int, tuple[Any, ...]] = {}
    for start in range(0, len(rowids), 500):
        chunk = list(rowids[start : start + 500])
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(
            f"SELECT rowid, {columns} FROM facts WHERE rowid IN ({marks})", chunk
        ):
            out[row[0]] = row[1:]
    return out


def terms_of(conn: sqlite3.Connection, rowids: Sequence[int]) -> Iterator[tuple[int, str, str]]:
    """``(rowid, terms, stems)`` of the stored ones of ``rowids`` (read 500 at a time), each
    cut to its first ``SCORED_CHARS`` characters (whole tokens), so re-scoring a candidate
    costs the same however big the fact is."""
    for start in range(0, len(rowids), 500):
        chunk = list(rowids[start : start + 500])
        marks = ",".join("?" * len(chunk))
        for rowid, terms, stems in conn.execute(
            f"SELECT rowid, substr(terms, 1, ?), substr(stems, 1, ?) FROM facts "
            f"WHERE rowid IN ({marks})",
            (SCORED_CHARS + 1, SCORED_CHARS + 1, *chunk),
        ):
            yield rowid, whole_tokens(terms), whole_tokens(stems)


def whole_tokens(text: str) -> str:
    """``text`` (read as ``SCORED_CHARS + 1`` characters at most) without a cut last token."""
    if len(text) <= SCORED_CHARS:
        return text
    return text[: max(0, text.rfind(" ", 0, SCORED_CHARS + 1))]


def problems(conn: sqlite3.Connection) -> list[str]:
    """What is wrong with the stored graph (SQLite integrity, the full-text index against the
    facts, the fact count). Indexes the pending batch: the caller rolls its transaction back."""
    found = [r[0] for r in conn.execute("PRAGMA integrity_check") if r[0] != "ok"]
    index_pending(conn)
    try:
        conn.execute("INSERT INTO facts_fts(facts_fts, rank) VALUES ('integrity-check', 1)")
    except sqlite3.DatabaseError as exc:
        found.append(f"full-text index: {exc}")
    stored = conn.execute("SELECT count(*) FROM facts WHERE superseded_by IS NULL").fetchone()[0]
    counted = get_meta_int(conn, "fact_count")
    if stored != counted:
        found.append(f"fact_count says {counted} but {stored} valid facts are stored")
    return found


# -- the full-text index -------------------------------------------------------------------------


def match(
    conn: sqlite3.Connection, all_of: Sequence[Sequence[str]], limit: int | None = None
) -> list[int]:
    """Rowids of the indexed facts holding a key of each group of ``all_of`` (newest first with
    a limit)."""
    expr = " AND ".join("(" + " OR ".join(f'"{key}"' for key in keys) + ")" for keys in all_of)
    if limit is None:
        rows = conn.execute("SELECT rowid FROM facts_fts WHERE facts_fts MATCH ?", (expr,))
    else:
        rows = conn.execute(
            "SELECT rowid FROM facts_fts WHERE facts_fts MATCH ? ORDER BY rowid DESC LIMIT ?",
            (expr, limit),
        )
    return [rowid for (rowid,) in rows]


def newest_postings(conn: sqlite3.Connection, key: str, probe: int) -> tuple[int, int | None]:
    """``(count, lowest rowid)`` among the newest ``probe`` indexed facts holding ``key``."""
    count, low = conn.execute(
        "SELECT count(*), min(rowid) FROM (SELECT rowid FROM facts_fts WHERE facts_fts MATCH ? "
        "ORDER BY rowid DESC LIMIT ?)",
        (f'"{key}"', probe),
    ).fetchone()
    return int(count), low


def max_rowid(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT max(rowid) FROM facts").fetchone()[0] or 0)


def vocabulary(conn: sqlite3.Connection, limit: int, max_chars: int) -> list[str]:
    """Up to ``limit`` index keys of at most ``max_chars`` characters (a graph written before
    keys were bounded may hold longer ones: they are left out)."""
    return [
        row[0]
        for row in conn.execute(
            "SELECT term FROM facts_vocab WHERE length(term) <= ? LIMIT ?", (max_chars, limit)
        )
    ]


# -- consolidation -------------------------------------------------------------------------------


def duplicate_groups(conn: sqlite3.Connection) -> list[list[int]]:
    """Rowids of the valid facts sharing subject and body, one ascending list per group of 2+."""
    groups = conn.execute(
        "SELECT group_concat(rowid) FROM facts WHERE superseded_by IS NULL "
        "GROUP BY subject, body HAVING count(*) > 1"
    ).fetchall()
    return [sorted(int(x) for x in joined.split(",")) for (joined,) in groups]


def merge_into(conn: sqlite3.Connection, keep: int, dups: Sequence[int]) -> None:
    """Remove the valid facts ``dups``; ``keep`` gets the union of their tags and takes over what
    they superseded."""
    (tags_json,) = conn.execute("SELECT tags FROM facts WHERE rowid = ?", (keep,)).fetchone()
    tags: list[str] = json.loads(tags_json)
    for dup in dups:
        dup_tags, stems = conn.execute(
            "SELECT tags, stems FROM facts WHERE rowid = ?", (dup,)
        ).fetchone()
        tags.extend(tag for tag in json.loads(dup_tags) if tag not in tags)
        conn.execute("UPDATE facts SET superseded_by = ? WHERE superseded_by = ?", (keep, dup))
        remove_fact(conn, dup, stems)
    conn.execute(
        "UPDATE facts SET tags = ? WHERE rowid = ?", (json.dumps(tags, ensure_ascii=False), keep)
    )


def contested_subjects(conn: sqlite3.Connection) -> list[str]:
    """Subjects whose valid facts hold different bodies, oldest first."""
    rows = conn.execute(
        "SELECT subject FROM facts WHERE superseded_by IS NULL GROUP BY subject "
        "HAVING count(DISTINCT body) > 1 ORDER BY min(rowid)"
    ).fetchall()
    return [row[0] for row in rows]


def ids_of_subject(conn: sqlite3.Connection, subject: str, limit: int) -> list[str]:
    rows = conn.execute(
        "SELECT fact_id FROM facts WHERE subject = ? AND superseded_by IS NULL ORDER BY rowid "
        "LIMIT ?",
        (subject, limit),
    ).fetchall()
    return [row[0] for row in rows]


# -- lock waits and batched loads (two processes on one data directory) ----------------------


class GraphBusy(CarnbError):
    """Another connection held the graph's write lock longer than ``LOCK_WAIT_S``."""


def write_failure(path: Path | None, exc: sqlite3.Error) -> CarnbError:
    """The error for a write that SQLite refused: a clear :class:`GraphBusy` when another
    connection held the write lock too long, else a generic storage failure."""
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return GraphBusy(
            f"memory graph {path} is busy: another connection (another kernel or server on "
            f"the same carnb data directory?) held its write lock for over {LOCK_WAIT_S:g} s; "
            "nothing was written, try again"
        )
    return CarnbError(f"memory graph {path or ':memory:'} write failed: {text}")


def append_batch(conn: sqlite3.Connection, facts: Sequence[NewFact]) -> None:
    """Append ``facts`` after the newest stored fact, each linked after the newest fact with its
    subject (stored or earlier in ``facts``), and index them; bumps the fact count. Caller
    holds a transaction. Other connections may have written between two batches of one load."""
    base = max_rowid(conn)
    last: dict[str, int | None] = {}
    rows = []
    for rowid, fact in enumerate(facts, start=base + 1):
        if fact.subject not in last:
            last[fact.subject] = conn.execute(
                "SELECT max(rowid) FROM facts WHERE subject = ?", (fact.subject,)
            ).fetchone()[0]
        rows.append((rowid, *_values(fact), last[fact.subject]))
        last[fact.subject] = rowid
    conn.executemany(
        "INSERT INTO facts(rowid, fact_id, subject, body, kind, tags, source, confidence, "
        "created_at, terms, stems, prev) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    index_pending(conn)
    bump_fact_count(conn, len(facts))


def same_content(conn: sqlite3.Connection, rowids: Sequence[int]) -> list[int]:
    """Those of ``rowids`` still stored, still valid and with the content (subject and body) of
    the oldest such one, ascending (for merging a duplicate group found in an earlier
    transaction: a fact superseded meanwhile is no longer a duplicate)."""
    marks = ",".join("?" * len(rowids))
    rows = conn.execute(
        f"SELECT rowid, subject, body FROM facts WHERE rowid IN ({marks}) "
        "AND superseded_by IS NULL ORDER BY rowid",
        list(rowids),
    ).fetchall()
    return [rowid for rowid, subject, body in rows if (subject, body) == rows[0][1:]]

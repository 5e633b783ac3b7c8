"""The SQLite store of one memgine graph: schema, connection settings and the row-level writes.

One connection per graph (``check_same_thread=False``; the owning :class:`~carnb.memgine.engine.
Memgine` serialises access with its lock). Files use WAL with ``synchronous=NORMAL``: a committed
transaction is in the WAL file before ``COMMIT`` returns, so it survives the process being killed
(SIGKILL) right after; only an operating-system crash or power loss may lose the last commits,
which is out of scope (MEMGINE.md: "an acknowledged fact is never lost, even if the kernel is
killed").

Tables:
- ``facts``: one row per fact; ``rowid`` is the creation order; ``terms`` holds the fact's unique
  tokens (space-joined, read by the re-scorer), ``stems`` their unique index keys.
- ``facts_fts``: FTS5 index over ``facts.stems`` (external content, kept in sync explicitly).
- ``stem_df``: document frequency per index key (idf and candidate budgeting in O(1); FTS5's own
  vocabulary table counts postings on every lookup).
- ``edges``: directed rows; a ``RelatedTo`` link is stored in both directions.
- ``meta``: schema tag, the ``ws-<n>`` counter and the fact count.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from carnb.errors import CarnbError

log = logging.getLogger("carnb.memgine")

SCHEMA_TAG = "carnb.memgine.sqlite/1"
RELATED_TO = "RelatedTo"

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
    stems TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS facts_subject ON facts(subject);
CREATE INDEX IF NOT EXISTS facts_kind ON facts(kind);
CREATE TABLE IF NOT EXISTS edges (
    src INTEGER NOT NULL,
    dst INTEGER NOT NULL,
    kind TEXT NOT NULL,
    PRIMARY KEY (src, dst, kind)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS edges_dst ON edges(dst);
CREATE TABLE IF NOT EXISTS stem_df (term TEXT PRIMARY KEY, df INTEGER NOT NULL) WITHOUT ROWID;
CREATE VIRTUAL TABLE IF NOT EXISTS facts_fts USING fts5(
    stems, content='facts', content_rowid='rowid', detail='none',
    tokenize='unicode61 remove_diacritics 0'
);
"""

FACT_COLUMNS = "rowid, fact_id, subject, body, kind, tags, source, confidence, created_at"


@dataclass(slots=True)
class NewFact:
    """A validated fact ready to be inserted (``terms`` already computed)."""

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


def connect(path: Path | None) -> sqlite3.Connection:
    """Open (and if needed create) a graph database; ``None`` gives an in-memory graph."""
    target = ":memory:" if path is None else str(path)
    try:
        conn = sqlite3.connect(target, isolation_level=None, check_same_thread=False, timeout=10.0)
    except sqlite3.Error as exc:
        raise CarnbError(f"memory graph file {path} cannot be opened: {exc}") from exc
    try:
        _configure(conn, persistent=path is not None)
        _ensure_schema(conn, path)
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


def _ensure_schema(conn: sqlite3.Connection, path: Path | None) -> None:
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
        return
    conn.execute("BEGIN IMMEDIATE")
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.executemany(
        "INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)",
        [("schema", SCHEMA_TAG), ("next_ws", 1), ("fact_count", 0)],
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
    """Insert a fact and its index entry; returns its rowid. Caller holds a transaction."""
    cur = conn.execute(
        "INSERT INTO facts(fact_id, subject, body, kind, tags, source, confidence, created_at, "
        "terms, stems) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
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
        ),
    )
    rowid = cur.lastrowid
    assert rowid is not None
    conn.execute("INSERT INTO facts_fts(rowid, stems) VALUES (?, ?)", (rowid, fact.stems))
    if fact.stems:
        conn.executemany(
            "INSERT INTO stem_df(term, df) VALUES (?, 1) "
            "ON CONFLICT(term) DO UPDATE SET df = df + 1",
            [(key,) for key in fact.stems.split(" ")],
        )
    return rowid


def link(conn: sqlite3.Connection, a: int, others: Iterable[int], kind: str = RELATED_TO) -> None:
    """Link ``a`` with each of ``others`` both ways."""
    rows: list[tuple[int, int, str]] = []
    for b in others:
        if b != a:
            rows.append((a, b, kind))
            rows.append((b, a, kind))
    if rows:
        conn.executemany("INSERT OR IGNORE INTO edges(src, dst, kind) VALUES (?, ?, ?)", rows)


def remove_fact(conn: sqlite3.Connection, rowid: int, stems: str) -> None:
    """Delete a fact, its index entries and every edge touching it. Caller holds a transaction."""
    conn.execute(
        "INSERT INTO facts_fts(facts_fts, rowid, stems) VALUES ('delete', ?, ?)", (rowid, stems)
    )
    if stems:
        keys = [(key,) for key in stems.split(" ")]
        conn.executemany("UPDATE stem_df SET df = df - 1 WHERE term = ?", keys)
        conn.executemany("DELETE FROM stem_df WHERE term = ? AND df <= 0", keys)
    conn.execute("DELETE FROM edges WHERE src = ?", (rowid,))
    conn.execute("DELETE FROM edges WHERE dst = ?", (rowid,))
    conn.execute("DELETE FROM facts WHERE rowid = ?", (rowid,))


def clear(conn: sqlite3.Connection) -> None:
    """Remove every fact, edge and index entry. Caller holds a transaction."""
    conn.execute("INSERT INTO facts_fts(facts_fts) VALUES ('delete-all')")
    conn.execute("DELETE FROM edges")
    conn.execute("DELETE FROM stem_df")
    conn.execute("DELETE FROM facts")
    set_meta(conn, "fact_count", 0)


def stem_dfs(conn: sqlite3.Connection, keys: Iterable[str]) -> dict[str, int]:
    """Document frequency of each index key (missing keys are absent: df 0)."""
    wanted = list(keys)
    if not wanted:
        return {}
    marks = ",".join("?" * len(wanted))
    return dict(conn.execute(f"SELECT term, df FROM stem_df WHERE term IN ({marks})", wanted))


def neighbours(conn: sqlite3.Connection, rowids: Sequence[int]) -> dict[int, list[int]]:
    """Adjacency lists of ``rowids`` (every edge kind, outgoing rows)."""
    adj: dict[int, list[int]] = {r: [] for r in rowids}
    if not rowids:
        return adj
    marks = ",".join("?" * len(rowids))
    for src, dst in conn.execute(f"SELECT src, dst FROM edges WHERE src IN ({marks})", rowids):
        adj[src].append(dst)
    return adj


def bulk_insert(
    conn: sqlite3.Connection, facts: Sequence[NewFact], edges: Iterable[tuple[int, int, str]]
) -> None:
    """Fill an empty graph: facts get rowids 1..n in order, then the index, frequencies and
    edges (each edge stored both ways) are built in bulk. Caller holds a transaction."""
    conn.executemany(
        "INSERT INTO facts(rowid, fact_id, subject, body, kind, tags, source, confidence, "
        "created_at, terms, stems) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            (
                rowid,
                f.fact_id,
                f.subject,
                f.body,
                f.kind,
                json.dumps(f.tags, ensure_ascii=False),
                f.source,
                f.confidence,
                f.created_at,
                f.terms,
                f.stems,
            )
            for rowid, f in enumerate(facts, start=1)
        ),
    )
    conn.execute("INSERT INTO facts_fts(facts_fts) VALUES ('rebuild')")
    df: Counter[str] = Counter()
    for fact in facts:
        if fact.stems:
            df.update(fact.stems.split(" "))
    conn.executemany("INSERT INTO stem_df(term, df) VALUES (?, ?)", df.items())
    rows: list[tuple[int, int, str]] = []
    for a, b, kind in edges:
        if a != b:
            rows.append((a, b, kind))
            rows.append((b, a, kind))
    conn.executemany("INSERT OR IGNORE INTO edges(src, dst, kind) VALUES (?, ?, ?)", rows)
    set_meta(conn, "fact_count", len(facts))

"""memgine's SQL on PostgreSQL: every graph of a team in shared tables, one transaction's
reads and writes as :class:`PgGraphTx` (a :class:`carnb.memgine.backend.GraphTx`).

No policy here (that is :class:`carnb.memgine.Memgine`, shared by both stores). Tables:

- ``memgine_graphs``: one row per graph, keyed ``(kind, name)`` (``agents``/``namespaces``):
  its fact count, the ``ws-<n>`` counter and ``version``, bumped by every write (another server's
  write shows as a version this engine has not seen). A write transaction locks this row first
  (``FOR UPDATE``), so the writers of one graph, on any server, are serialised like SQLite's
  ``BEGIN IMMEDIATE``, while other graphs' writers never wait.
- ``memgine_facts``: the SQLite ``facts`` table with a ``graph_id``; ``rowid`` is the graph's
  creation order (max + 1, as SQLite assigns it).
- ``memgine_terms``: ``(graph_id, key, rowid)`` for every index key of every *valid* fact: the
  same keys the SQLite full-text index holds, so candidates, and therefore rankings, are the
  same on both stores. Facts are indexed as they are written (no pending batch: a PostgreSQL
  index entry costs no more in a batch).
- ``memgine_keys``: each graph's vocabulary of index keys (for substring hits), never shrunk
  (a key no fact holds any more finds nothing).

Keys, ids and subjects use the ``"C"`` collation: byte order, the same on every server whatever
its locale.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from carnb.errors import FactIdTaken
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
from carnb.pgstore.schema import Component

# The valid facts whose tags may hold PINNED (a superset: the JSON test decides), spelled the
# same in the partial index and in pinned_rows so the planner uses the index.
PINNABLE = f"WHERE superseded_by IS NULL AND tags LIKE '%\"{PINNED}\"%'"
SCHEMA = Component(
    "memgine",
    (
        """
        CREATE TABLE memgine_graphs (
            graph_id BIGSERIAL PRIMARY KEY,
            kind TEXT NOT NULL,
            name TEXT COLLATE "C" NOT NULL,
            fact_count BIGINT NOT NULL DEFAULT 0,
            next_ws BIGINT NOT NULL DEFAULT 1,
            version BIGINT NOT NULL DEFAULT 0,
            UNIQUE (kind, name)
        );
        CREATE TABLE memgine_facts (
            graph_id BIGINT NOT NULL REFERENCES memgine_graphs ON DELETE CASCADE,
            rowid BIGINT NOT NULL,
            fact_id TEXT COLLATE "C" NOT NULL,
            subject TEXT COLLATE "C" NOT NULL,
            body TEXT NOT NULL,
            kind TEXT COLLATE "C" NOT NULL,
            tags TEXT NOT NULL,
            source TEXT NOT NULL,
            confidence DOUBLE PRECISION,
            created_at DOUBLE PRECISION NOT NULL,
            terms TEXT NOT NULL,
            stems TEXT NOT NULL,
            prev BIGINT,
            superseded_by BIGINT,
            PRIMARY KEY (graph_id, rowid),
            UNIQUE (graph_id, fact_id)
        );
        CREATE INDEX memgine_facts_subject ON memgine_facts (graph_id, subject, rowid);
        CREATE INDEX memgine_facts_prev ON memgine_facts (graph_id, prev)
            WHERE prev IS NOT NULL;
        CREATE INDEX memgine_facts_superseded ON memgine_facts (graph_id, superseded_by)
            WHERE superseded_by IS NOT NULL;
        CREATE INDEX memgine_facts_constraints ON memgine_facts (graph_id, rowid)
            WHERE kind = 'constraint' AND superseded_by IS NULL;
        CREATE INDEX memgine_facts_lines ON memgine_facts (graph_id, rowid)
            WHERE kind <> 'constraint' AND superseded_by IS NULL;
        CREATE TABLE memgine_terms (
            graph_id BIGINT NOT NULL,
            key TEXT COLLATE "C" NOT NULL,
            rowid BIGINT NOT NULL,
            PRIMARY KEY (graph_id, key, rowid)
        );
        CREATE TABLE memgine_keys (
            graph_id BIGINT NOT NULL,
            key TEXT COLLATE "C" NOT NULL,
            PRIMARY KEY (graph_id, key)
        );
        """,
        # who wrote each fact (JSON; '{}': written before carnb recorded it), and who deleted
        # which fact when (memory.diff)
        """
        ALTER TABLE memgine_facts ADD COLUMN provenance TEXT NOT NULL DEFAULT '{}';
        CREATE TABLE memgine_deletions (
            graph_id BIGINT NOT NULL REFERENCES memgine_graphs ON DELETE CASCADE,
            seq BIGSERIAL,
            fact_id TEXT NOT NULL, subject TEXT NOT NULL, body TEXT NOT NULL, kind TEXT NOT NULL,
            deleted_at DOUBLE PRECISION NOT NULL,
            provenance TEXT NOT NULL,
            PRIMARY KEY (graph_id, seq)
        );
        CREATE INDEX memgine_deletions_at ON memgine_deletions (graph_id, deleted_at);
        """,
        # what restoring a deleted fact needs (JSON; NULL for deletions logged before); the
        # valid facts that may be pinned, so reading them does not scan the graph; utility-aware
        # retrieval: each graph's blend (NULL: never set), its reminders given and each fact's
        f"""
        ALTER TABLE memgine_deletions ADD COLUMN kept TEXT;
        CREATE INDEX memgine_facts_pinned ON memgine_facts (graph_id, rowid) {PINNABLE};
        ALTER TABLE memgine_graphs ADD COLUMN utility_weight DOUBLE PRECISION,
            ADD COLUMN utility_exploration DOUBLE PRECISION,
            ADD COLUMN all_uses BIGINT NOT NULL DEFAULT 0;
        ALTER TABLE memgine_facts ADD COLUMN uses BIGINT NOT NULL DEFAULT 0;
        """,
    ),
)
CHANNEL = "carnb_memgine"
Params = Sequence[Any] | Mapping[str, Any]
_FACT_COLUMNS_F = "f.fact_id, f.subject, f.body, f.kind, f.tags, f.source, f.provenance"
# Columns rows_by_rowid may be asked for (constants of memgine, never client text).
_ALLOWED_COLUMNS = frozenset({"fact_id", "subject", "body", "kind", "tags", "source", "provenance"})
_LINES_PAGE = 256
# A load refreshes the planner's statistics each time a graph passes a multiple of this.
ANALYZE_EVERY = 10_000


@dataclass(slots=True)
class Head:
    """A graph's row of ``memgine_graphs`` as a transaction sees it (written back on commit)."""

    graph_id: int
    fact_count: int
    next_ws: int
    version: int
    top: int | None = None  # the highest rowid stored when the transaction began


def ensure_graph(conn: psycopg.Connection[Any], kind: str, name: str) -> int:
    """The graph's id, its row created when missing."""
    conn.execute(
        "INSERT INTO memgine_graphs (kind, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (kind, name),
    )
    row = conn.execute(
        "SELECT graph_id FROM memgine_graphs WHERE kind = %s AND name = %s", (kind, name)
    ).fetchone()
    assert row is not None
    return int(row[0])


def head(conn: psycopg.Connection[Any], graph_id: int, *, lock: bool) -> Head:
    row = conn.execute(
        "SELECT fact_count, next_ws, version, (SELECT max(rowid) FROM memgine_facts "
        "WHERE graph_id = %(g)s) FROM memgine_graphs WHERE graph_id = %(g)s"
        + (" FOR UPDATE" if lock else ""),
        {"g": graph_id},
    ).fetchone()
    if row is None:
        raise LookupError(f"memory graph {graph_id} vanished from the store")
    return Head(graph_id, int(row[0]), int(row[1]), int(row[2]), int(row[3] or 0))


def save_head(conn: psycopg.Connection[Any], h: Head, key: tuple[str, str]) -> None:
    """Write the counters back, bump the version and notify every server (on COMMIT) of the
    graph's new count, in one statement (the caller holds the row lock)."""
    h.version += 1
    note = json.dumps({"k": key[0], "n": key[1], "c": h.fact_count, "v": h.version})
    conn.execute(
        "WITH saved AS (UPDATE memgine_graphs SET fact_count = %s, next_ws = %s, version = %s "
        "WHERE graph_id = %s RETURNING 1) SELECT pg_notify(%s, %s) FROM saved",
        (h.fact_count, h.next_ws, h.version, h.graph_id, CHANNEL, note),
    )


def _keys(stems: str) -> list[str]:
    return [key for key in stems.split(" ") if key]


class PgGraphTx:
    """One graph's reads and writes inside one PostgreSQL transaction."""

    def __init__(self, conn: psycopg.Connection[Any], h: Head, foreign_change: bool) -> None:
        self.conn = conn
        self.head = h
        self.g = h.graph_id
        self.foreign_change = foreign_change
        self._top = h.top  # None once this transaction added or removed facts

    def _all(self, sql: str, params: Params) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params).fetchall()

    def _one(self, sql: str, params: Params) -> tuple[Any, ...] | None:
        return self.conn.execute(sql, params).fetchone()

    # -- counters and ids ----------------------------------------------------------------------

    def fact_count(self) -> int:
        return self.head.fact_count

    def bump_fact_count(self, delta: int) -> None:
        self.head.fact_count += delta

    def max_rowid(self) -> int:
        if self._top is None:
            row = self._one("SELECT max(rowid) FROM memgine_facts WHERE graph_id = %s", (self.g,))
            self._top = int(row[0]) if row is not None and row[0] is not None else 0
        return self._top

    def next_ws(self) -> int:
        return self.head.next_ws

    def set_next_ws(self, n: int) -> None:
        self.head.next_ws = n

    # -- single facts --------------------------------------------------------------------------

    def content_of(self, fact_id: str) -> tuple[str, str] | None:
        row = self._one(
            "SELECT subject, body FROM memgine_facts WHERE graph_id = %s AND fact_id = %s",
            (self.g, fact_id),
        )
        return None if row is None else (row[0], row[1])

    def rowid_of(self, fact_id: str) -> int | None:
        row = self._one(
            "SELECT rowid FROM memgine_facts WHERE graph_id = %s AND fact_id = %s",
            (self.g, fact_id),
        )
        return None if row is None else int(row[0])

    def deletable(self, fact_id: str) -> tuple[int, str, str, int | None] | None:
        row = self._one(
            "SELECT rowid, kind, stems, superseded_by FROM memgine_facts "
            "WHERE graph_id = %s AND fact_id = %s",
            (self.g, fact_id),
        )
        return None if row is None else (row[0], row[1], row[2], row[3])

    def insert_fact(self, fact: NewFact) -> int:
        """Insert, link after the newest fact with the same subject and index, in one
        statement."""
        self._top = None
        row = self._one(
            """
            WITH f AS (
                INSERT INTO memgine_facts (graph_id, rowid, fact_id, subject, body, kind, tags,
                    source, confidence, created_at, terms, stems, provenance, prev)
                VALUES (%(g)s,
                    (SELECT coalesce(max(rowid), 0) + 1 FROM memgine_facts WHERE graph_id = %(g)s),
                    %(fact_id)s, %(subject)s, %(body)s, %(kind)s, %(tags)s, %(source)s,
                    %(confidence)s, %(created_at)s, %(terms)s, %(stems)s, %(provenance)s,
                    (SELECT max(rowid) FROM memgine_facts
                     WHERE graph_id = %(g)s AND subject = %(subject)s))
                RETURNING rowid
            ),
            k AS (SELECT DISTINCT unnest(%(keys)s::text[]) AS key),
            t AS (INSERT INTO memgine_terms (graph_id, key, rowid)
                  SELECT %(g)s, k.key, f.rowid FROM k, f),
            v AS (INSERT INTO memgine_keys (graph_id, key) SELECT %(g)s, key FROM k
                  ON CONFLICT DO NOTHING)
            SELECT rowid FROM f
            """,
            {"g": self.g, **_fact_params(fact), "keys": _keys(fact.stems)},
        )
        assert row is not None
        return int(row[0])

    def _index(self, rows: Sequence[tuple[int, str]]) -> None:
        """Add ``(rowid, stems)`` facts to the index (keys already in the vocabulary)."""
        pairs = [(key, rowid) for rowid, stems in rows for key in dict.fromkeys(_keys(stems))]
        if pairs:
            self.conn.execute(
                "INSERT INTO memgine_terms (graph_id, key, rowid) "
                "SELECT %s, k, r FROM unnest(%s::text[], %s::bigint[]) AS x(k, r)",
                (self.g, [k for k, _ in pairs], [r for _, r in pairs]),
            )

    def _index_new(self, rows: Sequence[tuple[int, str]]) -> None:
        """Index new ``(rowid, stems)`` facts, their keys added to the vocabulary."""
        self._index(rows)
        self.conn.execute(
            "INSERT INTO memgine_keys (graph_id, key) SELECT %s, unnest(%s::text[]) "
            "ON CONFLICT DO NOTHING",
            (self.g, sorted({key for _, stems in rows for key in _keys(stems)})),
        )

    def _unindex(self, rows: Sequence[tuple[int, str]]) -> None:
        keys = sorted({key for _, stems in rows for key in _keys(stems)})
        if keys:
            self.conn.execute(
                "DELETE FROM memgine_terms WHERE graph_id = %s AND key = ANY(%s) "
                "AND rowid = ANY(%s)",
                (self.g, keys, [rowid for rowid, _ in rows]),
            )

    def remove_fact(self, rowid: int, stems: str, *, valid: bool = True) -> None:
        self._top = None
        if valid:
            self._unindex([(rowid, stems)])
        self.conn.execute(
            "UPDATE memgine_facts SET prev = (SELECT prev FROM memgine_facts "
            "WHERE graph_id = %(g)s AND rowid = %(r)s) WHERE graph_id = %(g)s AND prev = %(r)s",
            {"g": self.g, "r": rowid},
        )
        self.conn.execute(
            "DELETE FROM memgine_facts WHERE graph_id = %s AND rowid = %s", (self.g, rowid)
        )

    # -- supersession --------------------------------------------------------------------------

    def target(self, fact_id: str) -> Target | None:
        row = self._one(
            "SELECT rowid, fact_id, kind, stems, superseded_by FROM memgine_facts "
            "WHERE graph_id = %s AND fact_id = %s",
            (self.g, fact_id),
        )
        return None if row is None else (row[0], row[1], row[2], row[3], row[4])

    def targets_of_subject(self, subject: str) -> list[Target]:
        rows = self._all(
            "SELECT rowid, fact_id, kind, stems, superseded_by FROM memgine_facts "
            "WHERE graph_id = %s AND subject = %s",
            (self.g, subject),
        )
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def supersede(self, olds: Sequence[Changed], new_rowid: int) -> None:
        if not olds:
            return
        self._unindex([(r[0], r[3]) for r in olds])
        self.conn.execute(
            "UPDATE memgine_facts SET superseded_by = %s WHERE graph_id = %s AND rowid = ANY(%s)",
            (new_rowid, self.g, [r[0] for r in olds]),
        )
        self.head.fact_count -= len(olds)

    def release(self, rowid: int, successor: int | None) -> list[Changed]:
        if successor is not None:
            self.conn.execute(
                "UPDATE memgine_facts SET superseded_by = %s "
                "WHERE graph_id = %s AND superseded_by = %s",
                (successor, self.g, rowid),
            )
            return []
        rows: list[Changed] = [
            (r[0], r[1], r[2], r[3])
            for r in self._all(
                "UPDATE memgine_facts SET superseded_by = NULL "
                "WHERE graph_id = %s AND superseded_by = %s RETURNING rowid, fact_id, kind, stems",
                (self.g, rowid),
            )
        ]
        rows.sort()
        self._index([(r[0], r[3]) for r in rows])
        self.head.fact_count += len(rows)
        return rows

    def superseded_among(self, rowids: Sequence[int]) -> set[int]:
        rows = self._all(
            "SELECT rowid FROM memgine_facts WHERE graph_id = %s AND rowid = ANY(%s) "
            "AND superseded_by IS NOT NULL",
            (self.g, list(rowids)),
        )
        return {int(r[0]) for r in rows}

    def supersession_step(self, rowids: Sequence[int]) -> list[int]:
        rows = self._all(
            "SELECT superseded_by FROM memgine_facts WHERE graph_id = %(g)s "
            "AND rowid = ANY(%(f)s) AND superseded_by IS NOT NULL "
            "UNION SELECT rowid FROM memgine_facts WHERE graph_id = %(g)s "
            "AND superseded_by = ANY(%(f)s)",
            {"g": self.g, "f": list(rowids)},
        )
        return [int(r[0]) for r in rows]

    def stored_rows(self, rowids: Sequence[int]) -> list[tuple[Any, ...]]:
        return self._all(
            f"SELECT {_FACT_COLUMNS_F}, f.confidence, f.created_at, s.fact_id "
            "FROM memgine_facts f LEFT JOIN memgine_facts s "
            "ON s.graph_id = f.graph_id AND s.rowid = f.superseded_by "
            "WHERE f.graph_id = %s AND f.rowid = ANY(%s) ORDER BY f.rowid DESC",
            (self.g, list(rowids)),
        )

    def rowids_of_subject(self, subject: str, limit: int) -> list[int]:
        rows = self._all(
            "SELECT rowid FROM memgine_facts WHERE graph_id = %s AND subject = %s "
            "ORDER BY rowid DESC LIMIT %s",
            (self.g, subject, limit),
        )
        return [int(r[0]) for r in rows]

    # -- reads for answers ---------------------------------------------------------------------

    def fact_rows(self, limit: int | None = None, offset: int = 0) -> list[tuple[Any, ...]]:
        return self._all(
            f"SELECT {_FACT_COLUMNS_F}, f.confidence, f.created_at, s.fact_id "
            "FROM memgine_facts f LEFT JOIN memgine_facts s "
            "ON s.graph_id = f.graph_id AND s.rowid = f.superseded_by "
            "WHERE f.graph_id = %s ORDER BY f.rowid LIMIT %s OFFSET %s",
            (self.g, limit, offset),
        )

    def constraint_rows(self) -> list[tuple[str, str, str]]:
        return [
            (r[0], r[1], r[2])
            for r in self._all(
                "SELECT fact_id, subject, body FROM memgine_facts WHERE graph_id = %s "
                "AND kind = 'constraint' AND superseded_by IS NULL ORDER BY rowid",
                (self.g,),
            )
        ]

    def written_since(self, at: float, limit: int) -> list[int]:
        rows = self._all(
            "SELECT rowid FROM memgine_facts WHERE graph_id = %s AND created_at >= %s "
            "ORDER BY rowid LIMIT %s",
            (self.g, at, limit),
        )
        return [int(r[0]) for r in rows]

    def superseded_since(self, at: float, limit: int) -> list[int]:
        rows = self._all(
            "SELECT f.rowid FROM memgine_facts f JOIN memgine_facts s "
            "ON s.graph_id = f.graph_id AND s.rowid = f.superseded_by "
            "WHERE f.graph_id = %s AND s.created_at >= %s ORDER BY f.rowid LIMIT %s",
            (self.g, at, limit),
        )
        return [int(r[0]) for r in rows]

    def log_deletion(self, deleted: Deleted, kept: Kept) -> None:
        self.conn.execute(
            "INSERT INTO memgine_deletions (graph_id, fact_id, subject, body, kind, deleted_at, "
            "provenance, kept) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (self.g, *deleted, kept),
        )

    def take_deletion(self, fact_id: str) -> tuple[Deleted, Kept] | None:
        row = self._one(
            "DELETE FROM memgine_deletions WHERE graph_id = %(g)s AND seq = (SELECT max(seq) "
            "FROM memgine_deletions WHERE graph_id = %(g)s AND fact_id = %(f)s) "
            "RETURNING fact_id, subject, body, kind, deleted_at, provenance, kept",
            {"g": self.g, "f": fact_id},
        )
        return None if row is None else ((*row[:4], float(row[4]), row[5]), row[6])

    def insert_fact_at(self, fact: NewFact, rowid: int) -> None:
        self._top = None
        params = {"g": self.g, "r": rowid, **_fact_params(fact)}
        self.conn.execute(
            "INSERT INTO memgine_facts (graph_id, rowid, fact_id, subject, body, kind, tags, "
            "source, confidence, created_at, terms, stems, provenance, prev) VALUES (%(g)s, "
            "%(r)s, %(fact_id)s, %(subject)s, %(body)s, %(kind)s, %(tags)s, %(source)s, "
            "%(confidence)s, %(created_at)s, %(terms)s, %(stems)s, %(provenance)s, "
            "(SELECT max(rowid) FROM memgine_facts WHERE graph_id = %(g)s "
            "AND subject = %(subject)s AND rowid < %(r)s))",
            params,
        )
        self.conn.execute(
            "UPDATE memgine_facts SET prev = %(r)s WHERE graph_id = %(g)s AND rowid = "
            "(SELECT min(rowid) FROM memgine_facts WHERE graph_id = %(g)s "
            "AND subject = %(subject)s AND rowid > %(r)s)",
            params,
        )
        self._index_new([(rowid, fact.stems)])

    def repoint(self, rowids: Sequence[int], new_rowid: int) -> None:
        if rowids:
            self.conn.execute(
                "UPDATE memgine_facts SET superseded_by = %s WHERE graph_id = %s "
                "AND rowid = ANY(%s)",
                (new_rowid, self.g, list(rowids)),
            )

    def deleted_since(self, at: float, limit: int) -> list[Deleted]:
        rows = self._all(
            "SELECT fact_id, subject, body, kind, deleted_at, provenance FROM memgine_deletions "
            "WHERE graph_id = %s AND deleted_at >= %s ORDER BY seq LIMIT %s",
            (self.g, at, limit),
        )
        return [(r[0], r[1], r[2], r[3], float(r[4]), r[5]) for r in rows]

    def pinned_rows(self) -> list[tuple[int, str, str, str]]:
        return [
            (int(r[0]), r[1], r[2], r[3])
            for r in self._all(
                "SELECT rowid, fact_id, subject, body FROM memgine_facts "
                + PINNABLE.replace("%", "%%")
                + " AND graph_id = %s AND kind <> 'constraint' AND tags::jsonb ? %s ORDER BY rowid",
                (self.g, PINNED),
            )
        ]

    def utility_blend(self) -> tuple[float, float] | None:
        row = self._one(
            "SELECT utility_weight, utility_exploration FROM memgine_graphs WHERE graph_id = %s",
            (self.g,),
        )
        if row is None or row[0] is None or row[1] is None:
            return None
        return float(row[0]), float(row[1])

    def set_utility_blend(self, weight: float, exploration: float) -> None:
        self.conn.execute(
            "UPDATE memgine_graphs SET utility_weight = %s, utility_exploration = %s "
            "WHERE graph_id = %s",
            (weight, exploration, self.g),
        )

    def uses(self, rowids: Sequence[int]) -> dict[int, int]:
        rows = self._all(
            "SELECT rowid, uses FROM memgine_facts WHERE graph_id = %s AND rowid = ANY(%s) "
            "AND uses > 0",
            (self.g, list(rowids)),
        )
        return {int(r[0]): int(r[1]) for r in rows}

    def all_uses(self) -> int:
        row = self._one("SELECT all_uses FROM memgine_graphs WHERE graph_id = %s", (self.g,))
        return 0 if row is None else int(row[0])

    def add_use(self, rowid: int) -> None:
        self.conn.execute(
            "UPDATE memgine_facts SET uses = uses + 1 WHERE graph_id = %s AND rowid = %s",
            (self.g, rowid),
        )
        self.conn.execute(
            "UPDATE memgine_graphs SET all_uses = all_uses + 1 WHERE graph_id = %s", (self.g,)
        )

    def rows_by_rowid(self, rowids: Sequence[int], columns: str) -> dict[int, tuple[Any, ...]]:
        names = [c.strip() for c in columns.split(",")]
        if not set(names) <= _ALLOWED_COLUMNS:
            raise ValueError(f"unknown fact columns {columns!r}")
        if not rowids:
            return {}
        rows = self._all(
            f"SELECT rowid, {', '.join(names)} FROM memgine_facts "
            "WHERE graph_id = %s AND rowid = ANY(%s)",
            (self.g, list(rowids)),
        )
        return {int(row[0]): tuple(row[1:]) for row in rows}

    def line_sizes(self) -> Iterator[tuple[int, int]]:
        """Read a page of ``_LINES_PAGE`` rows at a time, as consumed."""
        below = 2**62
        while True:
            page = self._all(
                "SELECT rowid, length(fact_id) + length(subject) + length(body) + 8 "
                "FROM memgine_facts WHERE graph_id = %s AND kind <> 'constraint' "
                "AND superseded_by IS NULL AND rowid < %s ORDER BY rowid DESC LIMIT %s",
                (self.g, below, _LINES_PAGE),
            )
            for rowid, size in page:
                yield int(rowid), int(size)
            if len(page) < _LINES_PAGE:
                return
            below = int(page[-1][0])

    def neighbours(self, rowids: Sequence[int]) -> dict[int, list[int]]:
        adj: dict[int, list[int]] = {r: [] for r in rowids}
        if not rowids:
            return adj
        for node, other in self._all(
            "SELECT rowid, prev FROM memgine_facts WHERE graph_id = %(g)s "
            "AND rowid = ANY(%(r)s) AND prev IS NOT NULL "
            "UNION ALL SELECT prev, rowid FROM memgine_facts WHERE graph_id = %(g)s "
            "AND prev = ANY(%(r)s)",
            {"g": self.g, "r": list(rowids)},
        ):
            adj[int(node)].append(int(other))
        return adj

    # -- the index -----------------------------------------------------------------------------

    def match(self, all_of: Sequence[Sequence[str]], limit: int | None = None) -> list[int]:
        """Query shapes that stay cheap whatever the planner's statistics say. Newest first:
        the smallest group's postings walked backwards per key (stopping at ``limit``), the
        other groups checked per row through the primary key. Without a limit (memgine's
        probe of a common key inside the rare candidates' keys), the group with the most keys
        drives and the others are checked per row: many keys there means rare keys, few
        postings each."""
        groups = sorted((sorted(set(g)) for g in all_of), key=len)
        if not groups or not groups[0]:
            return []
        if limit is None:
            groups.reverse()
        params: dict[str, Any] = {"g": self.g, "limit": limit}
        for n, group in enumerate(groups):
            params[f"k{n}"] = group
        exists = "".join(
            f" AND EXISTS (SELECT 1 FROM memgine_terms u WHERE u.graph_id = %(g)s "
            f"AND u.key = ANY(%(k{n})s) AND u.rowid = t.rowid)"
            for n in range(1, len(groups))
        )
        if limit is not None and len(groups) > 1 and all(len(g) == 1 for g in groups):
            # one key per group: walk every key's postings backwards together (a merge join
            # on rowid), which reads them in order instead of probing per row
            joins = "".join(
                f" JOIN memgine_terms t{n} ON t{n}.graph_id = t0.graph_id "
                f"AND t{n}.rowid = t0.rowid AND t{n}.key = (%(k{n})s::text[])[1]"
                for n in range(1, len(groups))
            )
            sql = (
                f"SELECT t0.rowid FROM memgine_terms t0{joins} WHERE t0.graph_id = %(g)s "
                "AND t0.key = (%(k0)s::text[])[1] ORDER BY t0.rowid DESC LIMIT %(limit)s"
            )
            return [int(r[0]) for r in self.conn.execute(sql, params)]
        if limit is None:
            sql = (
                "SELECT DISTINCT t.rowid FROM memgine_terms t WHERE t.graph_id = %(g)s "
                f"AND t.key = ANY(%(k0)s){exists}"
            )
        else:
            sql = (
                "SELECT DISTINCT r FROM unnest(%(k0)s::text[]) AS k(key) CROSS JOIN LATERAL "
                "(SELECT t.rowid AS r FROM memgine_terms t WHERE t.graph_id = %(g)s "
                f"AND t.key = k.key{exists} ORDER BY t.rowid DESC LIMIT %(limit)s) AS newest "
                "ORDER BY r DESC LIMIT %(limit)s"
            )
        return [int(r[0]) for r in self.conn.execute(sql, params)]

    def pending(self) -> list[Pending]:
        return []  # every valid fact is indexed as it is written

    def term_prefixes(self, rowids: Sequence[int], chars: int) -> list[tuple[int, str, str]]:
        rows = self._all(
            "SELECT rowid, substr(terms, 1, %s), substr(stems, 1, %s) FROM memgine_facts "
            "WHERE graph_id = %s AND rowid = ANY(%s)",
            (chars, chars, self.g, list(rowids)),
        )
        return [(int(r[0]), r[1], r[2]) for r in rows]

    def newest_postings(self, key: str, probe: int) -> tuple[int, int | None]:
        row = self._one(
            "SELECT count(*), min(rowid) FROM (SELECT rowid FROM memgine_terms "
            "WHERE graph_id = %s AND key = %s ORDER BY rowid DESC LIMIT %s) AS newest",
            (self.g, key, probe),
        )
        assert row is not None
        return int(row[0]), None if row[1] is None else int(row[1])

    def vocabulary(self, limit: int, max_chars: int) -> list[str]:
        return [
            r[0]
            for r in self._all(
                "SELECT key FROM memgine_keys WHERE graph_id = %s AND length(key) <= %s LIMIT %s",
                (self.g, max_chars, limit),
            )
        ]

    # -- whole graph ---------------------------------------------------------------------------

    def clear(self) -> None:
        self._top = None
        for table in ("memgine_terms", "memgine_keys", "memgine_facts"):
            self.conn.execute(f"DELETE FROM {table} WHERE graph_id = %s", (self.g,))
        self.head.fact_count = 0

    def newest_of_subject(self, subject: str) -> int | None:
        row = self._one(
            "SELECT max(rowid) FROM memgine_facts WHERE graph_id = %s AND subject = %s",
            (self.g, subject),
        )
        return None if row is None or row[0] is None else int(row[0])

    def insert_batch(self, rows: Sequence[Linked]) -> None:
        base = self.max_rowid()
        self._top = None
        values = [
            (self.g, rowid, *(params[c] for c in _FACT_FIELDS), prev)
            for rowid, params, prev in ((r, _fact_params(f), p) for r, f, p in rows)
        ]
        try:
            # a savepoint: the error leaves the transaction usable
            with self.conn.transaction(), self.conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO memgine_facts (graph_id, rowid, fact_id, subject, body, "
                    "kind, tags, source, confidence, created_at, terms, stems, provenance, prev) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    values,
                )
        except psycopg.errors.UniqueViolation as exc:
            raise FactIdTaken(str(exc).splitlines()[0]) from exc
        self._index_new([(rowid, fact.stems) for rowid, fact, _ in rows])
        if (base + len(rows)) // ANALYZE_EVERY > base // ANALYZE_EVERY:
            # a bulk load outruns autovacuum: without fresh statistics the planner takes a
            # common key for a rare one
            self.conn.execute("ANALYZE memgine_terms, memgine_facts")

    def duplicate_groups(self) -> list[list[int]]:
        rows = self._all(
            "SELECT array_agg(rowid ORDER BY rowid) FROM memgine_facts WHERE graph_id = %s "
            "AND superseded_by IS NULL GROUP BY subject, body HAVING count(*) > 1",
            (self.g,),
        )
        return [[int(x) for x in r[0]] for r in rows]

    def valid_contents(self, rowids: Sequence[int]) -> list[tuple[int, str, str]]:
        rows = self._all(
            "SELECT rowid, subject, body FROM memgine_facts WHERE graph_id = %s "
            "AND rowid = ANY(%s) AND superseded_by IS NULL ORDER BY rowid",
            (self.g, list(rowids)),
        )
        return [(int(r[0]), r[1], r[2]) for r in rows]

    def tags_and_stems(self, rowid: int) -> tuple[str, str]:
        row = self._one(
            "SELECT tags, stems FROM memgine_facts WHERE graph_id = %s AND rowid = %s",
            (self.g, rowid),
        )
        assert row is not None
        return row[0], row[1]

    def set_tags(self, rowid: int, tags: str) -> None:
        self.conn.execute(
            "UPDATE memgine_facts SET tags = %s WHERE graph_id = %s AND rowid = %s",
            (tags, self.g, rowid),
        )

    def contested_subjects(self) -> list[str]:
        rows = self._all(
            "SELECT subject FROM memgine_facts WHERE graph_id = %s AND superseded_by IS NULL "
            "GROUP BY subject HAVING count(DISTINCT body) > 1 ORDER BY min(rowid)",
            (self.g,),
        )
        return [r[0] for r in rows]

    def ids_of_subject(self, subject: str, limit: int) -> list[str]:
        rows = self._all(
            "SELECT fact_id FROM memgine_facts WHERE graph_id = %s AND subject = %s "
            "AND superseded_by IS NULL ORDER BY rowid LIMIT %s",
            (self.g, subject, limit),
        )
        return [r[0] for r in rows]

    # -- verification --------------------------------------------------------------------------

    def problems(self) -> list[str]:
        """The index against the valid facts, and the fact count."""
        found: list[str] = []
        stored = self._one(
            "SELECT count(*) FROM memgine_facts WHERE graph_id = %s AND superseded_by IS NULL",
            (self.g,),
        )
        assert stored is not None
        if int(stored[0]) != self.head.fact_count:
            found.append(
                f"fact_count says {self.head.fact_count} but {stored[0]} valid facts are stored"
            )
        wrong = self._one(
            """
            WITH want AS (
                SELECT DISTINCT rowid, unnest(string_to_array(stems, ' ')) AS key
                FROM memgine_facts WHERE graph_id = %(g)s AND superseded_by IS NULL
            ), have AS (SELECT rowid, key FROM memgine_terms WHERE graph_id = %(g)s)
            SELECT (SELECT count(*) FROM (SELECT * FROM want WHERE key <> ''
                                          EXCEPT SELECT * FROM have) AS missing),
                   (SELECT count(*) FROM (SELECT * FROM have EXCEPT SELECT * FROM want)
                    AS extra)
            """,
            {"g": self.g},
        )
        assert wrong is not None
        if wrong[0] or wrong[1]:
            found.append(f"full-text index: {wrong[0]} index entries missing, {wrong[1]} too many")
        return found


_FACT_FIELDS = (
    "fact_id", "subject", "body", "kind", "tags", "source", "confidence", "created_at", "terms",
    "stems", "provenance",
)  # fmt: skip


def _fact_params(fact: NewFact) -> dict[str, Any]:
    return {
        "fact_id": fact.fact_id,
        "subject": fact.subject,
        "body": fact.body,
        "kind": fact.kind,
        "tags": json.dumps(fact.tags, ensure_ascii=False),
        "source": fact.source,
        "confidence": fact.confidence,
        "created_at": fact.created_at,
        "terms": fact.terms,
        "stems": fact.stems,
        "provenance": fact.provenance,
    }

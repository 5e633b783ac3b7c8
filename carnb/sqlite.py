"""Opening carnb's SQLite files (memory graphs, the run store): one connect-and-migrate path.

:func:`connect` creates a missing file readable by its owner only, opens it in autocommit mode
for use from any thread (the owner serialises access), refuses a file that is not SQLite or not
this kind of store *before* any pragma could convert it, applies the settings, and brings the
schema to :attr:`Schema.version`.

Schema versions live in ``PRAGMA user_version`` (0 means "no carnb schema yet"). An empty file
gets :attr:`Schema.create`; an older file runs :attr:`Schema.migrations` (``n`` upgrades version
``n`` to ``n + 1``) in one ``BEGIN IMMEDIATE`` transaction, so concurrent openers migrate once;
a newer file is refused (upgrade carnb). A file with tables but version 0 is foreign, unless
:attr:`Schema.legacy` recognises it as a store written before ``user_version`` was used.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from carnb.errors import SchemaError, ServerFault
from carnb.netfs import network_filesystem

log = logging.getLogger("carnb.sqlite")

Migration = Callable[[sqlite3.Connection], None]


@dataclass(frozen=True, slots=True)
class Schema:
    """What a store file holds: ``label`` names it in errors ("memory graph file")."""

    label: str
    version: int
    create: str  # statements separated by ";" (none inside a statement), run in one transaction
    migrations: Mapping[int, Migration] = field(default_factory=dict)
    # Version of a file with tables and user_version 0 (written before user_version was used),
    # or None when such a file is foreign; may raise CarnbError naming what is wrong.
    legacy: Callable[[sqlite3.Connection, Path | None], int | None] | None = None


def connect(
    path: Path | None,
    schema: Schema,
    *,
    timeout_s: float,
    pragmas: Sequence[str] = (),
) -> sqlite3.Connection:
    """Open (creating if needed) a store file at ``path``, ``None`` for an in-memory one; files
    use WAL. ``pragmas`` (``"synchronous = NORMAL"``) are applied after the file is checked."""
    target = ":memory:" if path is None else str(path)
    if path is not None:
        refuse_network_filesystem(path, schema.label)
    try:
        if path is not None:
            _create_private(path)
        conn = sqlite3.connect(
            target, isolation_level=None, check_same_thread=False, timeout=timeout_s
        )
    except OSError as exc:
        raise ServerFault(
            f"{schema.label} {path} cannot be created: {exc.strerror or exc}; "
            "make the carnb data directory writable (--home / CARNB_HOME)"
        ) from exc
    except sqlite3.Error as exc:
        raise ServerFault(f"{schema.label} {path} cannot be opened: {exc}") from exc
    try:
        _identify(conn, path, schema)  # before any pragma: never convert someone else's file
        if path is not None:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("%s %s: journal_mode is %s, not wal", schema.label, path, mode)
        for pragma in pragmas:
            conn.execute(f"PRAGMA {pragma}")
        _migrate(conn, path, schema)
    except sqlite3.Error as exc:
        conn.close()
        raise ServerFault(f"{schema.label} {path} cannot be opened: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def refuse_network_filesystem(path: Path, label: str) -> None:
    """SQLite's WAL is not safe on NFS, GPFS, Lustre, SMB, ... (:mod:`carnb.netfs`)."""
    kind = network_filesystem(path)
    if kind is not None:
        raise ServerFault(
            f"{label} {path} is on a network filesystem ({kind}), where SQLite can lose or "
            "corrupt data when several hosts open it; use a PostgreSQL store (--store "
            "postgresql://..., CarMagics.store or CARNB_STORE) or a local data directory "
            "(--home / CARNB_HOME)"
        )


def _create_private(path: Path) -> None:
    """Create a new database file readable by its owner only (SQLite gives its -wal and -shm
    files the same mode), whatever the umask or the data directory's mode."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


def _version(conn: sqlite3.Connection, path: Path | None, schema: Schema) -> int:
    """The file's schema version; 0 for an empty file. Refuses foreign files."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version:
        return version
    if conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is None:
        return 0
    found = None if schema.legacy is None else schema.legacy(conn, path)
    if found is None:
        raise SchemaError(
            f"{schema.label} {path} is a SQLite database but not a carnb {schema.label}; "
            "move it away and a new empty one will be created"
        )
    return found


def _identify(conn: sqlite3.Connection, path: Path | None, schema: Schema) -> None:
    try:
        version = _version(conn, path, schema)
    except sqlite3.DatabaseError as exc:
        raise ServerFault(
            f"{schema.label} {path} is not a SQLite database ({exc}); move it away and a "
            "new empty one will be created"
        ) from exc
    _refuse_newer(version, path, schema)


def _refuse_newer(version: int, path: Path | None, schema: Schema) -> None:
    if version > schema.version:
        raise SchemaError(
            f"{schema.label} {path} has schema version {version}; this carnb understands up "
            f"to {schema.version}: upgrade carnb"
        )


def _migrate(conn: sqlite3.Connection, path: Path | None, schema: Schema) -> None:
    if _version(conn, path, schema) == schema.version:
        return  # the common case takes no write lock (a read-only file still opens)
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _version(conn, path, schema)  # another opener may have migrated meanwhile
        _refuse_newer(version, path, schema)
        if version == 0:
            for statement in schema.create.split(";"):
                if statement.strip():
                    conn.execute(statement)
        else:
            for step in range(version, schema.version):
                schema.migrations[step](conn)
                log.info("%s %s: schema migrated to version %d", schema.label, path, step + 1)
        conn.execute(f"PRAGMA user_version = {int(schema.version)}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise

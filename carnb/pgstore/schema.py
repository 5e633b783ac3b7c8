"""Versioned schemas in a PostgreSQL store, one per component (``runs``, ``agents``, ...).

Theory of operation: the table ``carnb_schema`` holds each component's version. A component is
a list of steps; step ``n`` (1-based) brings the component from version ``n - 1`` to ``n``, so
its version is ``len(steps)``. :func:`migrate` runs the missing steps and records the version in
one transaction under a transaction-scoped advisory lock, so servers starting together migrate
once. A version newer than this carnb's is refused with :class:`SchemaError` (upgrade carnb);
nothing is changed then. memgine's graphs add a component of their own the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import psycopg

from carnb.errors import SchemaError
from carnb.pgstore.database import Database

log = logging.getLogger("carnb.pgstore")

_LOCK_KEY = 0x6361726E62  # "carnb": one advisory lock for every schema change
_REGISTRY = """
CREATE TABLE IF NOT EXISTS carnb_schema (
    component TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    migrated_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Component:
    name: str
    steps: tuple[str, ...]  # SQL scripts; steps[n - 1] makes version n

    @property
    def version(self) -> int:
        return len(self.steps)


def version_of(conn: psycopg.Connection[Any], name: str) -> int:
    row = conn.execute("SELECT version FROM carnb_schema WHERE component = %s", (name,)).fetchone()
    return 0 if row is None else int(row[0])


def migrate(db: Database, component: Component) -> int:
    """Bring ``component`` to its version (idempotent); returns the version before."""
    with db.transaction() as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute(_REGISTRY)
        found = version_of(conn, component.name)
        if found > component.version:
            raise SchemaError(
                f"PostgreSQL store {db.display}: the {component.name} schema is version {found}, "
                f"newer than this carnb understands ({component.version}); upgrade carnb on "
                "this machine (every server of a store must run a carnb that knows its schema)"
            )
        for n in range(found + 1, component.version + 1):
            conn.execute(component.steps[n - 1])
            log.info("PostgreSQL store %s: %s schema now version %d", db.display, component.name, n)
        if found != component.version:
            conn.execute(
                "INSERT INTO carnb_schema (component, version) VALUES (%s, %s) "
                "ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version, "
                "migrated_at = now()",
                (component.name, component.version),
            )
        return found

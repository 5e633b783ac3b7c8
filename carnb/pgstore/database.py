"""The connection pool of one PostgreSQL store, and the errors a caller sees while it is away.

Theory of operation: a ``psycopg_pool.ConnectionPool`` (checked on checkout, so a connection
broken by a PostgreSQL restart is replaced, not handed out). :meth:`Database.transaction` is one
transaction: committed when the block ends, rolled back on any error. When PostgreSQL cannot be
reached, or a connection breaks mid-transaction, the caller gets :class:`StoreUnavailable`
(nothing of that transaction was written) within ``timeout_s``; the pool keeps reconnecting in
the background, so the next call after PostgreSQL is back simply works.

While PostgreSQL is known to be away (the last transaction failed to reach it), calls wait at
most ``FAST_FAIL_S`` for a connection instead of ``timeout_s``: the run store is called from the
server's loop, which must not stall for seconds per call during an outage.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg_pool

from carnb.errors import StoreUnavailable
from carnb.pgstore.setting import StoreSetting

log = logging.getLogger("carnb.pgstore")

FAST_FAIL_S = 0.05


class Database:
    """A pool of connections to the store's database; thread-safe."""

    def __init__(
        self,
        setting: StoreSetting,
        *,
        max_size: int = 8,
        timeout_s: float = 5.0,
        application_name: str = "carnb",
    ) -> None:
        self.setting = setting
        self.timeout_s = timeout_s
        self.down = False  # the last transaction could not reach PostgreSQL
        self.pool = psycopg_pool.ConnectionPool(
            setting.dsn,
            min_size=1,
            max_size=max_size,
            open=False,
            timeout=timeout_s,
            check=psycopg_pool.ConnectionPool.check_connection,
            reconnect_timeout=24 * 3600.0,  # keep trying while PostgreSQL is away
            kwargs={
                "connect_timeout": max(1, int(timeout_s)),
                # notice a peer that vanished without closing (a host or network failure)
                "keepalives": 1,
                "keepalives_idle": 10,
                "keepalives_interval": 5,
                "keepalives_count": 3,
                "application_name": application_name,
            },
            name="carnb",
        )

    @property
    def display(self) -> str:
        return self.setting.display()

    def open(self) -> Database:
        """Open the pool, waiting up to ``timeout_s`` for a first connection."""
        try:
            self.pool.open(wait=True, timeout=self.timeout_s)
        except psycopg_pool.PoolTimeout as exc:
            self.pool.close()
            raise StoreUnavailable(
                f"PostgreSQL store {self.display} cannot be reached within "
                f"{self.timeout_s:g} s; check that it runs and the --store URL "
                "(host, port, database, user, password)"
            ) from exc
        return self

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """One transaction on a pooled connection (commit at the end, rollback on error)."""
        try:
            with self.pool.connection(timeout=FAST_FAIL_S if self.down else None) as conn:
                yield conn
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
            self.down = True
            raise self.unavailable(exc) from exc
        if self.down:
            self.down = False
            log.warning("PostgreSQL store %s is reachable again", self.display)

    def unavailable(self, exc: BaseException) -> StoreUnavailable:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        pw = psycopg.conninfo.conninfo_to_dict(self.setting.dsn).get("password")
        if pw:
            detail = detail.replace(str(pw), "***")
        log.warning("PostgreSQL store %s unavailable: %s", self.display, detail)
        return StoreUnavailable(
            f"PostgreSQL store {self.display} is unavailable ({detail}); nothing was written. "
            "carnb reconnects by itself when it is back: retry then"
        )

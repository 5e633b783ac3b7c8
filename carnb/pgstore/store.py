"""A PostgreSQL store as a whole: what the composition root opens once per server.

:class:`PostgresStore` owns the pool (:class:`~carnb.pgstore.database.Database`) and the LISTEN
thread (:class:`~carnb.pgstore.notify.Notifications`), migrates each component's schema when it
is first asked for, and hands out the engines built on them. memgine's graphs
(:mod:`carnb.pgstore.memgine`) get the pool, notifications and a schema component the same way.
"""

from __future__ import annotations

import logging

from carnb.pgstore.agents import PgAgentDirectory
from carnb.pgstore.database import Database
from carnb.pgstore.events import EventLog, HostEventBridge
from carnb.pgstore.ledger import PgLedger
from carnb.pgstore.memgine import PgGraphs
from carnb.pgstore.notify import Notifications
from carnb.pgstore.runs import PgRunStore
from carnb.pgstore.runs_sql import SCHEMA as RUNS_SCHEMA
from carnb.pgstore.schema import Component, migrate
from carnb.pgstore.setting import StoreSetting

log = logging.getLogger("carnb.pgstore")


class PostgresStore:
    def __init__(self, setting: StoreSetting, *, timeout_s: float = 5.0) -> None:
        if not setting.is_postgresql:
            raise ValueError("PostgresStore needs a postgresql:// store setting")
        self.setting = setting
        self.db = Database(setting, timeout_s=timeout_s)
        self.notifications = Notifications(setting)
        self._runs: PgRunStore | None = None
        self._agents: PgAgentDirectory | None = None
        self._graphs: PgGraphs | None = None
        self._bridges: list[HostEventBridge] = []

    @property
    def display(self) -> str:
        return self.setting.display()

    def open(self) -> PostgresStore:
        """Connect (or raise :class:`~carnb.pgstore.database.StoreUnavailable`)."""
        self.db.open()
        log.info("PostgreSQL store %s open", self.display)
        return self

    def migrate(self, component: Component) -> None:
        migrate(self.db, component)

    def runs(self) -> PgRunStore:
        """The run store (its schema migrated on first use)."""
        if self._runs is None:
            self.migrate(RUNS_SCHEMA)
            self._runs = PgRunStore(self.db, self.notifications)
        return self._runs

    def agents(self) -> PgAgentDirectory:
        """The team's agent identities (schema migrated, hashes loaded on first use)."""
        if self._agents is None:
            self._agents = PgAgentDirectory(self.db, self.notifications)
        return self._agents

    def graphs(self) -> PgGraphs:
        """memgine's agent and namespace graphs (schema migrated on first use)."""
        if self._graphs is None:
            self._graphs = PgGraphs(self.db, self.notifications)
        return self._graphs

    def ledger(self) -> PgLedger:
        """The approval ledger (schema migrated on first use)."""
        return PgLedger(self.db)

    def share_events(self, events: EventLog, server: str) -> HostEventBridge:
        """Share this server's host events with the store's other servers, and theirs here."""
        bridge = HostEventBridge(self.db, self.notifications, events, server)
        self._bridges.append(bridge)
        return bridge

    def listen(self) -> None:
        """Start the notifications once every engine has registered its channels."""
        self.notifications.start()

    def close(self) -> None:
        for bridge in self._bridges:
            bridge.close()
        self.notifications.close()
        self.db.close()

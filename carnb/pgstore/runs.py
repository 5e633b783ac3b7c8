"""The run store on PostgreSQL, shared by every server of a store, with live records across them.

Theory of operation: :class:`PgRunStore` is :class:`carnb.runs.RunStore` (one policy: validation,
ownership, lifecycle) on the backend :class:`PgRuns`, whose SQL is :mod:`carnb.pgstore.runs_sql`.
Each write is one transaction that also sends ``NOTIFY carnb_runs`` with ``{o: writer's epoch,
r: run_id, a: first, b: last, e: ended}`` (ids and cursors only; PostgreSQL delivers it on
COMMIT, in commit order). A write returns only after COMMIT, so an acknowledged record survives
a crash of the server that wrote it.

Listeners see every record of every run, from any server, in cursor order without gaps, all
from one thread (:class:`~carnb.pgstore.notify.Notifications`): this server's own writes come
back through NOTIFY like everyone else's (unlike SQLite, not in the writing thread: one thread
keeps one order for the server's notifier), and the records are read from the table. A
"delivered up to" cursor per open run fills any gap and announces nothing twice. With
:attr:`PgRunStore.interest` set (the server: "does a session here follow this run?"), the turns of
runs nobody here follows are not read at all: only their started and ended records are announced,
so N servers do not each read every record every other server writes. :meth:`sync`
waits until everything committed before it was announced. After PostgreSQL comes back from a
restart, open runs are caught up from the table.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from carnb.errors import InvalidParams, StoreUnavailable
from carnb.pgstore.database import Database
from carnb.pgstore.notify import Notifications
from carnb.pgstore.runs_sql import PgRunTx
from carnb.runs import RunStore
from carnb.runs import records as rec
from carnb.runs.store import Events

CATCH_UP_S = 10.0  # how long a catch-up waits for the pool after LISTEN reconnects

log = logging.getLogger("carnb.pgstore.runs")

CHANNEL = "carnb_runs"
MAX_TRACKED_RUNS = 10_000


class PgRuns:
    """:class:`carnb.runs.backend.RunBackend` on a PostgreSQL store's pool (the pool belongs to
    the store's owner). No store-wide lock: PostgreSQL serialises what must be (a run's row
    lock, an advisory lock per idempotency key), so a writer waiting on one run never holds up
    the others. Each write also notifies every server of the records it appended."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.origin = ""  # the writer named in each notification: the run store's epoch
        self._open = True

    @property
    def label(self) -> str:
        return self.db.display

    @property
    def closed(self) -> bool:
        return not self._open

    def open(self) -> None:
        self._open = True

    def close(self) -> None:
        self._open = False

    @contextmanager
    def read(self) -> Iterator[PgRunTx]:
        with self.db.transaction() as conn:
            yield PgRunTx(conn)

    @contextmanager
    def write(self, committed: Callable[[], None]) -> Iterator[PgRunTx]:
        try:
            with self.db.transaction() as conn:
                tx = PgRunTx(conn, write=True)
                yield tx
                for run_id, first, last, ended in tx.appended:
                    note = {"o": self.origin, "r": run_id, "a": first, "b": last, "e": ended}
                    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, json.dumps(note)))
        except psycopg.DataError as exc:  # e.g. a NUL character in an intent
            raise InvalidParams(
                f"the run store cannot keep this value ({str(exc).splitlines()[0]}); "
                "nothing was written"
            ) from exc
        committed()


class PgRunStore(RunStore):
    """Runs in a PostgreSQL store; thread-safe; the same API and answers as :class:`RunStore`,
    with every server's records announced to this one's listeners."""

    def __init__(self, db: Database, notifications: Notifications) -> None:
        self._runs = PgRuns(db)
        self.db = db
        self._delivered: dict[str, int] = {}  # run -> last cursor announced (open runs)
        self._deliver_lock = threading.RLock()
        self._syncs: dict[str, threading.Event] = {}
        # Which runs this server's listeners need every record of (e.g. a run someone here
        # subscribed to); of other runs only the started and ended records are announced.
        # None: every record of every run.
        self.interest: Callable[[str], bool] | None = None
        super().__init__(backend=self._runs)
        self._runs.origin = self.epoch
        notifications.on(CHANNEL, self._on_notify)
        notifications.on_reconnect(self._catch_up)

    def _announce(self, events: Events) -> None:
        """Nothing from the writing thread: every record, this server's own included, comes
        back through NOTIFY (:meth:`_on_notify`), so listeners see one order from one thread."""

    # -- delivery -------------------------------------------------------------------------------
    def sync(self, timeout_s: float = 10.0) -> bool:
        """Wait until every record committed before this call has been announced here."""
        token = uuid.uuid4().hex
        done = threading.Event()
        with self._deliver_lock:
            self._syncs[token] = done
        deadline = time.monotonic() + timeout_s
        try:
            while True:  # again every 0.5 s: a marker sent while LISTEN reconnects is lost
                with self.db.transaction() as conn:
                    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, json.dumps({"sync": token})))
                left = deadline - time.monotonic()
                if done.wait(max(0.0, min(0.5, left))) or left <= 0.5:
                    return done.is_set()
        finally:
            with self._deliver_lock:
                self._syncs.pop(token, None)

    def _on_notify(self, note: dict[str, Any]) -> None:
        """Every record, this server's own included, is announced from here (one thread, so
        listeners see one order); records are read from the table."""
        if "sync" in note:
            with self._deliver_lock:
                done = self._syncs.get(str(note["sync"]))
            if done is not None:
                done.set()
            return
        if not self._listeners:
            return
        run_id, first, last = note.get("r"), note.get("a"), note.get("b")
        if not isinstance(run_id, str) or not isinstance(first, int) or not isinstance(last, int):
            return
        with self._deliver_lock:
            done_to = self._delivered.get(run_id, first - 1)
            if last <= done_to:
                return
            if self.interest is None or self.interest(run_id):
                self._deliver_from_table(run_id, done_to, last, None)
                return
            # Nobody here follows this run: announce only its start and end (host events).
            if first == 0:
                self._deliver_from_table(run_id, -1, 0, None)
            if note.get("e"):
                self._deliver_from_table(run_id, last - 1, last, None)
            else:
                self._delivered.pop(run_id, None)
                self._delivered[run_id] = last

    def _catch_up(self) -> None:
        """After a reconnect: announce what was written to open runs meanwhile. The pool may
        reconnect a moment after the LISTEN connection did, so wait for it a while first."""
        if not self._pool_is_back():
            log.warning("PostgreSQL is still away after LISTEN reconnected; runs not caught up")
            return
        with self._deliver_lock:
            for run_id, done in list(self._delivered.items()):
                if self.interest is None or self.interest(run_id):
                    self._deliver_from_table(run_id, done, None, None)
                    continue
                try:  # nobody here follows it: only whether it ended matters
                    with self._runs.read() as tx:
                        row = tx.fetch_run(run_id)
                except Exception as exc:
                    log.warning("could not catch up on run %s: %s", run_id, exc)
                    continue
                if row is not None and row["status"] in rec.TERMINAL:
                    last = row["next_index"] - 1
                    self._deliver_from_table(run_id, last - 1, last, row["agent_id"])
                elif row is not None:
                    self._delivered[run_id] = row["next_index"] - 1

    def _pool_is_back(self) -> bool:
        deadline = time.monotonic() + CATCH_UP_S
        while True:
            try:
                with self.db.transaction() as conn:
                    conn.execute("SELECT 1")
                return True
            except StoreUnavailable:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.1)

    def _deliver_from_table(
        self, run_id: str, after: int, upto: int | None, agent_id: str | None
    ) -> None:
        try:
            with self._runs.read() as tx:
                agent = agent_id or tx.run_agent(run_id)
                records = tx.read_records(run_id, after, None, upto=upto)
        except Exception as exc:  # PostgreSQL away: the reconnect catch-up retries
            log.warning("could not read records of %s to announce them: %s", run_id, exc)
            return
        for record in records:
            status = record.get("status", rec.IN_PROGRESS) if record[rec.TAG] == rec.ENDED else None
            self._deliver(
                {
                    "run_id": run_id,
                    "agent_id": agent or "",
                    "record": record,
                    "cursor": record["index"],
                    "status": status or rec.IN_PROGRESS,
                }
            )

    def _deliver(self, ev: dict[str, Any]) -> None:
        """Announce one record (caller holds the delivery lock) and move the run's cursor."""
        run_id = ev["run_id"]
        if ev["record"][rec.TAG] == rec.ENDED:
            self._delivered.pop(run_id, None)
        else:
            self._delivered.pop(run_id, None)  # re-insert: the dict stays in recency order
            self._delivered[run_id] = ev["cursor"]
            if len(self._delivered) > MAX_TRACKED_RUNS:
                self._delivered.pop(next(iter(self._delivered)))
        for fn in list(self._listeners):
            try:
                fn(ev)
            except Exception:
                log.exception("run listener %r failed on %s #%s", fn, run_id, ev["cursor"])

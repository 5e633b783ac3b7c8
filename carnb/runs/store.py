"""``RunStore``: the durable run store and run lifecycle, on one SQLite file (WAL) by default.

Theory of operation
-------------------
This module is the policy; the storage is a :class:`~carnb.runs.backend.RunBackend`: SQLite
(:mod:`carnb.runs.db`, a ``runs`` row per run and its ``records``) unless another is given (a
team's PostgreSQL, :mod:`carnb.pgstore.runs`). Every write is one transaction that reads the
run's ``next_index`` (holding the run until commit), appends records and bumps it, so indexes
are contiguous and never overlap, also when several threads or several processes append to the
same run. Nothing is returned before ``COMMIT``; a batch is validated completely before the
transaction starts, so a bad turn leaves nothing behind.

Lifecycle (status column; the terminal states never change again, the first one wins)::

    start ──> in_progress ──complete──> completed
                          ──cancel────> cancelled
                          ──end_incomplete / end_session_runs──> incomplete

Authorisation is :mod:`carnb.runs.access`; this module only applies it. Callers that may not
see a run get the same answer as for an unknown id.

Listeners (:meth:`RunStore.add_listener`) are called after each commit, in the writing thread,
before the store's next write begins, once per new record in cursor order:
``{run_id, agent_id, record, cursor, status}``. They must be quick (hand off, e.g. with
``loop.call_soon_threadsafe``) and must not block on another thread that uses this store. Only
writes made through this ``RunStore`` object are announced (not another process's). A gapless
``runs.subscribe``: register the subscription first, then take the :meth:`get_trace` snapshot,
then forward only events whose ``cursor`` is greater than the snapshot's ``cursor``.

Durability: WAL with ``synchronous=NORMAL`` by default: a committed run survives a crash of the
process; pass ``synchronous="FULL"`` to also survive power loss (fsync per commit, slower).
SQLite checkpoints the WAL inside the commit that crosses 1000 pages; measured, that commit
takes ~10-15 ms instead of ~1 ms (every ~30th batch of 50 turns, ~250th single turn), so a
server that must keep its loop below ~5 ms per call should run large batches with
``asyncio.to_thread`` (the store is thread-safe). (A
background checkpoint thread was tried and dropped: under a steady stream of writes it never
catches up, the WAL grows, and the stalls come back in the pass that restarts it.)
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from carnb.errors import Forbidden, InvalidParams, NotFound, RunTerminal
from carnb.runs import access
from carnb.runs import records as rec
from carnb.runs.access import Caller
from carnb.runs.backend import NewRun, Row, RunBackend, RunTx
from carnb.runs.db import SqliteRuns

log = logging.getLogger("carnb.runs")

Listener = Callable[[dict[str, Any]], None]
Events = list[dict[str, Any]]


# Records scanned per read of model_usage: a few milliseconds of the store's lock on SQLite.
_USAGE_SPAN = 2000


class RunStore:
    """Durable runs; thread-safe; a synchronous API (see module docstring).

    ``RunStore(path)``: one SQLite file (``synchronous`` and ``busy_timeout_s`` are its
    settings); ``RunStore(backend=...)``: another :class:`~carnb.runs.backend.RunBackend`. The
    policy (validation, ownership, lifecycle) is this class, the SQL the backend's.

    ``open()``/``close()`` are the idempotent lifecycle (``__init__`` opens); ``start()`` is
    ``runs.start``. Every caller argument is a :class:`~carnb.runs.Caller` or any session-like
    object with ``client_id``, ``agent_id`` and ``is_host``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        backend: RunBackend | None = None,
        synchronous: str = "NORMAL",
        busy_timeout_s: float = 5.0,
    ) -> None:
        if (path is None) == (backend is None):
            raise ValueError("give a run store exactly one of path and backend")
        self._backend: RunBackend = (
            backend
            if backend is not None
            else SqliteRuns(os.fspath(path or ""), synchronous.upper(), busy_timeout_s)
        )
        # Identifies this store object: session ids are only unique within it (access module).
        self.epoch = uuid.uuid4().hex
        self._listeners: list[Listener] = []
        self._listeners_lock = threading.Lock()
        self.open()

    @property
    def label(self) -> str:
        """How errors and logs name the store (a path, a PostgreSQL address)."""
        return self._backend.label

    # -- lifecycle -------------------------------------------------------------------------
    def open(self) -> RunStore:
        """Open the store (idempotent; reopens after :meth:`close`, same epoch)."""
        self._backend.open()
        return self

    def close(self) -> None:
        """Close the store (idempotent). Listeners stay registered for a later :meth:`open`."""
        self._backend.close()

    @property
    def closed(self) -> bool:
        return self._backend.closed

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_listener(self, fn: Listener) -> Callable[[], None]:
        """Call ``fn(event)`` for every new record; returns an idempotent unsubscribe."""
        with self._listeners_lock:
            self._listeners.append(fn)

        def remove() -> None:
            with self._listeners_lock:
                if fn in self._listeners:
                    self._listeners.remove(fn)

        return remove

    # -- writes ----------------------------------------------------------------------------
    def start(
        self,
        caller: Any,
        *,
        intent: object,
        agent_id: object = None,
        agent_name: object = None,
        idempotency_key: object = None,
        forked_from: object = None,
    ) -> dict[str, Any]:
        """``runs.start``: ``{run_id, agent_id}``; the same idempotency key gives the same run.
        ``forked_from`` (``{run_id, turn}``, server use: ``runs.fork``) names a fork's parent.

        Owner rules: :func:`carnb.runs.access.resolve_owner`. An idempotent repeat returns the
        existing run (even if it has ended) and announces nothing.
        """
        c = access.as_caller(caller)
        intent_s = rec.check_intent(intent)
        key = rec.check_key(idempotency_key)
        parent = rec.check_forked_from(forked_from)
        owner = access.resolve_owner(c, agent_id, agent_name)
        scope = access.idempotency_scope(owner, c, self.epoch) if key is not None else None
        with self._tx() as (tx, events):
            if key is not None and scope is not None:
                existing = tx.find_idempotent(scope, key)
                if existing is not None:
                    return {"run_id": existing[0], "agent_id": existing[1]}
            run_id, now = rec.new_run_id(), time.time()
            parent_text = None if parent is None else rec.dumps(parent)
            tx.insert_run(
                NewRun(
                    run_id, owner, intent_s, now, c.client_id, self.epoch, scope, key, parent_text
                )
            )
            body = rec.started_body(intent_s, owner, parent)
            tx.append(run_id, 0, rec.STARTED, now, [rec.dumps(body)])
            record = rec.make_record(0, rec.STARTED, now, body)
            events.append(_event(run_id, owner, record, rec.IN_PROGRESS))
            log.info("run started: %s for %s", run_id, owner)
            return {"run_id": run_id, "agent_id": owner}

    def record_turns(self, caller: Any, run_id: object, turns: object) -> dict[str, Any]:
        """``runs.record_turns``: append 1..256 turns atomically; the store stamps indexes.

        Not the owner (or unknown): ``{ok: False, dropped: "run_not_found", ...}``; ended:
        ``dropped: "run_terminal"``; malformed or oversized: :class:`InvalidParams`, nothing
        written.
        """
        c = access.as_caller(caller)
        rid = rec.check_run_id(run_id)
        texts = rec.encode_turns(turns)
        with self._tx() as (tx, events):
            row = self._authorized_row(tx, c, rid, access.RECORD_TURNS)
            if row is None:
                return _dropped(rid, "run_not_found")
            if row["status"] in rec.TERMINAL:
                return _dropped(rid, "run_terminal") | {"status": row["status"]}
            base, now = row["next_index"], time.time()
            tx.append(rid, base, rec.TURN, now, [f'{{"turn":{t}}}' for t in texts])
            if self._listeners:
                for i, t in enumerate(texts):  # decoded copies: listeners see what is stored
                    record = rec.make_record(base + i, rec.TURN, now, {"turn": json.loads(t)})
                    events.append(_event(rid, row["agent_id"], record, rec.IN_PROGRESS))
            return {"run_id": rid, "base_index": base, "count": len(texts), "ok": True}

    def record_model_turn(
        self,
        caller: Any,
        run_id: object,
        turn: dict[str, Any],
        *,
        inference: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``runs.record_model_turn``: append one ``model_turn`` record (owner only).

        ``turn`` holds the call's fields (:func:`carnb.runs.records.model_turn_body`);
        ``inference`` what the server recorded of the inference behind it. Not the owner,
        unknown or ended: the same ``{ok: False, dropped}`` as :meth:`record_turns`."""
        c = access.as_caller(caller)
        rid = rec.check_run_id(run_id)
        body, text = rec.model_turn_body(turn, inference)
        with self._tx() as (tx, events):
            row = self._authorized_row(tx, c, rid, access.RECORD_TURNS)
            if row is None:
                return _dropped(rid, "run_not_found")
            if row["status"] in rec.TERMINAL:
                return _dropped(rid, "run_terminal") | {"status": row["status"]}
            index, now = row["next_index"], time.time()
            tx.append(rid, index, rec.MODEL_TURN, now, [text])
            record = rec.make_record(index, rec.MODEL_TURN, now, body)
            events.append(_event(rid, row["agent_id"], record, rec.IN_PROGRESS))
            return {"run_id": rid, "ok": True, "index": index, "turn_index": body["turn_index"]}

    def complete(self, caller: Any, run_id: object, outcome: object) -> dict[str, Any]:
        """``runs.complete``: the owner records the outcome; run status becomes ``completed``.

        Unknown or not visible: :class:`NotFound`. The host (not owning it): :class:`Forbidden`,
        use :meth:`cancel`. Already ended: :class:`RunTerminal`.
        """
        c = access.as_caller(caller)
        rid = rec.check_run_id(run_id)
        out = rec.check_outcome(outcome)
        with self._tx() as (tx, events):
            row = self._writable_row(tx, c, rid, access.COMPLETE)
            self._end(tx, events, row, rec.ended_body(rec.COMPLETED, outcome=out))
            return {"run_id": rid, "ok": True}

    def cancel(self, caller: Any, run_id: object, reason: object = "cancelled") -> dict[str, Any]:
        """``runs.cancel``: owner or host; status becomes ``cancelled``.

        Errors as :meth:`complete` (the host is allowed here).
        """
        c = access.as_caller(caller)
        rid = rec.check_run_id(run_id)
        why = rec.check_reason(reason)
        with self._tx() as (tx, events):
            row = self._writable_row(tx, c, rid, access.CANCEL)
            self._end(tx, events, row, rec.ended_body(rec.CANCELLED, reason=why))
            return {"run_id": rid, "ok": True, "status": rec.CANCELLED}

    def end_incomplete(self, run_id: str, reason: str = "session disconnected") -> bool:
        """End a run ``incomplete`` (server use, no caller check). False if unknown or ended."""
        with self._tx() as (tx, events):
            row = tx.fetch_run(run_id)
            if row is None or row["status"] in rec.TERMINAL:
                return False
            self._end(tx, events, row, rec.ended_body(rec.INCOMPLETE, reason=reason))
            return True

    def end_session_runs(self, client_id: str, reason: str = "session disconnected") -> list[str]:
        """End ``incomplete`` every open run the session started (on disconnect); their ids."""
        with self._backend.read() as tx:
            ids = tx.open_runs_of_session(self.epoch, client_id)
        return [rid for rid in ids if self.end_incomplete(rid, reason)]

    # -- reads -----------------------------------------------------------------------------
    def authorize(self, caller: Any, run_id: str, action: str) -> dict[str, Any] | None:
        """``authorize_run_access``: the run's summary if ``caller`` may do ``action``, or None.

        ``action`` is one of ``read``, ``subscribe``, ``cancel``, ``record_turns``, ``complete``
        (:data:`carnb.runs.ACTIONS`); anything else is a programming error (``ValueError``).
        """
        c = access.as_caller(caller)
        if action not in access.ACTIONS:
            raise ValueError(
                f"unknown run action {action!r}; expected one of {sorted(access.ACTIONS)}"
            )
        with self._backend.read() as tx:
            row = self._authorized_row(tx, c, run_id, action)
            return None if row is None else rec.run_summary(row)

    def get_trace(
        self, caller: Any, run_id: object, *, after: int | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        """``runs.get_trace``: ``{run_id, agent_id, intent, status, records, cursor}``.

        ``after``/``limit`` page through long traces (records with index > after, at most limit).
        ``cursor`` is the index of the last record returned (or of the run's last record when
        none is returned). Unknown or not authorised: ``{run_id, not_found: True}``.
        """
        c = access.as_caller(caller)
        rid = rec.check_run_id(run_id)
        with self._backend.read() as tx:
            row = self._authorized_row(tx, c, rid, access.READ)
            if row is None:
                return {"run_id": rid, "not_found": True}
            records = tx.read_records(rid, -1 if after is None else after, _at_most(limit))
        return {
            "run_id": rid,
            "agent_id": row["agent_id"],
            "intent": row["intent"],
            "status": row["status"],
            "records": records,
            "cursor": records[-1]["index"] if records else row["next_index"] - 1,
        }

    def list_runs(
        self, caller: Any, agent_id: object, *, limit: int | None = None
    ) -> dict[str, Any]:
        """``runs.list``: summaries of ``agent_id``'s runs the caller may read, newest first.

        The host and the agent itself see all; any other session sees only the runs it started
        in this store's lifetime (for anyone else's agent: an empty list).
        """
        c = access.as_caller(caller)
        if not isinstance(agent_id, str) or not agent_id:
            raise InvalidParams("agent_id is required and must be a non-empty string")
        sees_all = c.is_host or (
            c.agent_id == agent_id and not agent_id.startswith(access.NAME_PREFIX)
        )
        only = None if sees_all else (self.epoch, c.client_id)
        with self._backend.read() as tx:
            rows = tx.list_runs(agent_id, only, _at_most(limit))
        return {"agent_id": agent_id, "runs": [rec.run_summary(r) for r in rows]}

    def run_counts_by_agent(self) -> dict[str, int]:
        """Owner id -> number of runs in the store (for the host's view of what is on disk)."""
        with self._backend.read() as tx:
            return tx.run_counts_by_agent()

    def model_usage(self) -> list[dict[str, Any]]:
        """Calls and tokens of every run's model turns (``runs.record_model_turn``), summed by
        agent, run and model: ``[{agent, run, model, calls, tokens_in, tokens_out}]``. Reads
        every model turn of the store, :data:`_USAGE_SPAN` records a read: call it off the
        loop."""
        sums: dict[tuple[Any, Any, Any], list[int]] = {}
        cursor: Any = None
        while True:  # a chunk per read, so writers (on the server loop too) never wait long
            with self._backend.read() as tx:
                chunk, cursor = tx.model_turn_usage(cursor, _USAGE_SPAN)
            for agent, run, model, calls, tokens_in, tokens_out in chunk:
                acc = sums.setdefault((agent, run, model), [0, 0, 0])
                acc[0] += int(calls)
                acc[1] += int(tokens_in)
                acc[2] += int(tokens_out)
            if cursor is None:
                break
        return [
            {"agent": a, "run": r, "model": m, "calls": n, "tokens_in": i, "tokens_out": o}
            for (a, r, m), (n, i, o) in sums.items()
        ]

    # -- internals -------------------------------------------------------------------------
    @contextmanager
    def _tx(self) -> Iterator[tuple[RunTx, Events]]:
        """One write transaction; its records are announced after COMMIT."""
        events: Events = []
        with self._backend.write(lambda: self._announce(events)) as tx:
            yield tx, events

    def _announce(self, events: Events) -> None:
        """Tell the listeners of committed records (the backend calls this after COMMIT, in
        the writing thread)."""
        for ev in events:
            for fn in list(self._listeners):
                try:
                    fn(ev)
                except Exception:  # a broken listener must not undo or block a committed write
                    log.exception(
                        "run listener %r failed on %s #%s", fn, ev["run_id"], ev["cursor"]
                    )

    def _role(self, c: Caller, row: Row) -> str:
        return access.role_of(
            c, row["agent_id"], row["owner_session_id"], row["owner_epoch"], self.epoch
        )

    def _authorized_row(self, tx: RunTx, c: Caller, run_id: str, action: str) -> Row | None:
        row = tx.fetch_run(run_id)
        if row is None or not access.allowed(self._role(c, row), action):
            return None
        return row

    def _writable_row(self, tx: RunTx, c: Caller, run_id: str, action: str) -> Row:
        """The run ``c`` may end, or the error that explains why not (without leaking it)."""
        row = tx.fetch_run(run_id)
        role = "other" if row is None else self._role(c, row)
        if row is None or not access.allowed(role, action):
            if row is not None and access.allowed(role, access.READ):
                raise Forbidden(
                    f"only the run's owner may {action.replace('_', ' ')} run "
                    f"{run_id}; the host may end it with runs.cancel"
                )
            raise NotFound(f"run not found: {run_id}")
        if row["status"] in rec.TERMINAL:
            raise RunTerminal(
                f"run {run_id} already ended ({row['status']}); the first terminal outcome wins",
                data={"status": row["status"]},
            )
        return row

    def _end(self, tx: RunTx, events: Events, row: Row, body: dict[str, Any]) -> None:
        rid, idx, status, now = row["run_id"], row["next_index"], body["status"], time.time()
        tx.append(rid, idx, rec.ENDED, now, [rec.dumps(body)])
        tx.set_ended(rid, status, now)
        record = rec.make_record(idx, rec.ENDED, now, body)
        events.append(_event(rid, row["agent_id"], record, status))
        log.info("run ended: %s %s", rid, status)


def _event(run_id: str, agent_id: str, record: dict[str, Any], status: str) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "agent_id": agent_id,
        "record": record,
        "cursor": record["index"],
        "status": status,
    }


def _dropped(run_id: str, why: str) -> dict[str, Any]:
    return {"run_id": run_id, "ok": False, "dropped": why, "base_index": 0, "count": 0}


def _at_most(limit: int | None) -> int | None:
    """A page size as the backends take it: ``None`` for all, never negative."""
    return None if limit is None else max(0, limit)

"""``runs.*`` handlers: run tracing over the durable run store, with live subscriptions.

The store does validation, ownership and authorisation (``authorize_run_access``); this module
maps sessions to callers, keeps ``current_run_id`` and the turn count on the session, fans new
records out as ``runs.trace.event`` notifications to subscribed sessions, turns run starts and
ends into host events, and ends a departing session's open runs ``incomplete``.
"""

from __future__ import annotations

import threading
from typing import Any

from carnb.errors import NotFound
from carnb.protocol.session import ClientSession
from carnb.server.dispatch import MethodTable
from carnb.server.events import RUN_ENDED, RUN_STARTED
from carnb.server.params import opt_int, opt_str, req_list, req_object, req_str
from carnb.server.services import Services


class Subscriptions:
    """run_id -> sessions subscribed to it, each with the cursor it has already seen.

    Thread-safe (store listeners run in whichever thread wrote). A session is registered
    *before* its snapshot is read, with an unknown cursor, so no record can fall between the
    snapshot and the first notification; records the snapshot already holds are skipped.
    """

    def __init__(self) -> None:
        self._by_run: dict[str, dict[str, list[Any]]] = {}  # run -> client -> [session, seen]
        self._lock = threading.Lock()

    def add(self, run_id: str, s: ClientSession) -> None:
        with self._lock:
            self._by_run.setdefault(run_id, {})[s.client_id] = [s, None]

    def seen(self, run_id: str, s: ClientSession, cursor: int) -> None:
        with self._lock:
            entry = self._by_run.get(run_id, {}).get(s.client_id)
            if entry is not None and (entry[1] is None or cursor > entry[1]):
                entry[1] = cursor

    def remove(self, run_id: str, s: ClientSession) -> bool:
        with self._lock:
            subs = self._by_run.get(run_id)
            if not subs or s.client_id not in subs:
                return False
            del subs[s.client_id]
            if not subs:
                del self._by_run[run_id]
            return True

    def drop_session(self, s: ClientSession) -> None:
        with self._lock:
            for run_id in list(self._by_run):
                self._by_run[run_id].pop(s.client_id, None)
                if not self._by_run[run_id]:
                    del self._by_run[run_id]

    def due(self, run_id: str, cursor: int) -> list[ClientSession]:
        """Sessions that have not seen ``cursor`` yet (and mark it seen for them)."""
        out = []
        with self._lock:
            for entry in self._by_run.get(run_id, {}).values():
                if entry[1] is None or cursor > entry[1]:
                    entry[1] = cursor
                    out.append(entry[0])
        return out


def register(table: MethodTable, services: Services) -> None:
    store = services.runs
    if store is None:
        return
    subs = Subscriptions()

    def on_record(event: dict[str, Any]) -> None:
        for s in subs.due(event["run_id"], event["cursor"]):
            if s.notifier is not None and not s.closed:
                s.notifier("runs.trace.event", event)
        kind = event["record"].get("kind")
        if kind == "started":
            services.events.emit(
                RUN_STARTED,
                agent_id=event["agent_id"],
                message=f"run {event['run_id']} started",
                payload={"run_id": event["run_id"], "intent": event["record"].get("intent")},
            )
        elif kind == "ended":
            services.events.emit(
                RUN_ENDED,
                agent_id=event["agent_id"],
                message=f"run {event['run_id']} ended {event['status']}",
                payload={"run_id": event["run_id"], "status": event["status"]},
            )

    store.add_listener(on_record)

    def clear_current(run_id: str) -> None:
        for s in services.sessions:
            if s.current_run_id == run_id:
                s.update(current_run_id=None, run_turns=0)

    async def on_session_close(s: ClientSession) -> None:
        subs.drop_session(s)
        for run_id in store.end_session_runs(s.client_id):
            clear_current(run_id)

    services.sessions.on_close(on_session_close)
    m = table.method

    @m(
        "runs.start",
        summary="Start a traced run; sets the session's current run",
        params={
            "intent": "string",
            "agent_id": "string?",
            "agent_name": "string?",
            "idempotency_key": "string?",
        },
        result="{run_id, agent_id}",
    )
    def runs_start(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
        result = store.start(
            s,
            intent=p.get("intent"),
            agent_id=p.get("agent_id"),
            agent_name=p.get("agent_name"),
            idempotency_key=p.get("idempotency_key"),
        )
        if s.current_run_id != result["run_id"]:
            summary = store.authorize(s, result["run_id"], "read") or {}
            if summary.get("status", "in_progress") == "in_progress":
                s.update(current_run_id=result["run_id"], run_turns=summary.get("turn_count", 0))
        return result

    @m(
        "runs.record_turns",
        role="owner",
        summary="Append 1..256 turns to your run",
        params={"run_id": "string", "turns": "object[] (1..256)"},
        result="{run_id, base_index, count, ok} or {ok: false, dropped}",
    )
    def runs_record_turns(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
        run_id = req_str(p, "run_id")
        result = store.record_turns(s, run_id, req_list(p, "turns"))
        if result.get("ok") and s.current_run_id == run_id:
            s.update(run_turns=s.run_turns + int(result["count"]))
        return result

    @m(
        "runs.complete",
        role="owner",
        summary="End your run with an outcome (first end wins)",
        params={"run_id": "string", "outcome": "{status, summary?, ...}"},
        result="{run_id, ok}",
    )
    def runs_complete(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
        run_id = req_str(p, "run_id")
        result = store.complete(s, run_id, req_object(p, "outcome"))
        clear_current(run_id)
        return result

    @m(
        "runs.cancel",
        role="owner",
        summary="Cancel a run (owner or host)",
        params={"run_id": "string", "reason": "string?"},
        result="{run_id, ok, status}",
    )
    def runs_cancel(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
        run_id = req_str(p, "run_id")
        result = store.cancel(s, run_id, opt_str(p, "reason", "cancelled") or "cancelled")
        clear_current(run_id)
        return result

    @m(
        "runs.get_trace",
        role="owner",
        summary="A run's records (owner or host)",
        params={"run_id": "string", "after": "integer?", "limit": "integer?"},
        result="{run_id, agent_id, status, records, cursor} or {run_id, not_found: true}",
    )
    def runs_get_trace(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
        return store.get_trace(
            s,
            req_str(p, "run_id"),
            after=opt_int(p, "after", None, minimum=-1),
            limit=opt_int(p, "limit", None, minimum=1),
        )

    @m(
        "runs.list",
        role="owner",
        summary="An agent's runs, newest first (owner or host)",
        params={"agent_id": "string", "limit": "integer?"},
        result="{agent_id, runs}",
    )
    def runs_list(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
        return store.list_runs(
            s, req_str(p, "agent_id"), limit=opt_int(p, "limit", None, minimum=1)
        )

    @m(
        "runs.subscribe",
        role="owner",
        summary="Snapshot of a run, then runs.trace.event notifications for new records",
        params={"run_id": "string"},
        result="trace snapshot with subscribed: true",
    )
    def runs_subscribe(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
        run_id = req_str(p, "run_id")
        if store.authorize(s, run_id, "subscribe") is None:
            raise NotFound(f"run not found: {run_id} (unknown, or not yours to read)")
        subs.add(run_id, s)  # first, so nothing committed from now on is missed
        snapshot = store.get_trace(s, run_id)
        if snapshot.get("not_found"):
            subs.remove(run_id, s)
            raise NotFound(f"run not found: {run_id} (unknown, or not yours to read)")
        subs.seen(run_id, s, snapshot["cursor"])
        return {**snapshot, "subscribed": True}

    @m(
        "runs.unsubscribe",
        summary="Stop runs.trace.event notifications for a run",
        params={"run_id": "string"},
        result="{run_id, removed}",
    )
    def runs_unsubscribe(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
        run_id = req_str(p, "run_id")
        return {"run_id": run_id, "removed": subs.remove(run_id, s)}

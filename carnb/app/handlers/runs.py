"""``runs.*`` handlers: run tracing over the durable run store, with live subscriptions.

The store does validation, ownership and authorisation (``authorize_run_access``); this module
maps sessions to callers, keeps ``current_run_id`` and the turn count on the session, fans new
records out as ``runs.trace.event`` notifications to subscribed sessions, turns run starts and
ends into host events, and ends a departing session's open runs ``incomplete``. Before a
session writes anything else into its run (or starts another, or the run ends), the ``infer``
it was served that no model turn took is written as a model turn of its own
(:func:`keep_unattached`, :mod:`carnb.app.recording`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Any

from carnb.app.events import RUN_ENDED, RUN_STARTED
from carnb.app.methods import Method, Params
from carnb.app.params import opt_int, opt_str, req_list, req_object, req_str
from carnb.app.ports import Record, RunCaller, RunLog
from carnb.app.recording import Unattached
from carnb.app.schedule import in_bulk, in_thread
from carnb.app.services import Services
from carnb.config import TRACE_PAGE_BYTES, TRACE_PAGE_MAX_RECORDS, TRACE_PAGE_RECORDS
from carnb.errors import InvalidParams, NotFound
from carnb.protocol.jsonrpc import encoded_size
from carnb.protocol.session import ClientSession


def attach(svc: Services) -> None:
    """Wire the store's record listener and the session-close hook into ``svc``."""
    store = svc.runs
    if store is None:
        return
    store.add_listener(partial(_on_record, svc))
    svc.sessions.on_close(partial(_on_session_close, svc))


def _on_record(svc: Services, event: Record) -> None:
    for s in svc.run_subscriptions.due(event["run_id"], event["cursor"], event):
        if s.notifier is not None and not s.closed:
            s.notifier("runs.trace.event", event)
    kind = event["record"].get("record")
    if kind == "started":
        svc.events.emit(
            RUN_STARTED,
            agent_id=event["agent_id"],
            message=f"run {event['run_id']} started",
            payload={"run_id": event["run_id"], "intent": event["record"].get("intent")},
        )
    elif kind == "ended":
        svc.events.emit(
            RUN_ENDED,
            agent_id=event["agent_id"],
            message=f"run {event['run_id']} ended {event['status']}",
            payload={"run_id": event["run_id"], "status": event["status"]},
        )


log = logging.getLogger("carnb.app.handlers.runs")


async def _on_session_close(svc: Services, s: ClientSession) -> None:
    svc.run_subscriptions.drop_session(s)
    if not s.authenticated:  # it could start no run: spare the store (and its lock)
        svc.recordings.drop(s)
        return
    # a database call (PostgreSQL: a network round trip): in a worker thread, never on the loop
    for run_id in await in_thread(_end_session_runs, svc, s):
        _clear_current(svc, run_id)


def _end_session_runs(svc: Services, s: ClientSession) -> list[str]:
    keep_unattached(svc, s)
    svc.recordings.drop(s)
    return _store(svc).end_session_runs(s.client_id)


def keep_unattached(svc: Services, s: ClientSession, taken: Unattached | None = None) -> None:
    """Write ``taken`` (default: the inference of ``s`` still waiting for a model turn) as a
    model turn of its own. A store call: made where the caller's other store calls are (inline
    on SQLite like ``runs.record_turns``, else in a worker thread). Never fails the caller."""
    if taken is None:
        if not svc.recordings.waiting(s):  # the common case costs one lookup
            return
        taken = svc.recordings.unattached(s)
    if taken is None or svc.runs is None:
        return
    try:
        svc.runs.record_model_turn(writer(s), taken.run_id, taken.fields, inference=taken.inference)
    except Exception:  # the inference is lost to replay; the call that flushed it stands
        log.exception("keeping an inference of %s in %s failed", s.client_id, taken.run_id)


def _store(svc: Services) -> RunLog:
    assert svc.runs is not None  # the table offers runs.* only with a run store
    return svc.runs


def _clear_current(svc: Services, run_id: str) -> None:
    for s in svc.sessions:
        if s.current_run_id == run_id:
            s.update(current_run_id=None, run_turns=0)


def _not_found(run_id: str) -> NotFound:
    return NotFound(f"run not found: {run_id} (unknown, or not yours to read)")


@dataclass(frozen=True)
class _HostView:
    """A session bound to an agent with the host token, as a run writer: not that agent (the
    host token reads and cancels any run but writes only runs its own session started)."""

    client_id: str
    is_host: bool
    agent_id: str | None = None


def writer(s: ClientSession) -> RunCaller:
    """Who writes turns or outcomes: the session, minus an agent binding it did not prove."""
    if s.agent_id is not None and not s.agent_proven:
        return _HostView(s.client_id, s.is_host)
    return s


def runs_start(s: ClientSession, p: Params, svc: Services) -> Record:
    store = _store(svc)
    keep_unattached(svc, s)
    result = store.start(
        s,
        intent=p.get("intent"),
        agent_id=p.get("agent_id"),
        agent_name=p.get("agent_name"),
        idempotency_key=p.get("idempotency_key"),
    )
    svc.meter.follow(result["run_id"])
    if s.current_run_id != result["run_id"]:
        summary = store.authorize(s, result["run_id"], "read") or {}
        if summary.get("status", "in_progress") == "in_progress":
            s.update(current_run_id=result["run_id"], run_turns=summary.get("turn_count", 0))
    return result


def runs_record_turns(s: ClientSession, p: Params, svc: Services) -> Record:
    run_id = req_str(p, "run_id")
    keep_unattached(svc, s)
    result = _store(svc).record_turns(writer(s), run_id, req_list(p, "turns"))
    if result.get("ok") and s.current_run_id == run_id:
        s.update(run_turns=s.run_turns + int(result["count"]))
    return result


def runs_record_model_turn(s: ClientSession, p: Params, svc: Services) -> Record:
    run_id = req_str(p, "run_id")
    inference = svc.recordings.take(s, run_id)  # what carnb served for this turn, if anything
    try:
        return _store(svc).record_model_turn(writer(s), run_id, p, inference=inference)
    except InvalidParams:
        if inference is None:
            raise
        # the agent's turn fits, but not with the recording beside it
        omitted = {"request": {"model": inference["request"].get("model")}, "omitted": True}
        return _store(svc).record_model_turn(writer(s), run_id, p, inference=omitted)


def runs_complete(s: ClientSession, p: Params, svc: Services) -> Record:
    run_id = req_str(p, "run_id")
    keep_unattached(svc, s)
    result = _store(svc).complete(writer(s), run_id, req_object(p, "outcome"))
    _clear_current(svc, run_id)
    return result


def runs_cancel(s: ClientSession, p: Params, svc: Services) -> Record:
    run_id = req_str(p, "run_id")
    keep_unattached(svc, s)
    result = _store(svc).cancel(s, run_id, opt_str(p, "reason", "cancelled") or "cancelled")
    _clear_current(svc, run_id)
    return result


# runs.get_trace pages hold at most TRACE_PAGE_MAX_RECORDS records of at most TRACE_PAGE_BYTES
# bytes of JSON (a page always holds at least one record; one turn is at most 256 KiB).
# Records read from the store at a time while filling a page: each read holds the store's lock,
# which calls on the event loop (record_turns, authorize) wait for
_TRACE_CHUNK = 4
_PAST_THE_END = 1 << 62  # an index after every record: get_trace then reports the last index


async def runs_get_trace(s: ClientSession, p: Params, svc: Services) -> Record:
    run_id = req_str(p, "run_id")
    cursor = opt_int(p, "cursor", None, minimum=0)
    after = opt_int(p, "after", None, minimum=-1)
    if cursor is not None and after is not None:
        raise InvalidParams("cursor and after: give one of them (cursor is after + 1)")
    start = cursor if cursor is not None else (0 if after is None else after + 1)
    limit = opt_int(p, "limit", TRACE_PAGE_RECORDS, minimum=1, maximum=TRACE_PAGE_MAX_RECORDS)
    assert limit is not None
    return await in_bulk(s, trace_page, _store(svc), s, run_id, start, limit)


def trace_page(store: RunLog, s: ClientSession, run_id: str, start: int, limit: int) -> Record:
    """One page of a run's records from index ``start``: at most ``limit`` records and about
    :data:`TRACE_PAGE_BYTES`; ``next_cursor`` is where the next page starts (None: no more).
    Reads the store a few records at a time, so a page of big turns never holds more than the
    page in memory. ``runs.get_trace`` runs it on the bulk thread; ``runs.subscribe`` inline,
    since its snapshot and its registration must not interleave with new records."""
    records: list[Record] = []
    size = 0
    after = start - 1
    head: Record | None = None
    more = False
    while len(records) < limit:
        chunk = store.get_trace(
            s, run_id, after=after, limit=min(_TRACE_CHUNK, limit - len(records))
        )
        if chunk.get("not_found"):
            return chunk
        head = chunk
        if not chunk["records"]:
            break
        for record in chunk["records"]:
            weight = encoded_size(record)
            if records and (size + weight > TRACE_PAGE_BYTES or len(records) >= limit):
                more = True
                break
            records.append(record)
            size += weight
        if more:
            break
        after = records[-1]["index"]
    if not more and records:
        more = bool(store.get_trace(s, run_id, after=after, limit=1).get("records"))
    assert head is not None
    last = records[-1]["index"] if records else head["cursor"]
    return {
        **head,
        "records": records,
        "cursor": last,
        "next_cursor": last + 1 if more else None,
    }


def runs_list(s: ClientSession, p: Params, svc: Services) -> Record:
    return _store(svc).list_runs(
        s, req_str(p, "agent_id"), limit=opt_int(p, "limit", None, minimum=1)
    )


def runs_subscribe(s: ClientSession, p: Params, svc: Services) -> Record:
    store, subs = _store(svc), svc.run_subscriptions
    run_id = req_str(p, "run_id")
    if store.authorize(s, run_id, "subscribe") is None:
        raise _not_found(run_id)
    subs.add(run_id, s)  # first, so nothing committed from now on is missed
    snapshot = trace_page(store, s, run_id, 0, TRACE_PAGE_MAX_RECORDS)
    if snapshot.get("not_found"):
        subs.remove(run_id, s)
        raise _not_found(run_id)
    last = snapshot["cursor"]
    if snapshot["next_cursor"] is not None:  # a long run: the rest is read with get_trace
        last = store.get_trace(s, run_id, after=_PAST_THE_END, limit=1)["cursor"]
    for held in subs.seen(run_id, s, last):  # records announced while the snapshot was read
        if s.notifier is not None:
            s.notifier("runs.trace.event", held)
    return {**snapshot, "subscribed": True}


def runs_unsubscribe(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    run_id = req_str(p, "run_id")
    return {"run_id": run_id, "removed": svc.run_subscriptions.remove(run_id, s)}


METHODS = (
    Method(
        "runs.start",
        runs_start,
        needs="runs",
        summary="Start a traced run; sets the session's current run",
        params={
            "intent": "string",
            "agent_id": "string?",
            "agent_name": "string?",
            "idempotency_key": "string?",
        },
        result="{run_id, agent_id}",
    ),
    Method(
        "runs.record_turns",
        runs_record_turns,
        role="owner",
        needs="runs",
        summary="Append 1..256 turns to your run",
        params={"run_id": "string", "turns": "object[] (1..256)"},
        result="{run_id, base_index, count, ok} or {ok: false, dropped}",
    ),
    Method(
        "runs.record_model_turn",
        runs_record_model_turn,
        role="owner",
        needs="runs",
        summary="Append one model inference of your agent loop to your run",
        params={
            "run_id": "string",
            "turn_index": "integer?",
            "assistant_text": "string?",
            "requested_tool_calls": "[{id?, name, arguments}]?",
            "model_id": "string?",
            "token_usage": "{input_tokens, output_tokens}?",
            "duration_ms": "number?",
        },
        result="{run_id, ok, index, turn_index} or {ok: false, dropped}",
    ),
    Method(
        "runs.complete",
        runs_complete,
        role="owner",
        needs="runs",
        summary="End your run with an outcome (first end wins)",
        params={"run_id": "string", "outcome": "{status, summary?, ...}"},
        result="{run_id, ok}",
    ),
    Method(
        "runs.cancel",
        runs_cancel,
        role="owner",
        needs="runs",
        summary="Cancel a run (owner or host)",
        params={"run_id": "string", "reason": "string?"},
        result="{run_id, ok, status}",
    ),
    Method(
        "runs.get_trace",
        runs_get_trace,
        mode="task",
        role="owner",
        needs="runs",
        large_reply=True,
        summary="One page of a run's records (owner or host); next_cursor reads on",
        params={
            "run_id": "string",
            "cursor": "integer? (first record index, default 0)",
            "limit": f"integer? (records per page, 1..{TRACE_PAGE_MAX_RECORDS}, "
            f"default {TRACE_PAGE_RECORDS})",
            "after": "integer? (legacy: cursor - 1)",
        },
        result="{run_id, agent_id, intent, status, records, cursor, next_cursor} or "
        "{run_id, not_found: true}",
    ),
    Method(
        "runs.list",
        runs_list,
        role="owner",
        needs="runs",
        summary="An agent's runs, newest first (owner or host)",
        params={"agent_id": "string", "limit": "integer?"},
        result="{agent_id, runs}",
    ),
    Method(
        "runs.subscribe",
        runs_subscribe,
        role="owner",
        needs="runs",
        large_reply=True,
        summary="Snapshot of a run (its first page), then runs.trace.event notifications for "
        "new records",
        params={"run_id": "string"},
        result="trace snapshot with subscribed: true",
    ),
    Method(
        "runs.unsubscribe",
        runs_unsubscribe,
        needs="runs",
        summary="Stop runs.trace.event notifications for a run",
        params={"run_id": "string"},
        result="{run_id, removed}",
    ),
)

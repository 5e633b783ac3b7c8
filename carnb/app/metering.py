"""The meter: tokens, cost and the audit trail of runs, as the reference's event log.

What it hears, and the event it appends (``{id, kind, timestamp, action_id, proposal_id,
data}``, ``timestamp`` RFC 3339 UTC):

* an ``infer`` this server answered: ``inference_metered`` with ``data {agent, session_id,
  run_id, model, tokens_in, tokens_out, cost_usd, latency_ms, source: "infer"}``;
* a run's records (the run store's listener; on PostgreSQL every record of the runs started
  through this server, and the start and end of every server's): ``run_started``,
  ``run_ended``; a ``model_turn`` becomes ``inference_metered`` (``source: "run"``) unless it
  repeats the run's ``infer`` of the same token counts, which is one inference recorded
  twice (an agent loop asks ``infer``, then records the turn); a turn with a ``tool`` becomes
  ``action_succeeded``, ``action_failed`` or ``action_rejected`` (policy), with ``data {agent,
  run_id, tool, status, duration_ms, error_class?}`` and never the action's parameters.

The log keeps the last :data:`~carnb.config.METER_EVENTS_KEPT` events (``events.*`` and the
window figures of ``metrics.summary``). The lifetime figures (``cost_by_agent``,
``cumulative_cost_usd``, ``metrics.cost``) are the run store's model turns, summed by the store
(durable; on PostgreSQL every server's), plus this server's ``infer`` calls that no model turn
recorded. Who sees what is decided here, from the session: the host every event, an agent
session its agent's events, any other session the ``infer`` calls it made.

Thread-safe: records arrive on the thread that wrote them (a worker thread, or PostgreSQL's
NOTIFY thread), so each append is a few dictionary operations under one lock, and sinks
(the OpenTelemetry exporter) only queue what they are given.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from carnb.app.prices import PriceTable
from carnb.config import METER_EVENTS_KEPT, METER_RUNS_KEPT
from carnb.protocol.session import ClientSession

Event = dict[str, Any]

INFERENCE_METERED = "inference_metered"
ACTION_SUCCEEDED = "action_succeeded"
ACTION_FAILED = "action_failed"
ACTION_REJECTED = "action_rejected"
RUN_STARTED = "run_started"
RUN_ENDED = "run_ended"
KINDS = (
    INFERENCE_METERED,
    ACTION_SUCCEEDED,
    ACTION_FAILED,
    ACTION_REJECTED,
    RUN_STARTED,
    RUN_ENDED,
)
GROUPS = ("agent", "run", "model")  # what cost can be summed by


class Sink(Protocol):
    """Where every new event also goes (the exporter); ``content`` is the call's messages and
    text, given only for the sink to decide whether it may keep them."""

    def submit(self, event: Event, content: Mapping[str, Any]) -> None: ...


@dataclass
class Totals:
    calls: int = 0
    unpriced_calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0

    def add(self, tokens_in: int, tokens_out: int, cost: float | None, calls: int = 1) -> None:
        self.calls += calls
        self.tokens_in += tokens_in
        self.tokens_out += tokens_out
        if cost is None:
            self.unpriced_calls += calls
        else:
            self.cost_usd += cost

    def row(self, key: str, name: str | None) -> dict[str, Any]:
        return {
            key: name,
            "calls": self.calls,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cost_usd": round(self.cost_usd, 9),
            "unpriced_calls": self.unpriced_calls,
        }


@dataclass(frozen=True)
class Query:
    """An ``events.query``: every given condition must hold (AND)."""

    kinds: frozenset[str] = frozenset()
    action_id: str | None = None
    proposal_id: str | None = None
    since: float | None = None  # inclusive
    until: float | None = None  # exclusive
    data_matches: Mapping[str, str] = field(default_factory=dict)
    limit: int = 0  # 0: all; most recent first either way

    def matches(self, event: Event) -> bool:
        if self.kinds and event["kind"] not in self.kinds:
            return False
        if self.action_id is not None and event["action_id"] != self.action_id:
            return False
        if self.proposal_id is not None and event["proposal_id"] != self.proposal_id:
            return False
        ts = event["_ts"]
        if (self.since is not None and ts < self.since) or (
            self.until is not None and ts >= self.until
        ):
            return False
        data = event["data"]
        return all(str(data.get(k)) == v for k, v in self.data_matches.items())


def _visible_to(s: ClientSession) -> Callable[[Event], bool]:
    if s.is_host:
        return lambda e: True
    agent = s.agent_id if s.agent_proven else None
    me = s.client_id
    return lambda e: (
        (agent is not None and e["data"].get("agent") == agent)
        or (e["data"].get("session_id") == me)
    )


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


class Meter:
    def __init__(self, prices: PriceTable | None = None, keep: int = METER_EVENTS_KEPT) -> None:
        self.prices = prices if prices is not None else PriceTable()
        self._log: deque[Event] = deque(maxlen=keep)
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        self._sinks: list[Sink] = []
        self._by_run: OrderedDict[str, Totals] = OrderedDict()  # the last METER_RUNS_KEPT
        # each run's infer events not yet seen again as a model turn
        self._unmatched: OrderedDict[str, list[Event]] = OrderedDict()
        self._local: OrderedDict[str, None] = OrderedDict()  # runs started through this server

    def follow(self, run_id: str) -> None:
        """A session here started ``run_id``: a shared store announces all of its records."""
        with self._lock:
            self._local[run_id] = None
            while len(self._local) > METER_RUNS_KEPT:
                self._local.popitem(last=False)

    def follows(self, run_id: str) -> bool:
        return run_id in self._local

    def add_sink(self, sink: Sink) -> None:
        with self._lock:
            self._sinks.append(sink)

    def watch(self, fn: Callable[[], None]) -> Callable[[], None]:
        """Call ``fn()`` (on the appending thread: it must only hand over) after each metered
        inference; returns the remover."""

        class _Watch:
            def submit(self, event: Event, content: Mapping[str, Any]) -> None:
                if event["kind"] == INFERENCE_METERED:
                    fn()

        watcher = _Watch()
        with self._lock:
            self._sinks.append(watcher)

        def remove() -> None:
            with self._lock:
                if watcher in self._sinks:
                    self._sinks.remove(watcher)

        return remove

    # -- what the meter hears ------------------------------------------------------------------
    def inferred(
        self,
        s: ClientSession,
        reply: Mapping[str, Any],
        content: Mapping[str, Any],
        started: float,
    ) -> Event:
        """Meter one answered ``infer`` of session ``s`` (its current run, if any)."""
        usage = reply.get("usage") or {}
        tokens_in, tokens_out = (
            _count(usage.get("input_tokens")),
            _count(usage.get("output_tokens")),
        )
        run_id = s.current_run_id
        with self._lock:
            event = self._inference(
                agent=s.agent_id,
                client_id=s.client_id,
                run_id=run_id,
                model=reply.get("model_used"),
                tokens_in=tokens_in,
                tokens_out=tokens_out,
                latency_ms=reply.get("latency_ms"),
                source="infer",
                started=started,
                content=content,
            )
            if run_id is not None:
                self._unmatched.setdefault(run_id, []).append(event)
                self._unmatched.move_to_end(run_id)
                while len(self._unmatched) > METER_RUNS_KEPT:
                    self._unmatched.popitem(last=False)
            return event

    def on_record(self, event: Mapping[str, Any]) -> None:
        """The run store's listener: one committed record of any run."""
        record, run_id, agent = event["record"], event["run_id"], event["agent_id"]
        kind = record.get("record")
        with self._lock:
            if kind == "started":
                self._append(
                    RUN_STARTED,
                    {"agent": agent, "run_id": run_id},
                    content={"intent": record.get("intent")},
                )
            elif kind == "ended":
                self._unmatched.pop(run_id, None)
                self._append(
                    RUN_ENDED,
                    {"agent": agent, "run_id": run_id, "status": record.get("status")},
                    content={"outcome": record.get("outcome"), "reason": record.get("reason")},
                )
            elif kind == "model_turn":
                self._model_turn(run_id, agent, record)
            elif kind == "turn":
                self._turn(run_id, agent, record)

    def _model_turn(self, run_id: str, agent: str, record: Mapping[str, Any]) -> None:
        usage = record.get("token_usage") or {}
        tokens = (_count(usage.get("input_tokens")), _count(usage.get("output_tokens")))
        for earlier in self._unmatched.get(run_id) or []:
            if (earlier["data"]["tokens_in"], earlier["data"]["tokens_out"]) == tokens:
                # the same inference, already metered by its infer: the store now holds it
                self._unmatched[run_id].remove(earlier)
                earlier["_recorded"] = True
                return
        duration = record.get("duration_ms")
        ended = _timestamp(record)
        self._inference(
            agent=agent,
            client_id=None,
            run_id=run_id,
            model=record.get("model_id"),
            tokens_in=tokens[0],
            tokens_out=tokens[1],
            latency_ms=duration,
            source="run",
            started=ended - (duration or 0) / 1000,
            content={
                "output": record.get("assistant_text"),
                "tool_calls": record.get("requested_tool_calls"),
            },
            turn_index=record.get("turn_index"),
        )

    def _turn(self, run_id: str, agent: str, record: Mapping[str, Any]) -> None:
        turn = record.get("turn")
        if not isinstance(turn, dict) or not isinstance(turn.get("tool"), str):
            return
        status = turn.get("status")
        if turn.get("policy_rejected"):
            kind, error_class = ACTION_REJECTED, "rejected_by_policy"
        elif status in (None, "succeeded", "success", "ok"):
            kind, error_class = ACTION_SUCCEEDED, None
        else:
            kind = ACTION_FAILED
            error_class = "timeout" if status == "timeout" else "tool_error"
        data: dict[str, Any] = {
            "agent": agent,
            "run_id": run_id,
            "tool": turn["tool"],
            "status": status,
            "duration_ms": turn.get("duration_ms"),
        }
        if error_class is not None:
            data["error_class"] = error_class
        action = turn.get("action_id")
        duration = turn.get("duration_ms")
        ended = _timestamp(record)
        self._append(
            kind,
            data,
            action_id=action if isinstance(action, str) else None,
            content={
                "parameters": turn.get("parameters"),
                "output": turn.get("output"),
                "error": turn.get("error"),
            },
            started=ended - (duration if isinstance(duration, int | float) else 0) / 1000,
            ts=ended,
        )

    def _inference(
        self,
        *,
        agent: str | None,
        client_id: str | None,
        run_id: str | None,
        model: object,
        tokens_in: int,
        tokens_out: int,
        latency_ms: object,
        source: str,
        started: float,
        content: Mapping[str, Any],
        turn_index: object = None,
    ) -> Event:
        model_name = model if isinstance(model, str) else None
        cost = self.prices.cost(model_name, tokens_in, tokens_out)
        if run_id is not None:
            self._run_totals(run_id).add(tokens_in, tokens_out, cost)
        data = {
            "agent": agent,
            "session_id": client_id,
            "run_id": run_id,
            "model": model_name,
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "cost_usd": cost,
            "latency_ms": latency_ms,
            "source": source,
        }
        if turn_index is not None:
            data["turn_index"] = turn_index
        return self._append(INFERENCE_METERED, data, content=content, started=started)

    def _run_totals(self, run_id: str) -> Totals:
        totals = self._by_run.get(run_id)
        if totals is None:
            totals = self._by_run[run_id] = Totals()
            while len(self._by_run) > METER_RUNS_KEPT:
                self._by_run.popitem(last=False)
        return totals

    def _append(
        self,
        kind: str,
        data: dict[str, Any],
        *,
        action_id: str | None = None,
        content: Mapping[str, Any],
        started: float | None = None,
        ts: float | None = None,
    ) -> Event:
        now = time.time() if ts is None else ts
        event: Event = {
            "id": f"ev-{next(self._seq)}",
            "kind": kind,
            "timestamp": rfc3339(now),
            "action_id": action_id,
            "proposal_id": None,
            "data": data,
            "_ts": now,
            "_started": now if started is None else started,
            "_recorded": False,  # an infer whose model turn the run store holds
        }
        self._log.append(event)
        for sink in self._sinks:
            sink.submit(event, content)
        return event

    # -- what sessions read --------------------------------------------------------------------
    def _visible(self, s: ClientSession) -> list[Event]:
        with self._lock:
            events = list(self._log)
        see = _visible_to(s)
        return [e for e in events if see(e)]

    def count(self, s: ClientSession) -> int:
        return len(self._visible(s))

    def query(self, s: ClientSession, q: Query) -> dict[str, Any]:
        found = [public(e) for e in reversed(self._visible(s)) if q.matches(e)]
        if q.limit:
            found = found[: q.limit]
        return {"count": len(found), "events": found}

    def cost_by(
        self, s: ClientSession, group: str, stored: list[dict[str, Any]] | None = None
    ) -> list[dict[str, Any]]:
        """Calls, tokens and cost summed by ``agent``, ``run`` or ``model``, costliest first:
        the run store's model turns (``stored``, :meth:`RunLog.model_usage`: durable, and on a
        shared store every server's) that ``s`` may see, and the ``infer`` calls of this
        server's window no model turn recorded."""
        sums: dict[str | None, Totals] = {}
        agent = s.agent_id if s.agent_proven else None
        for row in stored or []:
            if s.is_host or (agent is not None and row["agent"] == agent):
                cost = self.prices.cost(row["model"], row["tokens_in"], row["tokens_out"])
                sums.setdefault(row[group], Totals()).add(
                    row["tokens_in"], row["tokens_out"], cost, calls=row["calls"]
                )
        key = "run_id" if group == "run" else group
        for e in self._visible(s):
            d = e["data"]
            if e["kind"] == INFERENCE_METERED and d["source"] == "infer" and not e["_recorded"]:
                cost = self.prices.cost(d["model"], d["tokens_in"], d["tokens_out"])
                sums.setdefault(d[key], Totals()).add(d["tokens_in"], d["tokens_out"], cost)
        rows = [t.row(group, name) for name, t in sums.items()]
        return sorted(rows, key=lambda r: (-r["cost_usd"], -r["tokens_in"] - r["tokens_out"]))

    def run_totals(self, run_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Tokens and cost of each of ``run_ids`` this meter has heard of (the panel's)."""
        with self._lock:
            return {r: self._by_run[r].row("run", r) for r in run_ids if r in self._by_run}

    def summary(
        self, s: ClientSession, stored: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """``metrics.summary`` over the events ``s`` may see; ``cumulative_cost_usd`` and
        ``cost_by_agent`` are lifetime figures (:meth:`cost_by`)."""
        events = self._visible(s)
        tally = {k: 0 for k in KINDS}
        window = Totals()
        latencies: list[float] = []
        for e in events:
            tally[e["kind"]] += 1
            d = e["data"]
            if e["kind"] == INFERENCE_METERED:
                window.add(d["tokens_in"], d["tokens_out"], d["cost_usd"])
                if isinstance(d["latency_ms"], int | float):
                    latencies.append(float(d["latency_ms"]))
            elif e["kind"] not in (RUN_STARTED, RUN_ENDED) and isinstance(
                d.get("duration_ms"), int | float
            ):
                latencies.append(float(d["duration_ms"]))
        ok, failed = tally[ACTION_SUCCEEDED], tally[ACTION_FAILED]
        rejected = tally[ACTION_REJECTED]
        actions = ok + failed + rejected
        by_agent = self.cost_by(s, "agent", stored)
        cumulative = sum(r["cost_usd"] for r in by_agent)
        return {
            "total_events": len(events),
            "actions_succeeded": ok,
            "actions_failed": failed,
            "actions_rejected": rejected,
            "success_rate": ok / actions if actions else 0.0,
            "error_rate": (failed + rejected) / actions if actions else 0.0,
            "cost_usd": round(window.cost_usd, 9),
            "cumulative_cost_usd": round(cumulative, 9),
            "tokens_in": window.tokens_in,
            "tokens_out": window.tokens_out,
            "avg_latency_ms": sum(latencies) / len(latencies) if latencies else 0.0,
            "inference_calls": window.calls,
            "unpriced_calls": window.unpriced_calls,
            "runs_started": tally[RUN_STARTED],
            "runs_ended": tally[RUN_ENDED],
            "approvals_recorded": 0,
            "permission_decisions": 0,
            "gate_rejections": 0,
            "policy_violations": rejected,
            "goal_evaluations": 0,
            "goals_met": 0,
            "goals_ungrounded": 0,
            "cost_by_agent": by_agent,
        }


def public(event: Event) -> Event:
    """An event as the wire shows it (without the meter's own keys)."""
    return {k: v for k, v in event.items() if not k.startswith("_")}


def _timestamp(record: Mapping[str, Any]) -> float:
    try:
        return datetime.fromisoformat(str(record["timestamp"])).timestamp()
    except (KeyError, ValueError):
        return time.time()

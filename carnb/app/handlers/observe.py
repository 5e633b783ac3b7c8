"""``events.*`` and ``metrics.summary`` in the reference's shapes, carnb's ``metrics.cost``,
``prices.*`` and ``otel.status``: reading the meter (:mod:`carnb.app.metering`) and the
exporter's counters."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any

from carnb.app.metering import GROUPS, KINDS, Query
from carnb.app.methods import Area, Method, Params
from carnb.app.params import opt_int, opt_str
from carnb.app.schedule import in_thread
from carnb.app.services import Services
from carnb.errors import InvalidParams
from carnb.protocol.session import ClientSession


def setup(svc: Services) -> None:
    """The meter hears every committed run record, and the exporter every meter event."""
    if svc.runs is not None:
        svc.runs.add_listener(svc.meter.on_record)
    if svc.spans is not None:
        svc.meter.add_sink(svc.spans)


def events_count(s: ClientSession, p: Params, svc: Services) -> int:
    return svc.meter.count(s)


def events_query(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    return svc.meter.query(s, parse_query(p))


def parse_query(p: Params) -> Query:
    kinds = p.get("kinds") or []
    if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
        raise InvalidParams(f"kinds must be an array of event kinds ({', '.join(KINDS)})")
    matches = p.get("data_matches") or {}
    if not isinstance(matches, dict) or not all(isinstance(v, str) for v in matches.values()):
        raise InvalidParams('data_matches must be an object of strings, like {"agent": "alice"}')
    return Query(
        kinds=frozenset(kinds),
        action_id=opt_str(p, "action_id"),
        proposal_id=opt_str(p, "proposal_id"),
        since=_time(p, "since"),
        until=_time(p, "until"),
        data_matches=dict(matches),
        limit=opt_int(p, "limit", 0, minimum=0) or 0,
    )


def _time(p: Params, name: str) -> float | None:
    text = opt_str(p, name)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParams(f"{name} must be an RFC 3339 time like 2026-01-02T03:04:05Z") from None
    if moment.tzinfo is None:
        raise InvalidParams(f"{name} needs a time zone (Z or +HH:MM)")
    return moment.timestamp()


async def stored_usage(svc: Services) -> list[dict[str, Any]] | None:
    """The run store's model turns summed (a read of every model turn: in a worker thread)."""
    return None if svc.runs is None else await in_thread(svc.runs.model_usage)


async def metrics_summary(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    return svc.meter.summary(s, await stored_usage(svc))


async def cost_by_agent(s: ClientSession, p: Params, svc: Services) -> list[dict[str, Any]]:
    return svc.meter.cost_by(s, "agent", await stored_usage(svc))


async def metrics_cost(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    by = opt_str(p, "by", "agent") or "agent"
    if by not in GROUPS:
        raise InvalidParams(f"by must be one of {', '.join(GROUPS)}")
    return {"by": by, "rows": svc.meter.cost_by(s, by, await stored_usage(svc))}


def prices_get(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    return {"prices": svc.meter.prices.describe()}


def prices_set(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    svc.meter.prices.set(p.get("prices"))
    return {"prices": svc.meter.prices.describe()}


def otel_status(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    if svc.spans is None:
        return {"endpoint": None, "enabled": False}
    return {"enabled": True, **svc.spans.status()}


_EVENT = "{id, kind, timestamp, action_id, proposal_id, data}"
_COST_ROW = "{agent, calls, tokens_in, tokens_out, cost_usd, unpriced_calls}"
_carnb = partial(str.__add__, "(carnb's own) ")

AREA = Area(
    "observe",
    setup=setup,
    methods=(
        Method(
            "events.count",
            events_count,
            summary="How many events of the event log you may see",
            result="integer",
        ),
        Method(
            "events.query",
            events_query,
            summary="The audit query: events you may see, most recent first",
            params={
                "kinds": f"string[]? ({', '.join(KINDS)}; empty: any)",
                "action_id": "string?",
                "proposal_id": "string?",
                "since": "RFC 3339 time? (inclusive)",
                "until": "RFC 3339 time? (exclusive)",
                "data_matches": "{key: string}? (every pair must match the event's data)",
                "limit": "integer? (0: all)",
            },
            result="{count, events: [" + _EVENT + "]}",
        ),
        Method(
            "metrics.summary",
            metrics_summary,
            mode="task",
            summary="Counts, tokens, cost and latency over the events you may see",
            result="{total_events, actions_succeeded, actions_failed, actions_rejected, "
            "success_rate, error_rate, cost_usd, cumulative_cost_usd, tokens_in, tokens_out, "
            "avg_latency_ms, ..., cost_by_agent}",
        ),
        Method(
            "events.cost_by_agent",
            cost_by_agent,
            mode="task",
            summary="Calls, tokens and cost per agent",
            result="[" + _COST_ROW + "]",
        ),
        Method(
            "metrics.cost",
            metrics_cost,
            mode="task",
            summary=_carnb("Calls, tokens and cost summed by agent, run or model"),
            params={"by": "string? (agent, run or model; default agent)"},
            result="{by, rows: [{<by>, calls, tokens_in, tokens_out, cost_usd, unpriced_calls}]}",
        ),
        Method(
            "prices.get",
            prices_get,
            summary=_carnb("The price table costs are computed with"),
            result="{prices: {model: {input_per_mtok, output_per_mtok}}}",
        ),
        Method(
            "prices.set",
            prices_set,
            role="host",
            summary=_carnb("Replace the price table (USD per million tokens; '*' for any model)"),
            params={"prices": "{model: {input_per_mtok, output_per_mtok}}"},
            result="{prices}",
        ),
        Method(
            "otel.status",
            otel_status,
            role="host",
            summary=_carnb(
                "The OpenTelemetry exporter: endpoint, spans sent and dropped, last error"
            ),
            result="{enabled, endpoint?, content?, spans_sent?, spans_dropped?, last_error?}",
        ),
    ),
)

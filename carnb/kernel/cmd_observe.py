"""``%car cost``, ``%car otel`` and ``%car run export``: the meter's sums, the exporter's status
and datasets of model turns from run traces (``carnb.model_turns`` for code)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carnb.app.prices import PriceTable
from carnb.kernel.calls import CarCommandError
from carnb.kernel.render import KeyValues, Message, Table
from carnb.kernel.traceview import read_trace, to_dataframe

if TYPE_CHECKING:
    from carnb.kernel.engine import NotebookEngine

Call = Callable[[str, dict[str, Any]], Any]

TURN_COLUMNS = (
    "run_id",
    "agent_id",
    "turn_index",
    "model",
    "input_messages",
    "output",
    "tool_calls",
    "outcome",
    "tokens_in",
    "tokens_out",
    "cost_usd",
)


class CostTable(Table):
    """Calls, tokens and cost by agent, run or model; ``.rows_data`` and ``.to_dataframe()``."""

    def __init__(self, by: str, rows: list[dict[str, Any]]) -> None:
        self.by = by
        self.rows_data = rows
        columns = [by, "calls", "tokens_in", "tokens_out", "cost_usd", "unpriced_calls"]
        super().__init__(
            columns,
            [[r.get(c) for c in columns] for r in rows],
            title=f"cost by {by} (USD; unpriced calls are not counted as free)",
            empty="no metered calls yet",
        )

    def to_dataframe(self) -> Any:
        return to_dataframe(self.rows_data, self.columns)


def cost(nb: NotebookEngine, args: argparse.Namespace) -> CostTable:
    reply = nb.calls.call("metrics.cost", {"by": args.by}, what="%car cost")
    return CostTable(str(reply["by"]), list(reply["rows"]))


def otel(nb: NotebookEngine, args: argparse.Namespace) -> KeyValues:
    status = nb.calls.call("otel.status", {}, what="%car otel")
    if not status.get("enabled"):
        return KeyValues(
            {"endpoint": "not set (CarMagics.otel_endpoint, $CARNB_OTEL_ENDPOINT)"},
            title="OpenTelemetry export",
        )
    shown = {k: status.get(k) for k in ("endpoint", "content", "spans_sent", "spans_dropped")}
    shown["spans_waiting"] = status.get("spans_waiting")
    shown["last_error"] = status.get("last_error") or "none"
    return KeyValues(shown, title="OpenTelemetry export")


def model_turns(call: Call, run_ids: Iterable[str]) -> list[dict[str, Any]]:
    """One row per model turn of each run (columns :data:`TURN_COLUMNS`): what the model had
    been told so far (the intent, earlier model turns and tool results), what it answered, the
    run's outcome, tokens and cost (the server's price table; None: unpriced)."""
    prices = PriceTable(call("prices.get", {}).get("prices") or {})
    rows: list[dict[str, Any]] = []
    for rid in run_ids:
        trace = read_trace(call, rid)
        if trace is None:
            raise CarCommandError(f"no run {rid} that this session may read")
        records = trace.get("records") or []
        outcome = next(
            (
                r.get("outcome") or {"status": r.get("status")}
                for r in records
                if r["record"] == "ended"
            ),
            None,
        )
        history: list[dict[str, Any]] = [{"role": "user", "content": trace.get("intent")}]
        for r in records:
            if r["record"] == "model_turn":
                usage = r.get("token_usage") or {}
                tokens_in = int(usage.get("input_tokens") or 0)
                tokens_out = int(usage.get("output_tokens") or 0)
                rows.append(
                    {
                        "run_id": rid,
                        "agent_id": trace.get("agent_id"),
                        "turn_index": r.get("turn_index"),
                        "model": r.get("model_id"),
                        "input_messages": list(history),
                        "output": r.get("assistant_text"),
                        "tool_calls": r.get("requested_tool_calls") or [],
                        "outcome": outcome,
                        "tokens_in": tokens_in,
                        "tokens_out": tokens_out,
                        "cost_usd": prices.cost(r.get("model_id"), tokens_in, tokens_out),
                    }
                )
                history.append(
                    {
                        "role": "assistant",
                        "content": r.get("assistant_text"),
                        "tool_calls": r.get("requested_tool_calls") or [],
                    }
                )
            elif r["record"] == "turn":
                turn = r.get("turn") or {}
                history.append(
                    {"role": "tool", "name": turn.get("tool"), "content": turn.get("output")}
                )
    return rows


def export(nb: NotebookEngine, args: argparse.Namespace) -> Message:
    rows = model_turns(lambda m, p: nb.calls.call(m, p, what="%car run export"), list(args.run_ids))
    path = Path(args.path).expanduser()
    fmt = args.format or ("parquet" if path.suffix == ".parquet" else "jsonl")
    if fmt == "parquet":
        try:
            import pyarrow  # type: ignore[import-untyped, unused-ignore]  # noqa: F401
        except ImportError:
            raise CarCommandError(
                "--format parquet needs pyarrow: pip install pyarrow (or use --format jsonl)"
            ) from None
        frame = to_dataframe([_flat(r) for r in rows], TURN_COLUMNS)
        frame.to_parquet(path, index=False)
    else:
        with path.open("w", encoding="utf-8") as out:
            for r in rows:
                out.write(json.dumps(r, ensure_ascii=False) + "\n")
    return Message(f"{len(rows)} model turns of {len(args.run_ids)} runs written to {path}")


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    """Nested values as JSON text, so every parquet column has one type."""
    nested = ("input_messages", "tool_calls", "outcome")
    return {k: json.dumps(v, ensure_ascii=False) if k in nested else v for k, v in row.items()}

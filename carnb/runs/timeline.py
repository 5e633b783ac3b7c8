"""Readable views of a run trace (pure): plain text and simple HTML, one line per record.

Input is what :meth:`carnb.runs.RunStore.get_trace` (or ``runs.get_trace``) returns. Each line
shows the record index, its kind, the time since the run started, and a short summary: the
intent for ``started``; tool, parameters, prompt and output for a ``turn``; the terminal status
with the outcome or reason for ``ended``. Long values are cut to a width, never wrapped.
:class:`TraceView` wraps a trace so a notebook renders it (``_repr_html_``, text fallback).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

_SPACE = re.compile(r"\s+")
TURN_KEYS = ("tool", "parameters", "prompt", "output", "error")


def shorten(value: Any, width: int = 60) -> str:
    """One line, at most ``width`` characters (``…`` marks a cut). Non-strings as compact JSON."""
    if not isinstance(value, str):
        try:
            value = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=repr)
        except ValueError:  # circular structures
            value = repr(value)
    text = _SPACE.sub(" ", value).strip()
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _ts(record: Mapping[str, Any]) -> float | None:
    stamp = record.get("timestamp")
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None


def offset(record: Mapping[str, Any], t0: float | None) -> str:
    t = _ts(record)
    if t is None or t0 is None:
        return "?"
    return f"+{t - t0:.3f}s"


def turn_summary(turn: Any, width: int = 60) -> str:
    """``tool name {params} · prompt "..." → output`` with whatever fields the turn has."""
    if not isinstance(turn, Mapping):
        return shorten(turn, width)
    parts: list[str] = []
    if turn.get("tool") is not None:
        tool = turn["tool"]
        parts.append("tool " + (tool if isinstance(tool, str) else shorten(tool, width // 2)))
    if turn.get("parameters") is not None:
        parts.append(shorten(turn["parameters"], width))
    if turn.get("prompt") is not None:
        parts.append(f'prompt "{shorten(turn["prompt"], width)}"')
    text = " ".join(parts)
    if turn.get("output") is not None:
        text += (" → " if text else "→ ") + shorten(turn["output"], width)
    if turn.get("error") is not None:
        text += (" " if text else "") + "error: " + shorten(turn["error"], width)
    if not text:
        rest = {k: v for k, v in turn.items() if k not in TURN_KEYS}
        text = shorten(rest, width) if rest else "(empty turn)"
    return text


def record_summary(record: Mapping[str, Any], width: int = 60) -> str:
    kind = record.get("record")
    if kind == "started":
        return f'intent "{shorten(record.get("intent", ""), width)}"'
    if kind == "turn":
        return turn_summary(record.get("turn"), width)
    if kind == "model_turn":
        calls = record.get("requested_tool_calls") or []
        names = [str(c.get("name", "?")) for c in calls if isinstance(c, Mapping)]
        text = f"model {record.get('model_id') or '?'}"
        if record.get("assistant_text"):
            text += f' "{shorten(record["assistant_text"], width)}"'
        return text + (" → " + ", ".join(names) if names else "")
    if kind == "ended":
        status = str(record.get("status", "?"))
        outcome = record.get("outcome")
        if isinstance(outcome, Mapping):
            text = f"{status}: {outcome.get('status', '?')}"
            if outcome.get("summary") is not None:
                text += " — " + shorten(outcome["summary"], width)
            return text
        if record.get("reason") is not None:
            return f"{status}: {shorten(record['reason'], width)}"
        return status
    return shorten({k: v for k, v in record.items() if k not in ("index", "timestamp")}, width)


def rows(trace: Mapping[str, Any], width: int = 60) -> list[tuple[str, str, str, str]]:
    """``(index, kind, offset, summary)`` per record, as strings."""
    records = [r for r in trace.get("records") or [] if isinstance(r, Mapping)]
    t0 = _ts(records[0]) if records else None
    return [
        (
            str(r.get("index", "?")),
            str(r.get("record", "?")),
            offset(r, t0),
            record_summary(r, width),
        )
        for r in records
    ]


def header(trace: Mapping[str, Any]) -> str:
    if trace.get("not_found"):
        return f"run {trace.get('run_id')}: not found"
    text = f"run {trace.get('run_id')} · agent {trace.get('agent_id')} · {trace.get('status')}"
    if trace.get("intent"):
        text += f' · "{shorten(trace["intent"], 60)}"'
    return text


def render_text(trace: Mapping[str, Any], width: int = 60) -> str:
    lines = [header(trace)]
    table = rows(trace, width)
    if not table and not trace.get("not_found"):
        lines.append("  (no records)")
    iw = max((len(r[0]) for r in table), default=1) + 1
    ow = max((len(r[2]) for r in table), default=1)
    for idx, kind, off, summary in table:
        lines.append(f"  {'#' + idx:<{iw}}  {off:>{ow}}  {kind:<7}  {summary}")
    return "\n".join(lines)


def render_html(trace: Mapping[str, Any], width: int = 80) -> str:
    esc = html.escape
    out = [f'<div class="carnb-trace"><div style="font-weight:bold">{esc(header(trace))}</div>']
    table = rows(trace, width)
    if table:
        out.append(
            '<table style="font-family:monospace;border-collapse:collapse">'
            "<thead><tr><th>#</th><th>time</th><th>kind</th><th>summary</th></tr></thead>"
            "<tbody>"
        )
        for idx, kind, off, summary in table:
            out.append(
                f'<tr><td style="text-align:right">{esc(idx)}</td>'
                f'<td style="text-align:right">{esc(off)}</td>'
                f'<td class="carnb-kind-{esc(kind)}">{esc(kind)}</td>'
                f'<td style="text-align:left">{esc(summary)}</td></tr>'
            )
        out.append("</tbody></table>")
    elif not trace.get("not_found"):
        out.append("<div>(no records)</div>")
    out.append("</div>")
    return "".join(out)


class TraceView:
    """A trace that renders itself in a notebook (HTML) and as text (``str``/``repr``)."""

    def __init__(self, trace: Mapping[str, Any]) -> None:
        self.trace = trace

    def __str__(self) -> str:
        return render_text(self.trace)

    def __repr__(self) -> str:
        return render_text(self.trace)

    def _repr_html_(self) -> str:
        return render_html(self.trace)

"""Readable run traces in the notebook: a static timeline and a live one that grows.

A trace is what ``runs.get_trace`` returns. Each record becomes one timeline entry: its index,
the time since the run started, how long it took since the previous record, and a one-line
summary; a turn (a notebook cell, a tool call or a model turn) expands to its full source,
parameters, output and error, never squashed onto one line; a ``model_turn`` record (an agent
loop's inference) shows the model, its text, the tool calls it asked for, tokens and duration.
:class:`TraceDoc` renders a trace once (``%car run trace``); :class:`LiveTrace` (``%car run trace
--live``) is an ipywidgets view that appends entries as the run store commits records, from
any writer (the notebook or an outside agent). Only the loop thread writes its widgets: the
runtime forwards store records to the server loop (``Runtime.watch_runs``) and the view schedules
a throttled update there.
"""

from __future__ import annotations

import asyncio
import contextvars
import html
import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from carnb.kernel.style import ROOT, STYLESHEET, short_id

if TYPE_CHECKING:
    from carnb.kernel.view import RuntimeView

log = logging.getLogger("carnb.kernel.traceview")

SUMMARY_WIDTH = 80
TRACE_COLUMNS = ("index", "kind", "timestamp", "offset_s", "label", "prompt", "output", "error")


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _ts(record: Mapping[str, Any]) -> float | None:
    stamp = record.get("timestamp")
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None


def _one_line(value: Any, width: int = SUMMARY_WIDTH) -> str:
    """A summary: the first non-blank line (``…`` and the line count when there are more);
    structured values as compact JSON."""
    if isinstance(value, str) or value is None:
        lines = [ln.strip() for ln in _text(value).splitlines() if ln.strip()]
        text = lines[0] if lines else ""
        more = f"  (+{len(lines) - 1} lines)" if len(lines) > 1 else ""
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=repr)
        except ValueError:
            text = repr(value)
        more = ""
    text = " ".join(text.split())
    cut = width - len(more)
    return (text if len(text) <= cut else text[: max(0, cut - 1)] + "…") + more


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, indent=1, default=repr)
    except ValueError:
        return repr(value)


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def turn_label(turn: Mapping[str, Any]) -> str:
    """``cell [10]``, ``tool NAME`` or ``model`` (a turn with no tool)."""
    tool = turn.get("tool")
    params = turn.get("parameters")
    if tool == "cell":
        count = params.get("execution_count") if isinstance(params, Mapping) else None
        return f"cell [{count}]" if count is not None else "cell"
    if tool is not None:
        return f"tool {_one_line(tool, 40)}"
    return "model"


class Entry:
    """One record of a trace, ready to show: ``label``, ``summary``, ``offset``, ``took`` and
    the full ``details`` (name, text) of a turn."""

    def __init__(self, record: Mapping[str, Any], t0: float | None, prev: float | None) -> None:
        self.record = record
        self.index = record.get("index")
        self.kind = str(record.get("record", "?"))
        t = _ts(record)
        self.offset = None if t is None or t0 is None else t - t0
        self.took = None if t is None or prev is None else t - prev
        self.details: list[tuple[str, str]] = []
        turn = record.get("turn")
        if self.kind == "turn" and isinstance(turn, Mapping):
            self.label = turn_label(turn)
            first = turn.get("prompt") if turn.get("prompt") is not None else turn.get("parameters")
            self.summary = _one_line(first)
            if turn.get("error") is not None:
                self.summary += f"  ✗ {_one_line(turn['error'], 60)}"
            params = turn.get("parameters")
            if turn.get("tool") != "cell" and params is not None:
                self.details.append(("parameters", _text(params)))
            for key in ("prompt", "output", "error"):
                if turn.get(key) is not None:
                    name = "source" if key == "prompt" and turn.get("tool") == "cell" else key
                    self.details.append((name, _text(turn[key])))
            extra = {
                k: v
                for k, v in turn.items()
                if k not in ("tool", "parameters", "prompt", "output", "error")
            }
            if extra:
                self.details.append(("more", _text(extra)))
        elif self.kind == "model_turn":
            self.label, self.summary = _model_turn(record, self.details)
        elif self.kind == "started":
            self.label = ""
            self.summary = _one_line(record.get("intent"))
        elif self.kind == "ended":
            self.label = str(record.get("status", ""))
            outcome = record.get("outcome")
            if isinstance(outcome, Mapping):
                self.summary = _one_line(
                    f"{outcome.get('status', '')}: {outcome.get('summary') or ''}".strip(": ")
                )
            else:
                self.summary = _one_line(record.get("reason"))
        else:
            self.label = ""
            self.summary = _one_line({k: v for k, v in record.items() if k != "timestamp"})

    def row(self) -> dict[str, Any]:
        turn = self.record.get("turn") if self.kind == "turn" else None
        t = turn if isinstance(turn, Mapping) else {}
        return {
            "index": self.index,
            "kind": self.kind,
            "timestamp": self.record.get("timestamp"),
            "offset_s": self.offset,
            "label": self.label,
            "prompt": t.get("prompt"),
            "output": t.get("output"),
            "error": t.get("error"),
        }

    def text(self) -> str:
        head = f"#{self.index:<3} {_offset(self.offset):>9} {_seconds(self.took):>8}  "
        head += f"{self.kind:<7} {self.label}".rstrip()
        lines = [f"{head}  {self.summary}".rstrip()]
        for name, body in self.details:
            lines.append(f"      {name}:")
            lines += [f"        {ln}" for ln in body.splitlines() or [""]]
        return "\n".join(lines)

    def html(self) -> str:
        head = (
            f'<span class="carnb-trace-idx">#{_esc(self.index)}</span> '
            f'<span class="carnb-trace-time">{_esc(_offset(self.offset))}</span> '
            f'<span class="carnb-trace-took">{_esc(_seconds(self.took))}</span> '
            f'<span class="carnb-trace-{_esc(self.kind)}">{_esc(self.kind)}</span> '
            f"<b>{_esc(self.label)}</b> "
            f"<code>{_esc(self.summary)}</code>"
        )
        if not self.details:
            return f'<div class="carnb-trace-entry">{head}</div>'
        body = "".join(
            f'<div class="carnb-trace-field">{_esc(name)}</div>'
            f'<pre class="carnb-trace-detail">{_esc(text)}</pre>'
            for name, text in self.details
        )
        return f'<details class="carnb-trace-entry"><summary>{head}</summary>{body}</details>'


def _model_turn(record: Mapping[str, Any], details: list[tuple[str, str]]) -> tuple[str, str]:
    """Label and summary of a ``model_turn`` record (text, tool calls, tokens, duration);
    fills ``details`` with the full text and each requested call."""
    model = record.get("model_id")
    label = f"model {_one_line(model, 40)}" if model else "model"
    calls = [c for c in record.get("requested_tool_calls") or [] if isinstance(c, Mapping)]
    text = record.get("assistant_text") or ""
    parts = [_one_line(text, 50)] if text else []
    if calls:
        parts.append("→ " + ", ".join(_one_line(c.get("name", "?"), 30) for c in calls))
    usage = record.get("token_usage")
    if isinstance(usage, Mapping):
        tin, tout = usage.get("input_tokens"), usage.get("output_tokens")
        if tin is not None or tout is not None:
            parts.append(f"[{tin or 0} in / {tout or 0} out tokens]")
    if isinstance(record.get("duration_ms"), int | float):
        parts.append(f"{record['duration_ms']:.0f} ms")
    if text:
        details.append(("text", text))
    for call in calls:
        details.append((f"calls {call.get('name', '?')}", _text(call.get("arguments"))))
    if record.get("turn_index") is not None:
        details.append(("turn", str(record["turn_index"])))
    return label, "  ".join(parts) or "(no text, no tool calls)"


def _offset(value: float | None) -> str:
    return "" if value is None else f"+{value:.3f}s"


def entries(records: list[Mapping[str, Any]]) -> list[Entry]:
    ordered = sorted(
        (r for r in records if isinstance(r, Mapping)), key=lambda r: r.get("index", 0)
    )
    t0 = _ts(ordered[0]) if ordered else None
    out, prev = [], None
    for r in ordered:
        out.append(Entry(r, t0, prev))
        prev = _ts(r) if _ts(r) is not None else prev
    return out


def _header_rest(trace: Mapping[str, Any], records: list[Mapping[str, Any]]) -> str:
    text = f" · agent {trace.get('agent_id')} · {trace.get('status')}"
    times = [t for t in (_ts(r) for r in records) if t is not None]
    if times:
        ended = trace.get("status") not in (None, "in_progress")
        span = (max(times) if ended else time.time()) - min(times)
        text += f" · {_seconds(span)}" + ("" if ended else " so far")
    if trace.get("intent"):
        text += f' · "{_one_line(trace["intent"], 60)}"'
    return text


def header(trace: Mapping[str, Any], records: list[Mapping[str, Any]]) -> str:
    """The trace's title line (plain text: the full run id, for copying)."""
    return f"run {trace.get('run_id')}{_header_rest(trace, records)}"


def header_html(trace: Mapping[str, Any], records: list[Mapping[str, Any]]) -> str:
    """The title line as HTML: the run id shortened, in full on hover."""
    return f"run {short_id(trace.get('run_id')).html}{_esc(_header_rest(trace, records))}"


def read_trace(
    call: Callable[[str, dict[str, Any]], Any], run_id: str, *, most: int | None = None
) -> dict[str, Any] | None:
    """A run's trace read page by page with ``call("runs.get_trace", params)``: every record,
    or, with ``most``, the pages that hold the first ``most`` records (then ``next_cursor`` says
    where the rest starts). None when the caller may not read the run or it is unknown."""
    params: dict[str, Any] = {"run_id": run_id}
    records: list[Any] = []
    while True:
        page = call("runs.get_trace", params)
        if not isinstance(page, dict) or page.get("not_found"):
            return None
        records.extend(page.get("records") or [])
        next_cursor = page.get("next_cursor")
        if next_cursor is None or (most is not None and len(records) >= most):
            break
        params = {"run_id": run_id, "cursor": next_cursor}
    # the run's fields as of the last page read (its status may have moved on meanwhile)
    return {**page, "records": records}


def to_dataframe(rows: list[dict[str, Any]], columns: tuple[str, ...] | list[str]) -> Any:
    """A pandas DataFrame of ``rows`` (pandas is optional: a clear ImportError without it)."""
    try:
        import pandas as pd  # type: ignore[import-untyped, unused-ignore]
    except ImportError as exc:
        raise ImportError(
            "to_dataframe() needs pandas, which is not installed: `pip install pandas`"
        ) from exc
    return pd.DataFrame(rows, columns=list(columns))


TRACE_CLASS = "carnb-trace"  # around the entries, static and live alike


class TraceDoc:
    """A trace rendered once: HTML (expandable turns) and text; ``.to_dataframe()``."""

    def __init__(self, trace: Mapping[str, Any]) -> None:
        self.trace = trace
        self.records = [r for r in trace.get("records") or [] if isinstance(r, Mapping)]
        self.entries = entries(self.records)

    def text(self) -> str:
        lines = [header(self.trace, self.records)]
        lines += [e.text() for e in self.entries] or ["  (no records)"]
        return "\n".join(lines)

    def html(self) -> str:
        body = "".join(e.html() for e in self.entries) or "<div><i>(no records)</i></div>"
        return (
            f'<div class="{TRACE_CLASS}"><div class="carnb-h">'
            f"{header_html(self.trace, self.records)}</div>{body}</div>"
        )

    def to_dataframe(self) -> Any:
        return to_dataframe([e.row() for e in self.entries], TRACE_COLUMNS)

    def __str__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        return self.html()


class LiveTrace:
    """``%car run trace --live``: a timeline widget that grows as records are committed.

    Created on the kernel thread; :meth:`start` registers the store watcher first, then reads
    the snapshot, so nothing committed in between is lost (records are keyed by index, so one
    seen twice is shown once). The snapshot must hold every record (all the pages of
    :func:`read_trace`): a capped one would leave a gap before the first live record. Updates
    are throttled to one per ``interval``.
    """

    def __init__(self, runtime: RuntimeView, run_id: str, *, interval: float = 0.1) -> None:
        import ipywidgets as w  # type: ignore[import-untyped]

        self.runtime = runtime
        self.run_id = run_id
        self.interval = interval
        self.trace: dict[str, Any] = {"run_id": run_id}
        self.records: dict[int, Mapping[str, Any]] = {}
        self.title = w.HTML()
        self.timeline = w.VBox([])
        self.timeline.add_class(TRACE_CLASS)  # the entries sit in what the static trace has
        self.widget = w.VBox([self.title, self.timeline])
        self.widget.add_class("carnb-live-trace")
        self.widget.add_class(ROOT)  # the stylesheet's colours and line spacing apply
        self._shown: list[Any] = []  # one HTML widget per entry shown
        self._unwatch: Callable[[], None] | None = None
        self._pending: asyncio.TimerHandle | None = None
        self._last = 0.0
        self._closed = False
        self.updates = 0

    # -- kernel thread -----------------------------------------------------------------------
    def start(self, snapshot: Callable[[], dict[str, Any]]) -> LiveTrace:
        """Watch the store, then take the ``snapshot()`` (``runs.get_trace``) and show it."""
        self._unwatch = self.runtime.watch_runs(self._on_record)
        try:
            trace = snapshot()
        except BaseException:
            self.close()
            raise
        self.runtime.run_on_loop(self._aload(trace), timeout=30)
        return self

    def flush(self, timeout: float = 10) -> None:
        """Show every record received so far now (waits for the loop thread)."""
        if not self._closed and self.runtime.running:
            self.runtime.run_on_loop(self._aupdate(), timeout=timeout)

    def close(self) -> None:
        """Stop watching and close the widgets (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._stop_watching()
        if self.runtime.running:
            self.runtime.call_soon(self._cancel_pending)
        for widget in (*self._shown, self.title, self.timeline, self.widget):
            widget.close()

    def to_dataframe(self) -> Any:
        return TraceDoc(self._trace()).to_dataframe()

    def text(self) -> str:
        return TraceDoc(self._trace()).text()

    def __str__(self) -> str:
        return self.text()

    def _repr_mimebundle_(self, **kw: Any) -> Any:
        bundle = self.widget._repr_mimebundle_(**kw)
        if isinstance(bundle, dict):
            bundle["text/plain"] = self.text()
        return bundle

    # -- loop thread -------------------------------------------------------------------------
    def _trace(self) -> dict[str, Any]:
        return {**self.trace, "records": [self.records[i] for i in sorted(self.records)]}

    async def _aload(self, trace: dict[str, Any]) -> None:
        self.trace = {k: v for k, v in trace.items() if k != "records"}
        for r in trace.get("records") or []:
            self.records[int(r["index"])] = r
        await self._aupdate()

    def _on_record(self, event: dict[str, Any]) -> None:
        if self._closed or event.get("run_id") != self.run_id:
            return
        record = event["record"]
        self.records[int(record["index"])] = record
        if event.get("status"):
            self.trace["status"] = event["status"]
        self._schedule()

    def _schedule(self) -> None:
        if self._closed or self._pending is not None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, self._last + self.interval - time.monotonic())
        # a fresh context: the update goes to the cell that is the kernel's parent now
        self._pending = loop.call_later(delay, self._fire, context=contextvars.Context())

    def _fire(self) -> None:
        self._pending = None
        self._update()

    def _cancel_pending(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    async def aflush(self) -> None:
        """Show every record received so far now (on the server loop)."""
        await self._aupdate()

    async def _aupdate(self) -> None:
        self._cancel_pending()
        self._update()

    def _update(self) -> None:
        if self._closed:
            return
        import ipywidgets as w

        self._last = time.monotonic()
        self.updates += 1
        ordered = [self.records[i] for i in sorted(self.records)]
        for r in ordered:
            if r.get("record") == "ended":
                self.trace["status"] = r.get("status", self.trace.get("status"))
        shown = entries(ordered)
        new = [w.HTML(e.html()) for e in shown[len(self._shown) :]]
        if len(shown) < len(self._shown) or any(  # a record arrived out of order: redraw
            old.value != e.html() for old, e in zip(self._shown, shown, strict=False)
        ):
            for old in self._shown:
                old.close()
            self._shown = [w.HTML(e.html()) for e in shown]
            self.timeline.children = tuple(self._shown)
        elif new:
            self._shown += new
            self.timeline.children = tuple(self._shown)
        head = header_html(self.trace, ordered)
        self.title.value = f'{STYLESHEET}<div class="carnb-h">{head}</div>'
        if self.trace.get("status") not in (None, "in_progress"):
            self._stop_watching()  # the run ended: nothing more will come

    def _stop_watching(self) -> None:
        unwatch, self._unwatch = self._unwatch, None
        if unwatch is not None:
            unwatch()

"""``%car run diff A B``: two runs side by side, model turn by model turn.

Each row is one model turn (numbered from 1, as ``%car run trace`` counts them): the model's
text as a word diff (words only in A struck through, words only in B underlined), the tool calls
with their parameters, the tool results, the memory facts the turn's context held (the lines of
the context carnb injected, when it recorded one), tokens and latency. A turn that differs is
marked. ``.to_dataframe()`` gives one row per turn with both runs' values.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from carnb.app.steps import ModelStep, model_steps
from carnb.kernel.render import Renderable
from carnb.kernel.style import cell_text, esc, note_html, short_id, title_html
from carnb.kernel.traceview import to_dataframe

COLUMNS = ("turn", "same", "text", "tool_calls", "tool_results", "context_facts", "tokens", "ms")
FRAME_COLUMNS = (
    "turn",
    "same",
    "text_a",
    "text_b",
    "tool_calls_a",
    "tool_calls_b",
    "tool_results_a",
    "tool_results_b",
    "context_facts_a",
    "context_facts_b",
    "tokens_a",
    "tokens_b",
    "ms_a",
    "ms_b",
)


def word_diff_html(a: str, b: str) -> str:
    """``a`` to ``b`` word by word: removed words in ``<del>``, added ones in ``<ins>``."""
    wa, wb = a.split(), b.split()
    out: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=wa, b=wb, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(esc(" ".join(wa[i1:i2])))
            continue
        if i2 > i1:
            out.append(f"<del>{esc(' '.join(wa[i1:i2]))}</del>")
        if j2 > j1:
            out.append(f"<ins>{esc(' '.join(wb[j1:j2]))}</ins>")
    return " ".join(out)


def _calls(step: ModelStep | None) -> list[str]:
    if step is None:
        return []
    return [
        f"{c.get('name')}({json.dumps(c.get('arguments') or {}, sort_keys=True)})"
        for c in step.reply.get("tool_calls") or []
        if isinstance(c, dict)
    ]


def _results(step: ModelStep | None) -> list[str]:
    if step is None:
        return []
    return [cell_text(t.output if t.error is None else {"error": t.error}, 200) for t in step.tools]


def _facts(step: ModelStep | None) -> list[str]:
    context = None if step is None else step.context
    return [line.strip() for line in (context or "").splitlines() if line.strip()]


def _tokens(step: ModelStep | None) -> int | None:
    usage = None if step is None else (step.record.get("token_usage") or step.reply.get("usage"))
    if not isinstance(usage, dict):
        return None
    return int(usage.get("input_tokens") or 0) + int(usage.get("output_tokens") or 0)


def _ms(step: ModelStep | None) -> Any:
    return None if step is None else step.record.get("duration_ms")


def _text(step: ModelStep | None) -> str:
    return "" if step is None else str(step.reply.get("text") or "")


def _show(value: Any) -> str:
    """A row's value as text: lists joined with "; ", nothing for None."""
    if value is None:
        return ""
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)
    return cell_text(value, 200)


class RunDiff(Renderable):
    """The diff of two traces; ``.rows`` one dict per model turn."""

    def __init__(self, a: dict[str, Any], b: dict[str, Any]) -> None:
        self.a, self.b = a, b
        sa, sb = model_steps(a.get("records") or []), model_steps(b.get("records") or [])
        self.rows: list[dict[str, Any]] = []
        for i in range(max(len(sa), len(sb))):
            x = sa[i] if i < len(sa) else None
            y = sb[i] if i < len(sb) else None
            row = {
                "turn": i + 1,
                "text_a": _text(x),
                "text_b": _text(y),
                "tool_calls_a": _calls(x),
                "tool_calls_b": _calls(y),
                "tool_results_a": _results(x),
                "tool_results_b": _results(y),
                "context_facts_a": _facts(x),
                "context_facts_b": _facts(y),
                "tokens_a": _tokens(x),
                "tokens_b": _tokens(y),
                "ms_a": _ms(x),
                "ms_b": _ms(y),
            }
            row["same"] = (
                x is not None
                and y is not None
                and all(
                    row[f"{k}_a"] == row[f"{k}_b"]
                    for k in ("text", "tool_calls", "tool_results", "context_facts")
                )
            )
            self.rows.append(row)

    @property
    def first_difference(self) -> int | None:
        """The first model turn where the runs differ (None: they agree turn by turn)."""
        return next((r["turn"] for r in self.rows if not r["same"]), None)

    def _title(self) -> str:
        return f"run {self.a.get('run_id')} (A) against {self.b.get('run_id')} (B)"

    def _summary(self) -> str:
        first = self.first_difference
        return (
            f"{len(self.rows)} model turns; they agree turn by turn"
            if first is None
            else f"{len(self.rows)} model turns; the first difference is at turn {first}"
        )

    def text(self) -> str:
        lines = [self._title(), self._summary()]
        for r in self.rows:
            mark = " " if r["same"] else "*"
            lines.append(f"{mark} turn {r['turn']}")
            for k in ("text", "tool_calls", "tool_results", "context_facts", "tokens", "ms"):
                a, b = r[f"{k}_a"], r[f"{k}_b"]
                if a == b:
                    lines.append(f"    {k}: {_show(a)}")
                else:
                    lines.append(f"    {k}: A {_show(a)} | B {_show(b)}")
        return "\n".join(lines)

    def html(self) -> str:
        def pair(a: Any, b: Any) -> str:
            if a == b:
                return esc(_show(a))
            return f"A: {esc(_show(a))}<br>B: {esc(_show(b))}"

        head = "".join(f"<th>{esc(c)}</th>" for c in COLUMNS)
        body = []
        for r in self.rows:
            cls = "" if r["same"] else ' class="carnb-diff"'
            cells = [
                esc(r["turn"]),
                "same" if r["same"] else "<b>differs</b>",
                word_diff_html(r["text_a"], r["text_b"]),
                pair(r["tool_calls_a"], r["tool_calls_b"]),
                pair(r["tool_results_a"], r["tool_results_b"]),
                pair(r["context_facts_a"], r["context_facts_b"]),
                pair(r["tokens_a"], r["tokens_b"]),
                pair(r["ms_a"], r["ms_b"]),
            ]
            body.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        ids = f"A {short_id(self.a.get('run_id')).html} · B {short_id(self.b.get('run_id')).html}"
        return (
            title_html(self._title())
            + note_html(self._summary())
            + f"<div>{ids}</div>"
            + f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        )

    def to_dataframe(self) -> Any:
        """One row per model turn with both runs' values (needs pandas)."""
        return to_dataframe(self.rows, FRAME_COLUMNS)

"""One look for everything carnb renders: the stylesheet and the HTML pieces built on it.

Colours come from JupyterLab's CSS variables (``--jp-layout-color*``, ``--jp-border-color*``,
``--jp-ui-font-color*``), so tables read in the light, dark and high-contrast themes; each
variable has a neutral fallback for frontends without them (classic Notebook, VS Code, nbviewer).
The selectors repeat the root class (``.carnb-out.carnb-out``) so they outrank JupyterLab's own
rules for rendered tables (right-aligned cells, striped rows).

The API, meant to stay small and stable:

* :data:`ROOT` / :data:`STYLESHEET` / :func:`page` — the root element every output sits in.
* :class:`Cell` — a value with its own text and HTML (``short_id``, ``when``, ``cell``).
* :func:`table_html` / :func:`kv_html` — a table under named columns, a key/value block.
* :func:`clock` / :func:`offset` — times as ``09:17:30`` and ``+2.0 s``.
* :func:`note_html` / :func:`title_html` / :func:`code_spans` — a muted line, a heading line,
  text whose `quoted` spans show as code (no literal backticks).

Every value that reaches HTML here goes through :func:`esc`.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

ROOT = "carnb-out"

_R = f".{ROOT}.{ROOT}"
_DARK = f'body[data-jp-theme-light="false"] {_R}'
_BG0 = "var(--jp-layout-color0, transparent)"
_BG2 = "var(--jp-layout-color2, rgba(127,127,127,.14))"
_FG1 = "var(--jp-ui-font-color1, inherit)"
_FG2 = "var(--jp-ui-font-color2, inherit)"
_LINE = "var(--jp-border-color2, rgba(127,127,127,.35))"
_ACCENT = "var(--jp-brand-color1, #1976d2)"
_MONO = "var(--jp-code-font-family, monospace)"

STYLESHEET = (
    "<style>"
    f"{_R}{{color:{_FG1};font-family:var(--jp-ui-font-family, sans-serif);font-size:12px;"
    "line-height:1.4}"
    f"{_R} table{{border-collapse:collapse;margin:2px 0 4px;table-layout:auto;width:auto;"
    f"background:{_BG0};color:{_FG1};font-size:12px;border:none}}"
    f"{_R} tr,{_R} tbody tr,{_R} tbody tr:nth-child(odd),{_R} tbody tr:nth-child(even)"
    f"{{background:{_BG0};color:{_FG1}}}"
    f"{_R} td,{_R} th{{border:1px solid {_LINE};padding:2px 8px;text-align:left;"
    f"vertical-align:top;color:{_FG1};background:transparent;max-width:none;"
    "line-height:1.4;font-size:12px}"
    f"{_R} th{{background:{_BG2};font-weight:600;white-space:nowrap}}"
    f"{_R} tbody tr:hover td{{background:{_BG2}}}"
    f"{_R} .carnb-kv th{{text-align:left;font-weight:600}}"
    f"{_R} .carnb-nowrap{{white-space:nowrap}}"
    f"{_R} .carnb-id,{_R} .carnb-time{{font-family:{_MONO};white-space:nowrap;"
    f"color:{_FG1};background:transparent}}"
    f"{_R} code{{color:{_FG1}}}"
    f"{_R} .carnb-id[title]{{text-decoration:underline dotted {_LINE};cursor:help}}"
    f"{_R} .carnb-num{{text-align:right;font-variant-numeric:tabular-nums}}"
    f"{_R} .carnb-h{{font-weight:600;margin:4px 0 2px}}"
    f"{_R} .carnb-note{{color:{_FG2};font-style:italic}}"
    f"{_R} .carnb-error{{color:var(--jp-error-color1, #d32f2f);font-weight:600}}"
    f"{_R} tr.carnb-me td{{box-shadow:inset 3px 0 0 {_ACCENT}}}"
    f"{_R} tr.carnb-me td~td{{box-shadow:none}}"
    f"{_R} tr.carnb-ended td,{_R} tr.carnb-superseded td{{color:{_FG2};font-style:italic}}"
    f"{_R} pre{{margin:2px 0;white-space:pre-wrap;color:{_FG1};background:{_BG2};"
    f"padding:4px 6px;font-family:{_MONO}}}"
    f"{_R} img.carnb-shot{{max-width:min(960px,100%);height:auto;border:1px solid {_LINE};"
    "cursor:zoom-in;display:block;margin:2px 0}"
    f"{_R} .carnb-part{{margin-bottom:6px}}"
    f"{_R} .carnb-label,{_R} .carnb-muted{{color:{_FG2}}}"
    f"{_R} .carnb-muted{{font-style:italic}}"
    f"{_R} .widget-html-content{{line-height:1.4;white-space:normal;overflow:visible}}"
    # A widget's HTML children are one line each at the text's own height (ipywidgets gives
    # every one the height of an input box otherwise).
    f"{_R} .widget-html{{height:auto;min-height:0;margin-top:0;margin-bottom:0}}"
    # The panel's tables keep each value on one line; a narrow notebook scrolls them sideways.
    f"{_R}.carnb-panel{{overflow-x:auto}}"
    f"{_R} table.carnb-notebook td,{_R} table.carnb-sessions td,{_R} table.carnb-tools td"
    "{white-space:nowrap}"
    f"{_R} table.carnb-notebook td{{border:none;padding:1px 12px 1px 0}}"
    # The notebook's flags row wraps between its label/value pairs, never inside one.
    f"{_R} table.carnb-notebook tr{{display:flex;flex-wrap:wrap}}"
    f"{_R} .carnb-action{{display:block}}"  # one line per action of a proposal
    # After a kernel restart the frontend marks every view disconnected: one broken-link icon
    # for the whole output (not one per child), and buttons that no longer look clickable.
    f"{_R} .jupyter-widgets-disconnected::before{{display:none}}"
    f"{_R}.jupyter-widgets-disconnected{{opacity:.7}}"
    f"{_R}.jupyter-widgets-disconnected button{{pointer-events:none;opacity:.5;cursor:default}}"
    f"{_R} a{{color:{_ACCENT}}}"
    # Trace record kinds (carnb.runs.timeline, the kernel's trace view): one hue each, AA
    # contrast in the light and the dark themes.
    + "".join(
        f"{_R} .carnb-kind-{kind},{_R} .carnb-trace-{kind}{{color:{light};font-weight:600}}"
        f"{_DARK} .carnb-kind-{kind},{_DARK} .carnb-trace-{kind}{{color:{dark}}}"
        for kind, light, dark in (
            ("started", "#1b7a3a", "#6fd08c"),
            ("model_turn", "#6a3fa0", "#c9a8f2"),
            ("turn", "#1f5fa8", "#8ab8f0"),
            ("ended", "#9a3d12", "#f0a070"),
        )
    )
    + f"{_R} .carnb-trace-entry{{padding:1px 0;color:{_FG1}}}"
    f"{_R} .carnb-trace-entry summary{{cursor:pointer}}"
    f"{_R} .carnb-trace-idx,{_R} .carnb-trace-time,{_R} .carnb-trace-took{{color:{_FG2};"
    f"font-family:{_MONO};font-variant-numeric:tabular-nums;white-space:nowrap}}"
    f"{_R} .carnb-trace-field{{color:{_FG2};margin-left:1.5em}}"
    # A turn's details (its source, output, text, tool calls): a grey code box, in the static
    # trace and in each HTML widget of the live one.
    f"{_R} pre.carnb-trace-detail{{display:block;margin:0 0 4px 1.5em;white-space:pre-wrap;"
    f"color:{_FG1};background:{_BG2};padding:4px 6px;font-family:{_MONO};line-height:1.4;"
    "font-size:12px;border-radius:2px}"
    "</style>"
)


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def page(body: str, *, cls: str = "") -> str:
    """``body`` inside the root element, with the stylesheet (each output carries its own)."""
    extra = f" {esc(cls)}" if cls else ""
    return f'<div class="{ROOT}{extra}">{STYLESHEET}{body}</div>'


@dataclass(frozen=True)
class Cell:
    """A rendered value: ``text`` for plain output, ``html`` (already escaped) for HTML."""

    text: str
    html: str

    def __str__(self) -> str:
        return self.text


def cell(text: Any, *, title: str = "", cls: str = "") -> Cell:
    """Text in a span with an optional hover ``title`` and class (e.g. ``carnb-nowrap``)."""
    attrs = (f' class="{esc(cls)}"' if cls else "") + (f' title="{esc(title)}"' if title else "")
    return Cell(str(text), f"<span{attrs}>{esc(text)}</span>" if attrs else esc(text))


def shorten(text: str, keep: int = 8) -> str:
    """``text`` cut to its prefix plus ``keep`` characters (``run-3f2a9c01…``), or as it is."""
    prefix, sep, rest = text.rpartition("-")
    body = rest if sep and len(rest) > keep + 4 else text
    lead = prefix + sep if body is rest else ""
    return lead + body[:keep] + "…" if len(body) > keep + 4 else text


def tags_text(tags: Any) -> str:
    """A fact's tags as ``ci, deploy`` ("" for none, never a raw ``[]``)."""
    if isinstance(tags, (list, tuple)):
        return ", ".join(str(t) for t in tags)
    return "" if tags is None else str(tags)


def short_id(full: Any, keep: int = 8) -> Cell:
    """An id cut to its prefix plus ``keep`` characters (``run-3f2a9c01…``), the full id on hover.

    The plain text keeps the full id (text output is for copying)."""
    if full is None or full == "":
        return Cell("", "")
    text = str(full)
    short = shorten(text, keep)
    if short == text:
        return Cell(text, f'<span class="carnb-id">{esc(text)}</span>')
    return Cell(text, f'<span class="carnb-id" title="{esc(text)}">{esc(short)}</span>')


def typeable(full: str, keep: int = 8) -> str:
    """The short form of an id without its ``…`` (``run-3f2a9c01``): what a person types; the
    run commands take it as a unique prefix."""
    return shorten(full, keep).removesuffix("…")


def fork_point(parent: Any, turn: Any) -> Cell:
    """Where a fork starts (``run-3f2a9c01… @ turn 3``): the short parent id with the full id on
    hover; the plain text keeps the full id."""
    sid = short_id(parent)
    return Cell(f"{sid.text} @ turn {turn}", f"{sid.html} @ turn {esc(turn)}")


def _as_datetime(ts: Any) -> datetime | None:
    if isinstance(ts, bool):
        return None
    if isinstance(ts, (int, float)):
        return datetime.fromtimestamp(ts, UTC).astimezone()
    if isinstance(ts, str) and ts:
        try:
            when = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        except ValueError:
            return None
        return when.astimezone() if when.tzinfo else when
    return None


def clock(ts: Any) -> str:
    """``09:17:30`` (local time) from epoch seconds or an ISO 8601 string; "" if neither."""
    when = _as_datetime(ts)
    return "" if when is None else when.strftime("%H:%M:%S")


def when(ts: Any) -> Cell:
    """:func:`clock` with the full date and time on hover."""
    moment = _as_datetime(ts)
    if moment is None:
        return Cell("" if ts is None else str(ts), esc(ts))
    full = moment.isoformat(timespec="seconds")
    return Cell(
        moment.strftime("%H:%M:%S"),
        f'<span class="carnb-time" title="{esc(full)}">{moment.strftime("%H:%M:%S")}</span>',
    )


def offset(seconds: float | None) -> str:
    """``+2.0 s`` (one decimal), ``+2 min 05 s`` past two minutes; "" for None."""
    if seconds is None:
        return ""
    sign = "-" if seconds < 0 else "+"
    s = abs(seconds)
    if s < 120:
        return f"{sign}{s:.1f} s"
    minutes, rest = divmod(int(round(s)), 60)
    return f"{sign}{minutes} min {rest:02d} s"


def cell_text(value: Any, width: int = 120) -> str:
    """A table cell's text: strings as is, others as compact JSON, cut to ``width``."""
    if value is None:
        return ""
    if isinstance(value, Cell):
        return value.text
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not isinstance(value, str):
        try:
            value = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
        except ValueError:
            value = repr(value)
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def cell_html(value: Any, width: int = 120) -> str:
    if isinstance(value, Cell):
        return value.html
    return esc(cell_text(value, width))


def code_spans(text: str) -> str:
    """Escaped ``text`` with each `quoted` span as <code> (hints name commands this way)."""
    parts = esc(text).split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: leave the text as it is
        return esc(text)
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def title_html(text: str) -> str:
    return f'<div class="carnb-h">{esc(text)}</div>' if text else ""


def note_html(text: str) -> str:
    return f'<div class="carnb-note">{code_spans(text)}</div>' if text else ""


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def table_html(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    title: str = "",
    empty: str = "(none)",
    width: int = 120,
    cls: str = "",
    row_classes: Sequence[str] | None = None,
) -> str:
    """A table: values as :func:`cell_text` (or a :class:`Cell`'s own HTML); numbers right-aligned.

    ``row_classes`` gives each row a class (``carnb-me``, ``carnb-ended``)."""
    rows = [list(r) for r in rows]
    if not rows:
        return title_html(title) + note_html(empty)
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = []
    for i, row in enumerate(rows):
        rc = row_classes[i] if row_classes and i < len(row_classes) else ""
        tds = "".join(
            f'<td class="carnb-num">{cell_html(v, width)}</td>'
            if _numeric(v)
            else f"<td>{cell_html(v, width)}</td>"
            for v in row
        )
        body.append(f'<tr class="{esc(rc)}">{tds}</tr>' if rc else f"<tr>{tds}</tr>")
    klass = f' class="{esc(cls)}"' if cls else ""
    return (
        f"{title_html(title)}<table{klass}><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def kv_html(
    pairs: Mapping[str, Any] | Iterable[tuple[str, Any]],
    *,
    title: str = "",
    width: int = 120,
    cls: str = "",
) -> str:
    """A key/value block: names in the first column, values beside them."""
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    body = "".join(f"<tr><th>{esc(k)}</th><td>{cell_html(v, width)}</td></tr>" for k, v in items)
    return f'{title_html(title)}<table class="carnb-kv {esc(cls)}"><tbody>{body}</tbody></table>'

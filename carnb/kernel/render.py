"""Result objects the magics return: each renders itself as HTML with a plain-text fallback.

Every value that reaches HTML goes through :func:`html.escape`. Nothing here holds a token in
what it renders: :class:`EnvLines` keeps the real values in ``.env`` for code (``info.env``) and
masks token values in its output unless it was made with ``show_tokens=True``.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

SECRET_NAMES = ("CAR_AUTH_TOKEN", "CAR_AGENT_TOKEN")
MASK = "********"
STYLE = (
    "<style>.carnb-out table{border-collapse:collapse;margin:2px 0}"
    ".carnb-out td,.carnb-out th{border:1px solid #ccc;padding:2px 6px;text-align:left;"
    "vertical-align:top;font-size:12px}.carnb-out th{background:#f3f3f3}"
    ".carnb-out pre{margin:2px 0;white-space:pre-wrap}.carnb-out .carnb-h{font-weight:bold}"
    "</style>"
)


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def cell_text(value: Any, width: int = 120) -> str:
    """A table cell's text: strings as is, others as compact JSON, cut to ``width``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not isinstance(value, str):
        try:
            value = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
        except ValueError:
            value = repr(value)
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


class Renderable:
    """Base: subclasses implement :meth:`text` and :meth:`html`."""

    def text(self) -> str:
        raise NotImplementedError

    def html(self) -> str:
        raise NotImplementedError

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {
            "text/plain": self.text(),
            "text/html": f'<div class="carnb-out">{STYLE}{self.html()}</div>',
        }

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return self.text()


class Message(Renderable):
    """One line of text."""

    def __init__(self, text: str) -> None:
        self.message = text

    def text(self) -> str:
        return self.message

    def html(self) -> str:
        return f"<div>{esc(self.message)}</div>"


class Pre(Renderable):
    """A block of preformatted text (e.g. a built context) under an optional title."""

    def __init__(self, body: str, title: str = "") -> None:
        self.body = body
        self.title = title

    def text(self) -> str:
        return f"{self.title}\n{self.body}" if self.title else self.body

    def html(self) -> str:
        head = f'<div class="carnb-h">{esc(self.title)}</div>' if self.title else ""
        return f"{head}<pre>{esc(self.body)}</pre>"


class Table(Renderable):
    """Rows under named columns; ``title`` above, ``empty`` shown when there are no rows."""

    def __init__(
        self,
        columns: Sequence[str],
        rows: Iterable[Sequence[Any]],
        *,
        title: str = "",
        empty: str = "(none)",
        width: int = 120,
    ) -> None:
        self.columns = list(columns)
        self.rows = [list(r) for r in rows]
        self.title = title
        self.empty = empty
        self.width = width

    def __len__(self) -> int:
        return len(self.rows)

    def text(self) -> str:
        lines = [self.title] if self.title else []
        if not self.rows:
            return "\n".join([*lines, self.empty])
        cells = [[cell_text(v, self.width) for v in r] for r in self.rows]
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(self.columns)]

        def fmt(values: Sequence[str]) -> str:
            return "  ".join(f"{v:<{w}}" for v, w in zip(values, widths, strict=True)).rstrip()

        lines.append(fmt(self.columns))
        lines += [fmt(r) for r in cells]
        return "\n".join(lines)

    def html(self) -> str:
        head = f'<div class="carnb-h">{esc(self.title)}</div>' if self.title else ""
        if not self.rows:
            return f"{head}<div><i>{esc(self.empty)}</i></div>"
        th = "".join(f"<th>{esc(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{esc(cell_text(v, self.width))}</td>" for v in r) + "</tr>"
            for r in self.rows
        )
        return f"{head}<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


class KeyValues(Table):
    """A two-column table of named values."""

    def __init__(
        self, pairs: Mapping[str, Any] | Iterable[tuple[str, Any]], *, title: str = ""
    ) -> None:
        items = pairs.items() if isinstance(pairs, Mapping) else pairs
        super().__init__(["", ""], items, title=title)

    def text(self) -> str:
        lines = [self.title] if self.title else []
        width = max((len(str(k)) for k, _ in self.rows), default=0)
        lines += [f"{str(k):<{width}}  {cell_text(v, self.width)}" for k, v in self.rows]
        return "\n".join(lines)

    def html(self) -> str:
        head = f'<div class="carnb-h">{esc(self.title)}</div>' if self.title else ""
        body = "".join(
            f"<tr><th>{esc(k)}</th><td>{esc(cell_text(v, self.width))}</td></tr>"
            for k, v in self.rows
        )
        return f"{head}<table><tbody>{body}</tbody></table>"


class EnvLines(Renderable):
    """``export NAME=value`` lines a client process needs; tokens masked unless asked.

    ``.env`` holds the real values: pass it to ``subprocess`` (``env={**os.environ,
    **info.env}``); it is never part of the rendered output unless ``show_tokens``.
    """

    def __init__(
        self, env: Mapping[str, str], *, show_tokens: bool = False, title: str = "", hint: str = ""
    ) -> None:
        self.env = dict(env)
        self.show_tokens = show_tokens
        self.title = title
        self.hint = hint

    def lines(self) -> list[str]:
        out = []
        for name, value in self.env.items():
            shown = value if (self.show_tokens or name not in SECRET_NAMES) else MASK
            out.append(f"export {name}={shown}")
        return out

    def masked(self) -> bool:
        return not self.show_tokens and any(n in SECRET_NAMES for n in self.env)

    def _note(self) -> str:
        return self.hint if self.masked() else ""

    def text(self) -> str:
        parts = [self.title] if self.title else []
        parts += self.lines()
        if self._note():
            parts.append(self._note())
        return "\n".join(parts)

    def html(self) -> str:
        head = f'<div class="carnb-h">{esc(self.title)}</div>' if self.title else ""
        note = f"<div><i>{esc(self._note())}</i></div>" if self._note() else ""
        return f"{head}<pre>{esc(chr(10).join(self.lines()))}</pre>{note}"


class Image(Renderable):
    """A PNG shown inline (``image/png`` in the bundle, an ``<img>`` in HTML)."""

    def __init__(
        self,
        png_base64: str,
        *,
        width: int | None = None,
        height: int | None = None,
        caption: str = "",
    ) -> None:
        self.png_base64 = png_base64
        self.width = width
        self.height = height
        self.caption = caption

    @property
    def png(self) -> bytes:
        return base64.b64decode(self.png_base64)

    def text(self) -> str:
        size = f" {self.width}x{self.height}" if self.width and self.height else ""
        return f"[screenshot{size} PNG{(': ' + self.caption) if self.caption else ''}]"

    def html(self) -> str:
        cap = f"<div>{esc(self.caption)}</div>" if self.caption else ""
        return (
            f'{cap}<img class="carnb-shot" style="max-width:100%;border:1px solid #ccc" '
            f'src="data:image/png;base64,{esc(self.png_base64)}"/>'
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        bundle = super()._repr_mimebundle_(include, exclude)
        bundle["image/png"] = self.png_base64
        return bundle


class Sections(Renderable):
    """Several results shown one after another."""

    def __init__(self, *parts: Renderable | None) -> None:
        self.parts = [p for p in parts if p is not None]

    def __getitem__(self, i: int) -> Renderable:
        return self.parts[i]

    def text(self) -> str:
        return "\n\n".join(p.text() for p in self.parts)

    def html(self) -> str:
        return "".join(f"<div style='margin-bottom:6px'>{p.html()}</div>" for p in self.parts)


class Raw(Renderable):
    """Wrap an object that already renders itself (e.g. a trace view) with a value."""

    def __init__(self, view: Any, value: Any = None) -> None:
        self.view = view
        self.value = value

    def text(self) -> str:
        return str(self.view)

    def html(self) -> str:
        fn = getattr(self.view, "_repr_html_", None)
        return fn() if callable(fn) else f"<pre>{esc(str(self.view))}</pre>"

"""Result objects the magics return: each renders itself as HTML with a plain-text fallback.

Every value that reaches HTML goes through :func:`html.escape`. Nothing here holds a token in
what it renders: :class:`EnvLines` keeps the real values in ``.env`` for code (``info.env``) and
masks token values in its output unless it was made with ``show_tokens=True``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from carnb.kernel.style import (
    Cell,
    cell_text,
    code_spans,
    esc,
    kv_html,
    note_html,
    page,
    table_html,
    title_html,
)

__all__ = ["Cell", "cell_text", "esc"]

SECRET_NAMES = ("CAR_AUTH_TOKEN", "CAR_AGENT_TOKEN")
MASK = "********"


class Renderable:
    """Base: subclasses implement :meth:`text` and :meth:`html`."""

    def text(self) -> str:
        raise NotImplementedError

    def html(self) -> str:
        raise NotImplementedError

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {
            "text/plain": self.text(),
            "text/html": page(self.html()),
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
        return f"<div>{code_spans(self.message)}</div>"


class Pre(Renderable):
    """A block of preformatted text (e.g. a built context) under an optional title."""

    def __init__(self, body: str, title: str = "") -> None:
        self.body = body
        self.title = title

    def text(self) -> str:
        return f"{self.title}\n{self.body}" if self.title else self.body

    def html(self) -> str:
        return f"{title_html(self.title)}<pre>{esc(self.body)}</pre>"


class Table(Renderable):
    """Rows under named columns; ``title`` above, ``empty`` shown when there are no rows.

    A value may be a :class:`~carnb.kernel.style.Cell` (e.g. ``style.short_id(run_id)``) to
    render differently in HTML and text; ``row_classes`` gives rows a class (``carnb-ended``)."""

    def __init__(
        self,
        columns: Sequence[str],
        rows: Iterable[Sequence[Any]],
        *,
        title: str = "",
        empty: str = "(none)",
        width: int = 120,
        row_classes: Sequence[str] | None = None,
    ) -> None:
        self.columns = list(columns)
        self.rows = [list(r) for r in rows]
        self.title = title
        self.empty = empty
        self.width = width
        self.row_classes = list(row_classes or [])

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
        return table_html(
            self.columns,
            self.rows,
            title=self.title,
            empty=self.empty,
            width=self.width,
            row_classes=self.row_classes,
        )


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
        return kv_html([(str(k), v) for k, v in self.rows], title=self.title, width=self.width)


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
        body = esc(chr(10).join(self.lines()))
        return f"{title_html(self.title)}<pre>{body}</pre>{note_html(self._note())}"


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
        size = f"{self.width}×{self.height} px, " if self.width and self.height else ""
        return (
            f"{note_html(self.caption)}"
            f'<img class="carnb-shot" alt="screenshot" title="{size}click for full size" '
            'style="max-width:min(960px,100%)" '
            "onclick=\"this.style.maxWidth=this.style.maxWidth=='none'?'min(960px,100%)':'none'\" "
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
        return "".join(f'<div class="carnb-part">{p.html()}</div>' for p in self.parts)


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

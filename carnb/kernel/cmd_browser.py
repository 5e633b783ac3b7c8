"""``%car browser open|observe|click|type|key|scroll|screenshot|close`` and ``%%car browser``.

Each command is one ``browser.run`` on the notebook session's slot (launched by the first
command, reused by every later cell, so ``el_N`` ids from one cell work in the next). Actions are
followed by an ``observe`` unless ``--quiet``, so the new page and its element ids are shown. A
failing step of a single command is a one-line error; a ``%%car browser`` script shows its whole
trace, failed step included.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from carnb.kernel.browser_view import Observation, friendly_error, page_url, plural, url_problem
from carnb.kernel.calls import CarCommandError
from carnb.kernel.cellrun import Cell
from carnb.kernel.render import Image, Message, Renderable, Sections, Table

if TYPE_CHECKING:
    from carnb.kernel.engine import NotebookEngine

RUN_TIMEOUT = 300.0


class BrowserResult(Sections):
    """The trace of one ``browser.run``: steps, the last observation, the last screenshot.

    ``.steps`` is the raw trace, ``.observation`` the last observe data (or None), ``.elements``
    the ``[el_N] role "name"`` lines of that observation.
    """

    def __init__(self, steps: list[dict[str, Any]], *, show_steps: bool = True) -> None:
        self.steps = steps
        self.observation: dict[str, Any] | None = None
        self.screenshot: Image | None = None
        for step in steps:
            data = step.get("data")
            if step.get("status") != "ok" or not isinstance(data, dict):
                continue
            if step.get("op") == "observe":
                self.observation = data
            elif step.get("op") == "screenshot" and isinstance(data.get("base64"), str):
                self.screenshot = Image(
                    data["base64"], width=data.get("width"), height=data.get("height")
                )
        parts: list[Renderable | None] = []
        if show_steps:
            parts.append(
                Table(
                    ["op", "status", "ms", "detail"],
                    [
                        [
                            s.get("op"),
                            s.get("status"),
                            s.get("duration_ms"),
                            friendly_error(str(s["error"])) if s.get("error") else _detail(s),
                        ]
                        for s in steps
                    ],
                    title="browser steps",
                    width=100,
                )
            )
        obs = self.observation
        if obs is not None:
            parts.append(Observation(obs))
        parts.append(self.screenshot)
        super().__init__(*parts)

    @property
    def elements(self) -> list[str]:
        summary = str((self.observation or {}).get("summary") or "")
        return [ln.strip() for ln in summary.splitlines() if ln.strip().startswith("[el_")]

    def failed(self) -> dict[str, Any] | None:
        return next((s for s in self.steps if s.get("status") != "ok"), None)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        bundle = super()._repr_mimebundle_(include, exclude)
        if self.screenshot is not None and len(self.parts) == 1:
            bundle["image/png"] = self.screenshot.png_base64
        return bundle


def _detail(step: dict[str, Any]) -> str:
    data = step.get("data")
    if not isinstance(data, dict):
        return ""
    if step.get("op") == "screenshot":
        return f"{data.get('width')}x{data.get('height')} PNG"
    if step.get("op") == "observe":
        return f"{plural(data.get('element_count'), 'element')} on {page_url(data.get('url'))}"
    return json.dumps({k: v for k, v in data.items() if k != "base64"}, default=str)[:100]


def _run(
    nb: NotebookEngine,
    ops: list[dict[str, Any]],
    what: str,
    *,
    viewport: dict[str, int] | None = None,
    strict: bool = True,
    show_steps: bool = False,
) -> BrowserResult:
    params: dict[str, Any] = {"script": {"operations": ops}, **(viewport or {})}
    try:
        reply = nb.calls.call("browser.run", params, what=what, timeout=RUN_TIMEOUT)
    except CarCommandError as exc:
        raise CarCommandError(friendly_error(exc.message)) from None
    steps = list(reply.get("steps") or []) if isinstance(reply, dict) else []
    result = BrowserResult(steps, show_steps=show_steps)
    bad = result.failed()
    if strict and bad is not None:
        raise CarCommandError(
            f"{what}: step {bad.get('op')} failed: {friendly_error(str(bad.get('error')))}"
        )
    return result


def _observe_ops(args: argparse.Namespace) -> list[dict[str, Any]]:
    ops: list[dict[str, Any]] = [{"op": "observe"}]
    if getattr(args, "screenshot", False):
        ops.append({"op": "screenshot"})
    return ops


def _then_observe(args: argparse.Namespace) -> list[dict[str, Any]]:
    return [] if args.quiet else [{"op": "observe"}]


def open_(nb: NotebookEngine, args: argparse.Namespace) -> BrowserResult:
    problem = url_problem(args.url)
    if problem is not None:
        raise CarCommandError(f"%car browser open: {problem}")
    return _run(nb, [{"op": "navigate", "url": args.url}, *_observe_ops(args)], "%car browser open")


def observe(nb: NotebookEngine, args: argparse.Namespace) -> BrowserResult:
    return _run(nb, _observe_ops(args), "%car browser observe")


def click(nb: NotebookEngine, args: argparse.Namespace) -> BrowserResult:
    return _run(
        nb,
        [{"op": "click", "element_id": args.element_id}, *_then_observe(args)],
        "%car browser click",
        show_steps=args.quiet,
    )


def type_(nb: NotebookEngine, args: argparse.Namespace) -> BrowserResult:
    op = {"op": "type", "element_id": args.element_id, "text": args.text}
    return _run(nb, [op, *_then_observe(args)], "%car browser type", show_steps=args.quiet)


def key(nb: NotebookEngine, args: argparse.Namespace) -> BrowserResult:
    op: dict[str, Any] = {"op": "keypress", "key": args.key}
    if args.modifiers:
        op["modifiers"] = args.modifiers
    return _run(nb, [op, *_then_observe(args)], "%car browser key", show_steps=args.quiet)


def scroll(nb: NotebookEngine, args: argparse.Namespace) -> BrowserResult:
    dy = int(args.delta_y) if float(args.delta_y).is_integer() else args.delta_y
    return _run(
        nb,
        [{"op": "scroll", "delta_y": dy}, *_then_observe(args)],
        "%car browser scroll",
        show_steps=args.quiet,
    )


def screenshot(nb: NotebookEngine, args: argparse.Namespace) -> BrowserResult:
    op: dict[str, Any] = {"op": "screenshot"}
    if args.full_page:
        op["full_page"] = True
    return _run(nb, [op], "%car browser screenshot")


def close(nb: NotebookEngine, args: argparse.Namespace) -> Message:
    reply = nb.calls.call("browser.close", {}, what="%car browser close")
    closed = isinstance(reply, dict) and reply.get("closed")
    return Message(
        "browser slot closed; the next command relaunches it"
        if closed
        else "the browser slot was not open"
    )


def script(nb: NotebookEngine, args: argparse.Namespace, cell: Cell) -> BrowserResult:
    """``%%car browser``: the cell is a JSON script ``{"operations": [...]}`` (or a bare list)."""
    try:
        doc = json.loads(cell.source)
    except ValueError as exc:
        raise CarCommandError(f"%%car browser: the cell is not JSON: {exc}") from None
    if isinstance(doc, list):
        doc = {"operations": doc}
    if not isinstance(doc, dict) or not isinstance(doc.get("operations"), list):
        raise CarCommandError(
            '%%car browser: the cell must be {"operations": [{"op": "navigate", "url": ...}, ...]}'
        )
    viewport = {k: v for k, v in (("width", args.width), ("height", args.height)) if v}
    return _run(
        nb, doc["operations"], "%%car browser", viewport=viewport, strict=False, show_steps=True
    )

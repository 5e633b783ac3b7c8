"""The live status panel (ipywidgets 8): the notebook session and every connected session.

Theory of operation. The panel is a view over session snapshots and reads the runtime only
through its view methods (``watch``, ``asnapshots``, ``run_on_host``, ``call_soon``). Only the
host thread writes its widgets: ``runtime.watch`` calls the panel on the host loop whenever a
session changes, attaches or detaches, and all the panel does then is schedule a refresh.
Refreshes are throttled (at most one per ``interval``; a burst of changes makes one refresh).
Fact counts and run turn counts come with the snapshots (``Runtime.asnapshots`` fills a count a
session does not know yet without blocking the host loop). Because the host thread owns the
updates,
the panel moves while a cell is busy. The kernel thread only waits for a refresh to happen
(:meth:`StatusPanel.flush`, after each cell), so the final state of a cell is sent while that
cell is still the parent message (nbclient stores it). Snapshots never contain tokens, so the
panel cannot show one.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from typing import TYPE_CHECKING, Any

from carnb.kernel.render import Table, esc

if TYPE_CHECKING:
    from collections.abc import Callable

    from carnb.kernel.view import RuntimeView

log = logging.getLogger("carnb.kernel.panel")

COLUMNS = (
    "session",
    "kind",
    "auth",
    "host",
    "agent",
    "namespace",
    "graph",
    "facts",
    "run",
    "turns",
    "browser",
)
CSS = (
    "<style>.carnb-panel table{border-collapse:collapse;font-size:12px}"
    ".carnb-panel td,.carnb-panel th{border:1px solid #ccc;padding:1px 6px;text-align:left}"
    ".carnb-panel th{background:#f3f3f3}.carnb-panel .carnb-me td{background:#eef6ff}"
    ".carnb-panel .carnb-title{font-weight:bold;margin-bottom:2px}</style>"
)


def browser_text(snap: dict[str, Any]) -> str:
    state = snap.get("browser_state") or "not launched"
    url = snap.get("browser_url")
    return f"{state}: {url}" if url and state == "launched" else state


class StatusPanel:
    """One panel per runtime; ``%car status`` shows the same widget again."""

    def __init__(self, runtime: RuntimeView, *, interval: float = 0.1) -> None:
        import ipywidgets as w  # type: ignore[import-untyped]

        self.runtime = runtime
        self.interval = interval
        self.title = w.HTML()
        self.mine = w.HTML()
        self.others = w.HTML()
        self.widget = w.VBox([self.title, self.mine, self.others])
        self.widget.add_class("carnb-panel")
        self._unwatch: Callable[[], None] | None = None
        self._pending: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Future[None]] = set()
        self._last = 0.0
        self._closed = False
        self.refreshes = 0
        self.rows: list[dict[str, Any]] = []

    # -- lifecycle (kernel thread) ----------------------------------------------------------
    def start(self) -> StatusPanel:
        self.runtime.run_on_host(self._astart(), timeout=30)
        return self

    def flush(self, timeout: float = 10) -> None:
        """Refresh now on the host thread and wait for it (called after each cell)."""
        if self._closed or not self.runtime.running:
            return
        self.runtime.run_on_host(self.aflush(), timeout=timeout)

    def close(self) -> None:
        """Detach every listener and close the widgets (idempotent)."""
        if self._closed:
            return
        if self.runtime.running:
            try:
                self.runtime.run_on_host(self._aclose(), timeout=10)
            except Exception:
                log.exception("closing the status panel on the host thread failed")
        self._closed = True
        self._stop_watching()
        for widget in (self.title, self.mine, self.others, self.widget):
            widget.close()

    def _repr_mimebundle_(self, **kw: Any) -> Any:
        bundle = self.widget._repr_mimebundle_(**kw)
        if isinstance(bundle, dict):
            bundle["text/plain"] = panel_text(self.rows)
        return bundle

    # -- host thread --------------------------------------------------------------------------
    async def _astart(self) -> None:
        self._unwatch = self.runtime.watch(self._schedule)
        await self._arefresh()

    async def aflush(self) -> None:
        """Refresh now (on the host loop), dropping a pending throttled refresh."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        await self._arefresh()

    async def _aclose(self) -> None:
        self._closed = True
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        self._stop_watching()

    def _stop_watching(self) -> None:
        unwatch, self._unwatch = self._unwatch, None
        if unwatch is not None:
            unwatch()

    def _schedule(self) -> None:
        if self._closed or self._pending is not None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, self._last + self.interval - time.monotonic())
        # A fresh context: the update then carries the kernel's *current* parent message (the
        # cell running now), not the one of whichever cell started this chain of callbacks.
        self._pending = loop.call_later(delay, self._fire, context=contextvars.Context())

    def _fire(self) -> None:
        self._pending = None
        task = asyncio.ensure_future(self._arefresh())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- rendering (host thread) --------------------------------------------------------------
    async def collect(self) -> list[dict[str, Any]]:
        me = self.runtime.notebook().get("client_id")
        rows = await self.runtime.asnapshots()
        for row in rows:
            row["me"] = row["client_id"] == me
        rows.sort(key=lambda r: (not r["me"], r["connected_at"]))
        return rows

    async def _arefresh(self) -> None:
        if self._closed:
            return
        rows = await self.collect()
        if self._closed:
            return
        self.rows = rows
        self._last = time.monotonic()
        self.refreshes += 1
        title, mine, others = render(self.runtime, rows)
        # Trait assignments send an update only when the value changed.
        self.title.value = title
        self.mine.value = mine
        self.others.value = others


def _flag(value: Any) -> str:
    return "yes" if value else "no"


def _num(value: Any) -> str:
    return "" if value is None else str(value)


def _turns(r: dict[str, Any]) -> str:
    return _num(r.get("run_turns")) if r.get("current_run_id") else ""


def _cells(r: dict[str, Any]) -> list[str]:
    return [
        r["client_id"],
        r["kind"],
        _flag(r["authenticated"]),
        _flag(r["is_host"]),
        r.get("agent_id") or "",
        r.get("memory_namespace") or "",
        r.get("graph") or "",
        _num(r.get("fact_count")),
        r.get("current_run_id") or "",
        _turns(r),
        browser_text(r),
    ]


def render(runtime: RuntimeView, rows: list[dict[str, Any]]) -> tuple[str, str, str]:
    """(title, notebook session, all sessions) HTML; every value escaped."""
    try:
        url = runtime.url
    except Exception:
        url = "(stopped)"
    title = (
        f'{CSS}<div class="carnb-title">carnb · {esc(url)} · '
        f'<span class="carnb-count">{len(rows)}</span> session(s)</div>'
    )
    me = next((r for r in rows if r["me"]), None)
    if me is None:
        mine = "<div><i>the notebook session is closed</i></div>"
    else:
        items = [
            ("authenticated", _flag(me["authenticated"])),
            ("host", _flag(me["is_host"])),
            ("agent", me.get("agent_id") or "(none)"),
            ("namespace", me.get("memory_namespace") or "(none)"),
            ("graph", me.get("graph") or ""),
            ("facts", _num(me.get("fact_count"))),
            ("run", me.get("current_run_id") or "(none)"),
            ("turns", _turns(me)),
            ("browser", browser_text(me)),
        ]
        cells = "".join(
            f'<td class="carnb-{esc(k)}" data-{esc(k)}="{esc(v)}"><b>{esc(k)}</b> {esc(v)}</td>'
            for k, v in items
        )
        mine = f'<table class="carnb-notebook"><tr>{cells}</tr></table>'
    head = "".join(f"<th>{esc(c)}</th>" for c in COLUMNS)
    body = "".join(
        f'<tr class="{"carnb-me" if r["me"] else ""}" data-session="{esc(r["client_id"])}">'
        + "".join(f"<td>{esc(c)}</td>" for c in _cells(r))
        + "</tr>"
        for r in rows
    )
    others = f'<table class="carnb-sessions"><tr>{head}</tr>{body}</table>'
    return title, mine, others


def panel_text(rows: list[dict[str, Any]]) -> str:
    """Plain-text form of the sessions table (for logs and text-only frontends)."""
    return Table(COLUMNS, [_cells(r) for r in rows], title=f"carnb: {len(rows)} session(s)").text()

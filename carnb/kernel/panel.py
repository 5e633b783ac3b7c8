"""The live status panel (ipywidgets 8): the notebook session and every connected session.

Theory of operation. The panel is a view over session snapshots and reads the runtime only
through its view methods (``watch``, ``asnapshots``, ``run_on_loop``, ``call_soon``). Only the
loop thread writes its widgets: ``runtime.watch`` calls the panel on the server loop whenever a
session changes, attaches or detaches, and all the panel does then is schedule a refresh.
Refreshes are throttled (at most one per ``interval``; a burst of changes makes one refresh).
Fact counts and run turn counts come with the snapshots (``Runtime.asnapshots`` fills a count a
session does not know yet without blocking the server loop). Because the loop thread owns the
updates,
the panel moves while a cell is busy. The kernel thread only waits for a refresh to happen
(:meth:`StatusPanel.flush`, after each cell), so the final state of a cell is sent while that
cell is still the parent message (nbclient stores it). Snapshots never contain tokens, so the
panel cannot show one. A button per run shown opens that run's live trace inside the panel
(:mod:`carnb.kernel.panel_trace`). Forks started while the panel is open are listed under their
parent run, and get a trace button under its button (:mod:`carnb.kernel.panel_forks`).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from carnb.errors import CarnbError
from carnb.kernel.browser_view import page_url
from carnb.kernel.linger import LINGER_SECONDS, EndedRun, Lingering
from carnb.kernel.panel_forks import Fork, PanelForks, forks_html, forks_text, trace_runs
from carnb.kernel.panel_trace import PanelTraces, shown_runs
from carnb.kernel.proposal_progress import ProposalProgress
from carnb.kernel.render import Renderable, Table
from carnb.kernel.render_tools import panel_tools_html, panel_tools_text
from carnb.kernel.style import (
    ROOT,
    STYLESHEET,
    Cell,
    clock,
    esc,
    note_html,
    page,
    short_id,
    table_html,
)

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
    "tokens",
    "cost",
    "browser",
)


def browser_text(snap: dict[str, Any]) -> str:
    state = snap.get("browser_state") or "not launched"
    url = snap.get("browser_url")
    return f"{state}: {page_url(url)}" if url and state == "launched" else state


class StatusPanel:
    """One panel per runtime; ``%car status`` shows the same widget again."""

    def __init__(
        self, runtime: RuntimeView, *, interval: float = 0.1, linger: float = LINGER_SECONDS
    ) -> None:
        import ipywidgets as w  # type: ignore[import-untyped]

        self.runtime = runtime
        self.interval = interval
        self.title = w.HTML()
        self.mine = w.HTML()
        self.others = w.HTML()
        self.tools = w.HTML()  # tools and proposals, below the sessions
        self.lineage = w.HTML()  # forks under their parent run
        self.forks = PanelForks(linger)
        self.traces = PanelTraces(runtime)  # a button per run shown: its live trace
        self.widget = w.VBox(
            [
                self.title,
                self.mine,
                self.others,
                self.lineage,
                self.traces.pick,
                self.traces.box,
                self.tools,
            ]
        )
        self.widget.add_class("carnb-panel")
        self.widget.add_class(ROOT)
        self._unwatch: Callable[[], None] | None = None
        self._unwatch_proposals: Callable[[], None] | None = None
        self._unwatch_intents: Callable[[], None] | None = None
        self._unwatch_runs: Callable[[], None] | None = None
        self.waiting: set[str] = set()  # intents parked at the gate, waiting for a decision
        self.proposals = ProposalProgress()
        self._pending: asyncio.TimerHandle | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self.lingering = Lingering(linger)
        self._tasks: set[asyncio.Future[None]] = set()
        self._last = 0.0
        self._closed = False
        self.refreshes = 0
        self.rows: list[dict[str, Any]] = []
        self.ended: list[dict[str, Any]] = []
        self.display_id = uuid.uuid4().hex  # every output showing the panel carries it
        self._displayed = False

    # -- lifecycle (kernel thread) ----------------------------------------------------------
    def start(self) -> StatusPanel:
        self.runtime.run_on_loop(self._astart(), timeout=30)
        return self

    def flush(self, timeout: float = 10) -> None:
        """Refresh now on the loop thread and wait for it (called after each cell)."""
        if self._closed or not self.runtime.running:
            return
        self.runtime.run_on_loop(self.aflush(), timeout=timeout)

    def close(self) -> None:
        """Detach every listener and close the widgets (idempotent). Every output that showed
        the panel becomes its last state as static HTML first: a closed widget shows nothing,
        in the notebook and in the saved file."""
        if self._closed:
            return
        if self._displayed:
            try:
                self._leave_last_state()
            except Exception:
                log.exception("replacing the panel's outputs with its last state failed")
        if self.runtime.running:
            try:
                self.runtime.run_on_loop(self._aclose(), timeout=10)
            except Exception:
                log.exception("closing the status panel on the loop thread failed")
        self._closed = True
        self._stop_watching()
        self.traces.close()
        for widget in (self.title, self.mine, self.others, self.lineage, self.tools, self.widget):
            widget.close()

    def snapshot(self) -> PanelSnapshot:
        """The panel as it is now, as static HTML that never changes."""
        return PanelSnapshot(
            self._url(),
            list(self.rows),
            list(self.ended),
            clock(time.time()),
            forks=self.forks.shown(),
        )

    def _url(self) -> str:
        try:
            return self.runtime.url
        except Exception:
            return "(stopped)"

    def _ipython_display_(self) -> None:
        """IPython shows the panel through this: as display data with :attr:`display_id`, so
        :meth:`close` can replace every copy of it with the last state."""
        from IPython.display import display

        display(self._repr_mimebundle_(), raw=True, display_id=self.display_id)  # type: ignore[no-untyped-call]
        self._displayed = True

    def _leave_last_state(self) -> None:
        from IPython.display import update_display

        last = PanelSnapshot(
            f"{self._url()} (stopped)",
            list(self.rows),
            list(self.ended),
            clock(time.time()),
            forks=self.forks.shown(),
        )
        bundle = {
            "text/plain": last.text(),
            "text/html": page(last.html(), cls="carnb-panel-static"),
        }
        update_display(bundle, raw=True, display_id=self.display_id)  # type: ignore[no-untyped-call]

    def _repr_mimebundle_(self, **kw: Any) -> Any:
        """The widget, with the panel as it is now as static HTML beside it: what a saved
        notebook shows when no kernel holds the widget (untrusted notebooks, nbconvert)."""
        bundle = self.widget._repr_mimebundle_(**kw)
        if isinstance(bundle, dict):
            bundle["text/plain"] = panel_text(self.rows, self.ended)
            bundle["text/html"] = page(self.snapshot().html(), cls="carnb-panel-static")
        return bundle

    # -- loop thread --------------------------------------------------------------------------
    async def _astart(self) -> None:
        self._unwatch = self.runtime.watch(self._schedule)
        self._unwatch_proposals = self.runtime.watch_proposals(self._on_proposal_event)
        self._unwatch_intents = self.runtime.watch_intents(self._on_intent)
        try:
            self._unwatch_runs = self.runtime.watch_runs(self._on_run_record)
        except CarnbError:  # run tracing is off: no forks either
            self._unwatch_runs = None
        await self._arefresh()

    def _on_run_record(self, event: dict[str, Any]) -> None:
        """A run record was committed (server loop): a fork started, moved or ended."""
        if self.forks.note(event):
            self._schedule()

    def _on_intent(self, intent: dict[str, Any]) -> None:
        """A proposal was parked at the gate, decided or released (server loop)."""
        if intent["outcome"] is None and not intent["released"]:
            self.waiting.add(intent["id"])
        else:
            self.waiting.discard(intent["id"])
        self._schedule()

    def _on_proposal_event(self, event: dict[str, Any]) -> None:
        """An action of some session's proposal started or finished (server loop)."""
        self.proposals.on_event(event)
        self._schedule()

    async def aflush(self) -> None:
        """Refresh now (on the server loop), dropping a pending throttled refresh."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        await self._arefresh()
        await self.traces.aflush()

    async def _aclose(self) -> None:
        self._closed = True
        for handle in (self._pending, self._expiry):
            if handle is not None:
                handle.cancel()
        self._pending = self._expiry = None
        self._stop_watching()

    def _stop_watching(self) -> None:
        unwatch, self._unwatch = self._unwatch, None
        if unwatch is not None:
            unwatch()
        unwatch, self._unwatch_proposals = self._unwatch_proposals, None
        if unwatch is not None:
            unwatch()
        unwatch, self._unwatch_intents = self._unwatch_intents, None
        if unwatch is not None:
            unwatch()
        unwatch, self._unwatch_runs = self._unwatch_runs, None
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

    def _refresh_at_expiry(self) -> None:
        """Refresh again when the next ended session or run is due to disappear."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        delays = [
            d for d in (self.lingering.next_expiry(), self.forks.next_expiry()) if d is not None
        ]
        delay = min(delays) if delays else None
        if delay is not None:
            loop = asyncio.get_running_loop()
            self._expiry = loop.call_later(delay + 0.05, self._schedule)

    def _fire(self) -> None:
        self._pending = None
        task = asyncio.ensure_future(self._arefresh())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle_ended_runs(self) -> bool:
        """Read the final turn count of each run that ended since the last refresh (the last
        snapshot may predate its last turns); whether there was one."""
        runs = self.lingering.unsettled()
        for run in runs:
            turns = run.turns
            try:
                reply = await self.runtime.acall(
                    "runs.list", {"agent_id": run.agent_id or "", "limit": 20}
                )
                found = next(
                    (r for r in reply.get("runs") or [] if r.get("run_id") == run.run_id), None
                )
                if found is not None:
                    turns = found.get("turn_count")
            except Exception as exc:  # the panel shows what it has
                log.debug("no final turn count for %s: %s", run.run_id, exc)
            self.lingering.settle(run.run_id, turns)
        return bool(runs)

    # -- rendering (loop thread) --------------------------------------------------------------
    async def collect(self) -> list[dict[str, Any]]:
        me = self.runtime.notebook().get("client_id")
        rows = await self.runtime.asnapshots()
        for row in rows:
            row["me"] = row["client_id"] == me
            row["proposal"] = self.proposals.of(row["client_id"])
        rows.sort(key=lambda r: (not r["me"], r["connected_at"]))
        return rows

    async def _arefresh(self) -> None:
        if self._closed:
            return
        rows = await self.collect()
        if self._closed:
            return
        ended = self.lingering.update(rows)
        if await self._settle_ended_runs():  # again (idempotent): the rows get the final counts
            ended = self.lingering.update(rows)
        for row in ended:  # its tools went with the session; its last proposal stays shown
            row["tools"] = []
            row["proposal"] = self.proposals.of(row["client_id"])
        self.proposals.forget_except({r["client_id"] for r in rows + ended})
        if self._closed:
            return
        self.ended = ended
        self.rows = rows
        self._last = time.monotonic()
        self.refreshes += 1
        self._refresh_at_expiry()
        title, mine, others = render(self._url(), rows, self.ended)
        # Trait assignments send an update only when the value changed.
        # the widget's root has the style's class
        self.title.value = STYLESHEET + title + waiting_html(len(self.waiting))
        self.mine.value = mine
        self.others.value = others
        self.tools.value = panel_tools_html(rows + ended)
        runs, forks = shown_runs(rows, self.ended), self.forks.shown()
        self.lineage.value = forks_html(runs, forks)
        self.traces.show_runs(trace_runs(runs, forks))


def _turns(r: dict[str, Any]) -> Any:
    return r.get("run_turns") if r.get("current_run_id") else None


def _any_turns(r: dict[str, Any]) -> Any:
    """The current run's turns, else those of the run that ended lately."""
    ended: EndedRun | None = r.get("ended_run")
    return _turns(r) if r.get("current_run_id") or ended is None else ended.turns


def _usage(r: dict[str, Any]) -> Any:
    """The current run's usage, else that of the run that ended lately."""
    if r.get("current_run_id"):
        return r.get("run_usage")
    ended: EndedRun | None = r.get("ended_run")
    return ended.usage if ended is not None else None


def _tokens(usage: Any) -> str:
    return "" if not usage else f"{usage['tokens_in']:,} in / {usage['tokens_out']:,} out"


def _cost(usage: Any) -> str:
    """USD, and how many calls the price table did not price (unpriced is not free)."""
    if not usage:
        return ""
    text = f"${usage['cost_usd']:.4f}" if usage["calls"] > usage["unpriced_calls"] else ""
    if usage["unpriced_calls"]:
        text += f"{' + ' if text else ''}{usage['unpriced_calls']} unpriced"
    return text


def _run_cell(r: dict[str, Any]) -> Cell:
    """The current run, or the run that ended lately (greyed), or nothing."""
    if r.get("current_run_id"):
        return short_id(r["current_run_id"])
    ended: EndedRun | None = r.get("ended_run")
    if ended is None:
        return Cell("", "")
    rid = short_id(ended.run_id)
    return Cell(
        f"{ended.run_id} (ended {clock(ended.ended_at)})",
        f'<span class="carnb-muted">{rid.html} ended {clock(ended.ended_at)}</span>',
    )


def _session_cell(r: dict[str, Any]) -> Cell:
    sid = short_id(r["client_id"])
    if "ended_at" not in r:
        return sid
    at = clock(r["ended_at"])
    return Cell(f"{sid.text} (ended {at})", f"{sid.html} <i>ended {at}</i>")


def _cells(r: dict[str, Any]) -> list[Any]:
    return [
        _session_cell(r),
        r["kind"],
        bool(r["authenticated"]),
        bool(r["is_host"]),
        r.get("agent_id") or "",
        r.get("memory_namespace") or "",
        r.get("graph") or "",
        r.get("fact_count"),
        _run_cell(r),
        _any_turns(r),
        _tokens(_usage(r)),
        _cost(_usage(r)),
        browser_text(r),
    ]


def _mine(me: dict[str, Any] | None) -> str:
    """The notebook session in one row: each cell names its value in ``data-NAME``."""
    if me is None:
        return note_html("the notebook session is closed")
    items = [
        ("authenticated", _flag(me["authenticated"])),
        ("host", _flag(me["is_host"])),
        ("agent", me.get("agent_id") or "(none)"),
        ("namespace", me.get("memory_namespace") or "(none)"),
        ("graph", me.get("graph") or ""),
        ("facts", _num(me.get("fact_count"))),
        ("run", me.get("current_run_id") or "(none)"),
        ("turns", _num(_any_turns(me)) or "(none)"),
        ("tokens", _tokens(_usage(me)) or "(none)"),
        ("cost", _cost(_usage(me)) or "(none)"),
        ("browser", browser_text(me)),
    ]
    run = _run_cell(me).html or esc("(none)")
    cells = "".join(
        f'<td class="carnb-{k}" data-{k}="{esc(v)}"><span class="carnb-label">{k}</span> '
        f"{run if k == 'run' else esc(v)}</td>"
        for k, v in items
    )
    return f'<table class="carnb-notebook"><tbody><tr>{cells}</tr></tbody></table>'


def _flag(value: Any) -> str:
    return "yes" if value else "no"


def _num(value: Any) -> str:
    return "" if value is None else str(value)


def render(
    url: str, rows: list[dict[str, Any]], ended: list[dict[str, Any]], *, moment: str = ""
) -> tuple[str, str, str]:
    """(title, notebook session, all sessions) HTML; every value escaped. ``moment`` names a
    snapshot's time in the title."""
    gone = f" · {len(ended)} ended" if ended else ""
    at = f" · snapshot at {esc(moment)}" if moment else ""
    title = (
        f'<div class="carnb-title carnb-h">carnb · {esc(url)} · '
        f'<span class="carnb-count">{len(rows)}</span> session(s){gone}{at}</div>'
    )
    me = next((r for r in rows if r["me"]), None)
    shown = rows + ended
    classes = ["carnb-me" if r["me"] else "carnb-ended" if "ended_at" in r else "" for r in shown]
    others = table_html(
        COLUMNS,
        [_cells(r) for r in shown],
        cls="carnb-sessions",
        row_classes=classes,
        empty="no session",
    )
    return title, _mine(me), others


def waiting_html(count: int) -> str:
    """How many proposals wait for a decision at the gate (nothing when none)."""
    if not count:
        return ""
    return (
        f'<div class="carnb-waiting"><span class="carnb-count">{count}</span> decision(s) '
        "waiting: <code>%car supervise</code> shows them</div>"
    )


def panel_text(rows: list[dict[str, Any]], ended: list[dict[str, Any]] | None = None) -> str:
    """Plain-text form of the sessions table (for logs and text-only frontends)."""
    shown = rows + (ended or [])
    gone = f", {len(ended)} ended" if ended else ""
    return Table(
        COLUMNS, [_cells(r) for r in shown], title=f"carnb: {len(rows)} session(s){gone}"
    ).text()


class PanelSnapshot(Renderable):
    """The panel at one moment, as static HTML (``%car status --snapshot``); ``.rows`` and
    ``.ended`` hold the sessions it shows."""

    def __init__(
        self,
        url: str,
        rows: list[dict[str, Any]],
        ended: list[dict[str, Any]],
        moment: str = "",
        *,
        forks: list[Fork] | None = None,
    ) -> None:
        self.url = url
        self.rows = rows
        self.ended = ended
        self.moment = moment
        self.forks = forks or []

    def text(self) -> str:
        at = f" (snapshot at {self.moment})" if self.moment else ""
        tools = panel_tools_text(self.rows + self.ended)
        lineage = forks_text(shown_runs(self.rows, self.ended), self.forks)
        text = f"carnb · {self.url}{at}\n" + panel_text(self.rows, self.ended)
        return "\n\n".join(part for part in (text, lineage, tools) if part)

    def html(self) -> str:
        title, mine, others = render(self.url, self.rows, self.ended, moment=self.moment)
        lineage = forks_html(shown_runs(self.rows, self.ended), self.forks)
        tools = panel_tools_html(self.rows + self.ended)
        return f'<div class="carnb-snapshot">{title}{mine}{others}{lineage}{tools}</div>'

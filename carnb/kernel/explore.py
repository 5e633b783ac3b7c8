"""The memory explorer widget: a search box, the fact count and a result table, live as you type.

Typing in the box arrives on the kernel thread (a comm message); the explorer only hands the
query to the loop thread, which runs ``memory.fact_count`` and ``memory.query`` as the notebook's
session and writes the result widgets. A sequence number drops answers to queries that a newer
keystroke superseded, so the table always matches the box. A write to the graph through
another server of a team store (a PostgreSQL notification) searches again, so an edit, pin or
delete made elsewhere shows in the table. With ``superseded=True`` each
result is followed by the older facts it replaced (``memory.history``), struck through. Each
row says who wrote the fact (its provenance) and why it ranked (``memory.query {explain}``).
The edit bar (fact id, subject, body and buttons) adds, edits, deletes, pins, unpins and undoes
through :class:`~carnb.kernel.explore_edits.EditLog`; the same edits are methods for cells.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from carnb.errors import CarnbError
from carnb.kernel.explore_edits import Edit, EditLog, error_html
from carnb.kernel.style import (
    ROOT,
    STYLESHEET,
    Cell,
    cell_text,
    esc,
    note_html,
    page,
    shorten,
    table_html,
    tags_text,
)

if TYPE_CHECKING:
    from carnb.kernel.view import RuntimeView

log = logging.getLogger("carnb.kernel.explore")
T = TypeVar("T")

# as %car memory query, plus who wrote the fact and why it ranked
COLUMNS = ("fact_id", "subject", "body", "kind", "score", "tags", "source", "written by", "why")


def results_html(rows: list[dict[str, Any]], query: str) -> str:
    """The result table, in the same style as ``%car memory query``; superseded facts (shown
    with ``superseded=True``) struck through."""
    if not query.strip():
        return note_html("type to search the facts")
    return table_html(
        COLUMNS,
        [result_cells(r) for r in rows],
        cls="carnb-results",
        width=160,
        empty=f"no fact matches {query}",
        row_classes=["carnb-superseded" if r.get("superseded_by") else "" for r in rows],
    )


def result_cells(r: dict[str, Any]) -> list[Any]:
    values = [
        r.get("fact_id"),
        r.get("subject"),
        r.get("body"),
        r.get("kind"),
        _score(r.get("confidence")),
        tags_text(r.get("tags")),
        r.get("source"),
        provenance_text(r.get("provenance")),
        why(r.get("explain")),
    ]
    if not r.get("superseded_by"):
        return values
    struck = [cell_text(v, 160) for v in values]
    return [Cell(t, f"<s>{esc(t)}</s>" if t else "") for t in struck]


def provenance_text(provenance: Any) -> str:
    """A provenance in a few words: "notebook as agent scout, edited in the notebook", "agent
    alice, run r1 turn 2"."""
    if not isinstance(provenance, dict) or not provenance:
        return ""
    agent = provenance.get("agent_id")
    kind = str(provenance.get("session_kind", ""))
    if kind == "notebook":
        who = f"notebook as agent {agent}" if agent else "notebook"
    else:
        who = f"agent {agent}" if agent else kind
    parts = [who]
    if provenance.get("run_id"):
        parts.append(f"run {shorten(str(provenance['run_id']))} turn {provenance.get('turn', '?')}")
    action = provenance.get("action")
    if action and action != "add":
        parts.append(str(action))
    if provenance.get("loaded_from"):
        parts.append(f"from {provenance['loaded_from']}")
    return ", ".join(p for p in parts if p)


def why(explain: Any) -> str:
    """An explanation in a few words: each matched word with its hit and share, activation,
    recency, constraint, pinned."""
    if not isinstance(explain, dict):
        return ""
    parts = [f"{w['word']} {w['hit']} {w['share']:.2f}" for w in explain.get("words", [])]
    if explain.get("activation", 0) > explain.get("keyword_score", 0):
        parts.append(f"linked {explain['activation']:.2f}")
    parts.append(f"recency +{explain.get('recency', 0):.3f}")
    if explain.get("constraint"):
        parts.append("constraint")
    if explain.get("supersedes"):
        parts.append("replaces " + ", ".join(explain["supersedes"]))
    if not explain.get("in_context"):
        parts.append("below the context's cut")
    return "; ".join(parts)


EVALUATION_MODES = ("selective", "always_inject", "passive_retrieval", "no_memory")
EVALUATION_FIGURES = ("precision", "recall", "interruption_rate", "avg_candidates_exposed")


def evaluation_html(report: dict[str, Any]) -> str:
    """``memory.evaluate``'s report as a table: one row per mode."""
    rows = [
        [mode, *(f"{report[mode][f]:.3f}" for f in EVALUATION_FIGURES)]
        for mode in EVALUATION_MODES
        if mode in report
    ]
    return table_html(
        ("mode", *EVALUATION_FIGURES), rows, cls="carnb-evaluation",
        title=f"intervention selector on {report.get('cases', 0)} case(s)",
    )  # fmt: skip


def _log_failure(fut: Any) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("memory explorer search failed", exc_info=fut.exception())


def _score(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else ""


class MemoryExplorer:
    """Search the notebook session's effective graph; ``.widget`` is what the notebook shows."""

    def __init__(
        self, runtime: RuntimeView, query: str = "", k: int = 10, superseded: bool = False
    ) -> None:
        import ipywidgets as w  # type: ignore[import-untyped]

        self.runtime = runtime
        self.k = k
        self.superseded = superseded
        self.box = w.Text(
            value=query, placeholder="search facts…", description="search", continuous_update=True
        )
        self.status = w.HTML()
        self.results = w.HTML()
        self.edits = EditLog(self.runtime.acall)
        self.fact_box = w.Text(placeholder="fact id", description="fact")
        self.subject_box = w.Text(placeholder="subject (add)", description="subject")
        self.body_box = w.Text(placeholder="body (add, edit)", description="body")
        self.buttons = {
            name: w.Button(description=name) for name in ("add", "edit", "delete", "pin",
                                                          "unpin", "undo")
        }  # fmt: skip
        for name, button in self.buttons.items():
            button.on_click(lambda _b, name=name: self._on_button(name))
        self.history = w.HTML()
        self.evaluation = w.HTML()
        bar = w.VBox([
            w.HBox([self.fact_box, self.subject_box, self.body_box]),
            w.HBox(list(self.buttons.values())),
        ])  # fmt: skip
        self.widget = w.VBox(
            [self.box, self.status, self.results, bar, self.history, self.evaluation]
        )
        self.widget.add_class("carnb-explore")
        self.widget.add_class(ROOT)
        self.status.value = STYLESHEET
        self._seq = 0
        self._closed = False
        self.last_rows: list[dict[str, Any]] = []
        self.box.observe(self._on_change, names="value")
        # another server's write to the graph (a team store) refreshes the table
        self._refresh: asyncio.Task[None] | None = None
        self._stale = False
        self._unwatch = self.runtime.watch_memory(self._on_graph_write)

    def asearch_now(self) -> Coroutine[Any, Any, None]:
        """The search for what the box holds now (to run on the loop thread)."""
        self._seq += 1
        return self._asearch(self.box.value, self._seq)

    def search(self, query: str, timeout: float = 30) -> list[dict[str, Any]]:
        """Set the box to ``query`` and wait for the table (what typing does, synchronously)."""
        self.box.unobserve(self._on_change, names="value")
        try:
            self.box.value = query
        finally:
            self.box.observe(self._on_change, names="value")
        self._seq += 1
        self.runtime.run_on_loop(self._asearch(query, self._seq), timeout=timeout)
        return self.last_rows

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._unwatch()
        self.box.unobserve(self._on_change, names="value")
        for widget in (
            self.box,
            self.status,
            self.results,
            self.fact_box,
            self.subject_box,
            self.body_box,
            self.history,
            self.evaluation,
            *self.buttons.values(),
            self.widget,
        ):
            widget.close()  # fmt: skip

    def _repr_mimebundle_(self, **kw: Any) -> Any:
        bundle = self.widget._repr_mimebundle_(**kw)
        if isinstance(bundle, dict):
            bundle["text/plain"] = f"memory explorer: {len(self.last_rows)} result(s)"
            bundle["text/html"] = page(
                self.status.value + self.results.value + self.history.value + self.evaluation.value,
                cls="carnb-explore-static",
            )
        return bundle

    # kernel thread (a keystroke): hand the query to the loop thread, do not wait
    def _on_change(self, change: dict[str, Any]) -> None:
        if self._closed or not self.runtime.running:
            return
        self._seq += 1
        fut = self.runtime.submit(self._asearch(str(change["new"]), self._seq))
        fut.add_done_callback(_log_failure)

    # loop thread: a write to the graph, maybe through another server; one refresh at a time,
    # and one more when writes arrived meanwhile (a bulk load is one or two searches, not one
    # per batch)
    def _on_graph_write(self) -> None:
        if self._closed:
            return
        if self._refresh is not None and not self._refresh.done():
            self._stale = True
            return
        self._refresh = asyncio.ensure_future(self._refresh_now())
        self._refresh.add_done_callback(_log_failure)

    async def _refresh_now(self) -> None:
        self._stale = True
        while self._stale and not self._closed:
            self._stale = False
            self._seq += 1
            await self._asearch(self.box.value, self._seq)

    # loop thread: query and write the widgets
    async def _asearch(self, query: str, seq: int) -> None:
        try:
            count = await self.runtime.acall("memory.fact_count", {})
            params = {"query": query, "k": self.k, "explain": True}
            rows = await self.runtime.acall("memory.query", params) if query.strip() else []
            if self.superseded:
                rows = await self._with_history(list(rows))
        except CarnbError as exc:
            if seq == self._seq and not self._closed:
                self.status.value = (
                    f'{STYLESHEET}<div class="carnb-error">error: {esc(exc.message)}</div>'
                )
            return
        if seq != self._seq or self._closed:
            return  # a newer keystroke won
        graph = self.runtime.notebook().get("graph", "")
        self.last_rows = list(rows)
        n = len(self.last_rows)
        self.status.value = (
            f'{STYLESHEET}<div class="carnb-explore-status">'
            f'<span class="carnb-facts" data-facts="{esc(count)}">'
            f"{esc(count)} facts</span> in {esc(graph)} · {n} result(s)"
            + (f" for <code>{esc(query)}</code>" if query.strip() else "")
            + "</div>"
        )
        self.results.value = results_html(self.last_rows, query)

    # -- edits (cells call these; the buttons run the same coroutines) -----------------------

    def add(self, subject: str, body: str, timeout: float = 30) -> Edit:
        return self._edit_now(self.edits.add(subject, body), timeout)

    def edit(self, fact_id: str, body: str, timeout: float = 30) -> Edit:
        return self._edit_now(self.edits.edit(fact_id, body), timeout)

    def delete(self, fact_id: str, timeout: float = 30) -> Edit:
        return self._edit_now(self.edits.delete(fact_id), timeout)

    def pin(self, fact_id: str, timeout: float = 30) -> Edit:
        return self._edit_now(self.edits.pin(fact_id, True), timeout)

    def unpin(self, fact_id: str, timeout: float = 30) -> Edit:
        return self._edit_now(self.edits.pin(fact_id, False), timeout)

    def undo(self, timeout: float = 30) -> Edit | None:
        return self._edit_now(self.edits.undo(), timeout)

    def evaluate(self, cases: list[dict[str, Any]], timeout: float = 120) -> dict[str, Any]:
        """``memory.evaluate`` on labelled cases (``[{id, request: {query, ...},
        relevant_fact_ids}]``, StateBench-style: a question and the facts that answer it); the
        table of the selector against its baselines is shown under the edits."""
        report: dict[str, Any] = self.runtime.run_on_loop(
            self.runtime.acall("memory.evaluate", {"cases": cases}), timeout=timeout
        )
        self.evaluation.value = STYLESHEET + evaluation_html(report)
        return report

    def _edit_now(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        result: T = self.runtime.run_on_loop(self._aedit(coro, raise_errors=True), timeout=timeout)
        return result

    # kernel thread (a click): hand the edit to the loop thread, do not wait
    def _on_button(self, name: str) -> None:
        if self._closed or not self.runtime.running:
            return
        fact, subject, body = self.fact_box.value, self.subject_box.value, self.body_box.value
        coro = {
            "add": lambda: self.edits.add(subject, body),
            "edit": lambda: self.edits.edit(fact, body),
            "delete": lambda: self.edits.delete(fact),
            "pin": lambda: self.edits.pin(fact, True),
            "unpin": lambda: self.edits.pin(fact, False),
            "undo": self.edits.undo,
        }[name]()
        self.runtime.submit(self._aedit(coro, raise_errors=False)).add_done_callback(_log_failure)

    # loop thread: the edit, then the history and the results again
    async def _aedit(self, coro: Coroutine[Any, Any, Any], raise_errors: bool) -> Any:
        try:
            result = await coro
        except CarnbError as exc:
            self.history.value = STYLESHEET + error_html(exc.message) + self.edits.html()
            if raise_errors:
                raise
            return None
        self.history.value = STYLESHEET + self.edits.html()
        self._seq += 1
        await self._asearch(self.box.value, self._seq)
        return result

    async def _with_history(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each row followed by the facts it superseded, newest first (loop thread)."""
        out: list[dict[str, Any]] = []
        for row in rows:
            out.append(row)
            chain = await self.runtime.acall("memory.history", {"fact_id": row["fact_id"]})
            out += [old for old in chain if old.get("superseded_by")]
        return out

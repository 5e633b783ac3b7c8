"""The memory explorer widget: a search box, the fact count and a result table, live as you type.

Typing in the box arrives on the kernel thread (a comm message); the explorer only hands the
query to the host thread, which runs ``memory.fact_count`` and ``memory.query`` as the notebook's
session and writes the result widgets. A sequence number drops answers to queries that a newer
keystroke superseded, so the table always matches the box. With ``superseded=True`` each
result is followed by the older facts it replaced (``memory.history``), struck through.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from carnb.errors import CarnbError
from carnb.kernel.style import (
    ROOT,
    STYLESHEET,
    Cell,
    cell_text,
    esc,
    note_html,
    page,
    table_html,
    tags_text,
)

if TYPE_CHECKING:
    from carnb.kernel.view import RuntimeView

log = logging.getLogger("carnb.kernel.explore")

COLUMNS = ("fact_id", "subject", "body", "kind", "score", "tags", "source")  # as %car memory query


def results_html(rows: list[dict[str, Any]], query: str) -> str:
    """The result table, in the same style as ``%car memory query``; superseded facts (shown
    with ``superseded=True``) struck through."""
    if not query.strip():
        return note_html("type to search the facts")
    return table_html(
        COLUMNS,
        [_cells(r) for r in rows],
        cls="carnb-results",
        width=160,
        empty=f"no fact matches {query}",
        row_classes=["carnb-superseded" if r.get("superseded_by") else "" for r in rows],
    )


def _cells(r: dict[str, Any]) -> list[Any]:
    values = [
        r.get("fact_id"),
        r.get("subject"),
        r.get("body"),
        r.get("kind"),
        _score(r.get("confidence")),
        tags_text(r.get("tags")),
        r.get("source"),
    ]
    if not r.get("superseded_by"):
        return values
    struck = [cell_text(v, 160) for v in values]
    return [Cell(t, f"<s>{esc(t)}</s>" if t else "") for t in struck]


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
        self.widget = w.VBox([self.box, self.status, self.results])
        self.widget.add_class("carnb-explore")
        self.widget.add_class(ROOT)
        self.status.value = STYLESHEET
        self._seq = 0
        self._closed = False
        self.last_rows: list[dict[str, Any]] = []
        self.box.observe(self._on_change, names="value")

    def asearch_now(self) -> Coroutine[Any, Any, None]:
        """The search for what the box holds now (to run on the host thread)."""
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
        self.runtime.run_on_host(self._asearch(query, self._seq), timeout=timeout)
        return self.last_rows

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.box.unobserve(self._on_change, names="value")
        for widget in (self.box, self.status, self.results, self.widget):
            widget.close()

    def _repr_mimebundle_(self, **kw: Any) -> Any:
        bundle = self.widget._repr_mimebundle_(**kw)
        if isinstance(bundle, dict):
            bundle["text/plain"] = f"memory explorer: {len(self.last_rows)} result(s)"
            bundle["text/html"] = page(
                self.status.value + self.results.value, cls="carnb-explore-static"
            )
        return bundle

    # kernel thread (a keystroke): hand the query to the host thread, do not wait
    def _on_change(self, change: dict[str, Any]) -> None:
        if self._closed or not self.runtime.running:
            return
        self._seq += 1
        fut = self.runtime.submit(self._asearch(str(change["new"]), self._seq))
        fut.add_done_callback(_log_failure)

    # host thread: query and write the widgets
    async def _asearch(self, query: str, seq: int) -> None:
        try:
            count = await self.runtime.acall("memory.fact_count", {})
            rows = (
                await self.runtime.acall("memory.query", {"query": query, "k": self.k})
                if query.strip()
                else []
            )
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

    async def _with_history(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each row followed by the facts it superseded, newest first (host thread)."""
        out: list[dict[str, Any]] = []
        for row in rows:
            out.append(row)
            chain = await self.runtime.acall("memory.history", {"fact_id": row["fact_id"]})
            out += [old for old in chain if old.get("superseded_by")]
        return out

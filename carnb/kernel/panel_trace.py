"""The panel's run traces: a button for each run the panel shows (current runs and the ended
ones it still shows greyed); a click opens that run's live trace (:class:`LiveTrace`, as
``%car run trace --live``) inside the panel, one at a time, with a close button.

Threads. A click arrives on the kernel thread (ipywidgets delivers widget events there): it
reads the trace as the notebook's session, every page of it, then asks the loop thread to put the
view in place and waits. The buttons and the box are written on the loop thread only, and the
live timeline grows from the loop thread as records are committed, as it does in a cell.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from carnb.errors import CarnbError, NotFound
from carnb.kernel.linger import EndedRun
from carnb.kernel.style import esc, shorten
from carnb.kernel.traceview import LiveTrace, read_trace

if TYPE_CHECKING:
    from carnb.kernel.view import RuntimeView

log = logging.getLogger("carnb.kernel.panel")

READ_TIMEOUT = 30.0  # one page of a trace, or putting the view in place


def shown_runs(rows: list[dict[str, Any]], ended: list[dict[str, Any]]) -> list[tuple[str, bool]]:
    """The runs the panel's rows show, each once, in row order: (run id, ended)."""
    runs: dict[str, bool] = {}
    for row in rows + ended:
        if row.get("current_run_id"):
            runs.setdefault(str(row["current_run_id"]), False)
        gone: EndedRun | None = row.get("ended_run")
        if gone is not None:
            runs.setdefault(gone.run_id, True)
    return list(runs.items())


class PanelTraces:
    """The run buttons (``.pick``) and the live trace shown under them (``.box``, ``.live``)."""

    def __init__(self, runtime: RuntimeView) -> None:
        import ipywidgets as w  # type: ignore[import-untyped]

        self.runtime = runtime
        self.live: LiveTrace | None = None
        self.buttons: dict[str, Any] = {}  # run id -> its button
        self._label = w.HTML('<span class="carnb-label">live trace:</span>')
        self.pick = w.HBox([])
        self.pick.add_class("carnb-trace-pick")
        self.note = w.HTML()
        self.close_button = w.Button(
            description="close trace",
            tooltip="close this live trace",
            layout=w.Layout(width="auto"),
        )
        self.close_button.on_click(lambda _button: self.close_trace())
        self.head = w.HBox([self.note, self.close_button])
        self.box = w.VBox([])
        self.box.add_class("carnb-panel-trace")
        self._closed = False

    # -- kernel thread (button clicks) --------------------------------------------------------
    def open(self, run_id: str) -> LiveTrace | None:
        """Show ``run_id``'s live trace in place of the one shown (None when it cannot be read:
        the panel then says why in one line)."""
        if self._closed or not self.runtime.running:
            return None
        live = LiveTrace(self.runtime, run_id)
        try:
            live.start(lambda: self._read(run_id))
        except (CarnbError, TimeoutError) as exc:
            error = exc.message if isinstance(exc, CarnbError) else str(exc)
            log.info("the panel could not open the trace of %s: %s", run_id, error)
            self.runtime.run_on_loop(self._ashow(None, run_id, error), timeout=READ_TIMEOUT)
            return None
        self.runtime.run_on_loop(self._ashow(live, run_id, ""), timeout=READ_TIMEOUT)
        return live

    def close_trace(self) -> None:
        """Close the trace shown, if any."""
        if not self._closed and self.runtime.running:
            self.runtime.run_on_loop(self._ashow(None, "", ""), timeout=READ_TIMEOUT)

    def _read(self, run_id: str) -> dict[str, Any]:
        def call(method: str, params: dict[str, Any]) -> Any:
            return self.runtime.call(method, params, timeout=READ_TIMEOUT)

        # every page: the live events start where the snapshot ends, no gap
        trace = read_trace(call, run_id)
        if trace is None:
            raise NotFound(
                f"no run {run_id} that the notebook session may read (reading another agent's "
                "run needs the host role: `%car auth` restores it)"
            )
        return trace

    # -- loop thread ----------------------------------------------------------------------------
    def show_runs(self, runs: list[tuple[str, bool, str]]) -> None:
        """One button per run ``(run id, ended, label prefix)``; a button is kept (not re-made)
        while its run stays shown."""
        import ipywidgets as w

        for run_id, ended, lead in runs:
            button = self.buttons.get(run_id)
            if button is None:
                button = w.Button(tooltip=f"live trace of {run_id}", layout=w.Layout(width="auto"))
                button.add_class("carnb-trace-run")
                button.on_click(lambda _button, rid=run_id: self.open(rid))
                self.buttons[run_id] = button
            text = lead + shorten(run_id) + (" (ended)" if ended else "")
            if button.description != text:
                button.description = text
        kept = {run_id for run_id, _, _ in runs}
        for run_id in [r for r in self.buttons if r not in kept]:
            self.buttons.pop(run_id).close()
        children = (self._label, *(self.buttons[r] for r, _, _ in runs)) if runs else ()
        if self.pick.children != children:
            self.pick.children = children

    async def aflush(self) -> None:
        """Show every record the live trace received so far."""
        if self.live is not None:
            await self.live.aflush()

    async def _ashow(self, live: LiveTrace | None, run_id: str, error: str) -> None:
        old, self.live = self.live, live
        if old is not None:
            old.close()
        if self._closed:
            if live is not None:
                live.close()
            self.live = None
            return
        if live is not None:
            self.note.value = ""
            self.box.children = (self.head, live.widget)
        elif error:
            self.note.value = (
                f'<span class="carnb-muted">cannot show the trace of {esc(run_id)}: '
                f"{esc(error)}</span>"
            )
            self.box.children = (self.head,)
        else:
            self.box.children = ()

    def close(self) -> None:
        """Close the trace shown and every widget (idempotent)."""
        if self._closed:
            return
        self._closed = True
        live, self.live = self.live, None
        if live is not None:
            live.close()
        for button in self.buttons.values():
            button.close()
        self.buttons.clear()
        for widget in (self._label, self.pick, self.note, self.close_button, self.head, self.box):
            widget.close()

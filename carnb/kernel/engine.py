"""The notebook session engine: what ``%car`` commands act on, without IPython.

A :class:`NotebookEngine` owns one runtime (started from :class:`~carnb.config.Settings`), the
calls made as the notebook's session (:class:`~carnb.kernel.calls.Calls`), the run the notebook
opened last, the cell recorder, and the widgets it created (status panel, memory explorers). The
IPython edge (:mod:`carnb.kernel.extension`, :mod:`carnb.kernel.magics`) holds one engine and
feeds it parsed commands and finished cells; nothing here imports IPython.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from carnb.errors import CarnbError
from carnb.kernel.calls import Calls, CarMagicError, one_line
from carnb.kernel.cellrun import DEFAULT_RUN_OWNER, CellRecorder
from carnb.kernel.known import KnownValues

if TYPE_CHECKING:
    from carnb.config import Settings
    from carnb.kernel.approvals import ApprovalsWidget
    from carnb.kernel.explore import MemoryExplorer
    from carnb.kernel.panel import StatusPanel
    from carnb.kernel.traceview import LiveTrace
    from carnb.runtime import Runtime

log = logging.getLogger("carnb.kernel")

FLUSH_TIMEOUT = 2.0  # a cell never waits longer than this for the panel after it ends


class NotebookEngine:
    """The notebook's session: its runtime, calls, open/last run, cell recorder and widgets."""

    def __init__(self) -> None:
        self.runtime: Runtime | None = None
        self.calls = Calls(lambda: self.runtime)
        self.recorder = CellRecorder(self.open_run, self._record_turn)
        self.panel: StatusPanel | None = None
        self.explorers: list[MemoryExplorer] = []
        self.live_traces: list[LiveTrace] = []
        self.approvals: list[ApprovalsWidget] = []
        self.last_run_id: str | None = None
        self.last_run_owner: str | None = None
        self.known = KnownValues(
            lambda: self.runtime, lambda: self.last_run_owner or DEFAULT_RUN_OWNER
        )

    # -- lifecycle --------------------------------------------------------------------------
    def start(self, settings: Settings) -> Runtime:
        """Start the runtime (one-line :class:`CarMagicError` when it cannot)."""
        from carnb.runtime import Runtime, set_current

        try:
            rt = Runtime(settings).start()
        except OSError as exc:
            raise CarMagicError(
                f"could not start the session server on {settings.bind_address}:{settings.port}: "
                f"{one_line(str(exc))}; pick another port with `%config CarMagics.port = N` "
                "(0: any free port) and `%load_ext carnb` again"
            ) from None
        except CarnbError as exc:
            raise CarMagicError(f"could not start carnb: {one_line(exc.message)}") from None
        self.runtime = rt
        set_current(rt)
        return rt

    @property
    def running(self) -> bool:
        return self.runtime is not None and self.runtime.running

    def close(self) -> None:
        """Close the widgets, then the runtime (idempotent)."""
        for explorer in self.explorers:
            _quietly(explorer.close, "closing a memory explorer")
        self.explorers.clear()
        for live in self.live_traces:
            _quietly(live.close, "closing a live trace")
        self.live_traces.clear()
        for widget in self.approvals:
            _quietly(widget.close, "closing an approvals widget")
        self.approvals.clear()
        if self.panel is not None:
            _quietly(self.panel.close, "closing the status panel")
            self.panel = None
        rt, self.runtime = self.runtime, None
        if rt is not None:
            rt.close()

    # -- the notebook session -----------------------------------------------------------------
    def notebook(self) -> dict[str, Any]:
        """The notebook session's snapshot (raises :class:`NotLoaded` when stopped)."""
        return self.calls.runtime.notebook()

    def open_run(self) -> str | None:
        """The run open on the notebook's session, if any (None when not running)."""
        rt = self.runtime
        return rt.notebook().get("current_run_id") if rt is not None else None

    def remember_run(self, reply: dict[str, Any]) -> None:
        self.last_run_id = reply["run_id"]
        self.last_run_owner = reply.get("agent_id")

    # -- widgets ----------------------------------------------------------------------------
    def ensure_panel(self) -> StatusPanel:
        from carnb.kernel.panel import StatusPanel

        rt = self.calls.runtime
        if self.panel is None:
            self.panel = StatusPanel(rt).start()
        return self.panel

    def add_explorer(self, query: str, k: int, superseded: bool = False) -> MemoryExplorer:
        from carnb.kernel.explore import MemoryExplorer

        explorer = MemoryExplorer(self.calls.runtime, query, k=k, superseded=superseded)
        self.explorers.append(explorer)
        return explorer

    def add_approvals(self, flt: dict[str, Any]) -> ApprovalsWidget:
        """An approvals widget supervising with ``flt`` (closed with the engine)."""
        from carnb.kernel.approvals import ApprovalsWidget

        widget = ApprovalsWidget(self.calls.runtime, flt).start()
        self.approvals.append(widget)
        return widget

    def add_live_trace(self, run_id: str, snapshot: Callable[[], dict[str, Any]]) -> LiveTrace:
        """A live timeline of ``run_id`` (closed with the engine)."""
        from carnb.kernel.traceview import LiveTrace

        live = LiveTrace(self.calls.runtime, run_id)
        self.calls.guard(lambda: live.start(snapshot), what="%car run trace --live")
        self.live_traces.append(live)
        return live

    # -- cells ------------------------------------------------------------------------------
    def after_cell(self, result: Any) -> None:
        """After every cell: record it if a run is open, then let the panel catch up."""
        if not self.running:
            return
        self.recorder.post_run_cell(result)
        if self.panel is not None:
            try:
                self.panel.flush(timeout=FLUSH_TIMEOUT)
            except (KeyboardInterrupt, Exception) as exc:
                log.warning("the status panel did not refresh after the cell: %s", exc)

    def _record_turn(self, run_id: str, turn: dict[str, Any]) -> None:
        reply = self.calls.call(
            "runs.record_turns",
            {"run_id": run_id, "turns": [turn]},
            what="recording the cell as a turn",
            timeout=30,
        )
        if isinstance(reply, dict) and reply.get("ok") is False:
            log.warning("turn not recorded in %s: %s", run_id, reply.get("dropped"))


def _quietly(fn: Callable[[], Any], what: str) -> None:
    try:
        fn()
    except Exception:
        log.exception("%s failed", what)

"""The IPython extension: ``%load_ext carnb`` / ``%unload_ext carnb`` / ``%reload_ext carnb``.

:func:`load` starts one runtime per kernel (the server on the host thread, the notebook's own
session authenticated as host), registers ``%car`` and its ``CarMagics`` options, a
``pre_run_cell`` and a ``post_run_cell`` hook (record the cell as a turn of the open run, then
let the panel catch up)
and an ``atexit`` handler that stops everything when the kernel shuts down. It prints one line
with the URL. Loading twice keeps the running runtime. :func:`unload` undoes exactly that: hooks,
magics, configurable, atexit handler, widgets, browsers, server and thread, so ``%reload_ext``
leaves no port or process behind. After unload ``%car`` only says how to load carnb again.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import sys
import threading
from typing import TYPE_CHECKING, Any

from carnb.errors import CarnbError
from carnb.kernel.calls import Calls, CarMagicError, one_line
from carnb.kernel.cellrun import CellRecorder

if TYPE_CHECKING:
    from carnb.kernel.explore import MemoryExplorer
    from carnb.kernel.magics import CarMagics
    from carnb.kernel.panel import StatusPanel
    from carnb.runtime import Runtime

log = logging.getLogger("carnb.kernel")

FLUSH_TIMEOUT = 2.0  # a cell never waits longer than this for the panel after it ends
_lock = threading.Lock()
_active: KernelExtension | None = None


class KernelExtension:
    """Everything ``%load_ext carnb`` set up in one shell, and how to take it down again."""

    def __init__(self, shell: Any) -> None:
        from carnb.kernel.magics import CarMagics

        self.shell = shell
        self.magics: CarMagics = CarMagics(shell=shell, ext=self)
        self.runtime: Runtime | None = None
        self.calls = Calls(lambda: self.runtime)
        self.recorder = CellRecorder(shell, self._current_run, self._record_turn)
        self.panel: StatusPanel | None = None
        self.explorers: list[MemoryExplorer] = []
        self.last_run_id: str | None = None
        self.last_run_owner: str | None = None
        self._hooked = False
        self._closed = False
        self._saved_switch_interval: float | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> Runtime:
        from carnb.runtime import Runtime, set_current

        settings = self.magics.settings()
        try:
            rt = Runtime(settings).start()
        except OSError as exc:
            raise CarMagicError(
                f"could not start the session server on {settings.host}:{settings.port}: "
                f"{one_line(str(exc))}; pick another port with `%config CarMagics.port = N` "
                "(0: any free port) and `%load_ext carnb` again"
            ) from None
        except CarnbError as exc:
            raise CarMagicError(f"could not start carnb: {one_line(exc.message)}") from None
        self.runtime = rt
        set_current(rt)
        shell = self.shell
        shell.register_magics(self.magics)
        if self.magics not in shell.configurables:
            shell.configurables.append(self.magics)
        shell.events.register("pre_run_cell", self.recorder.pre_run_cell)
        shell.events.register("post_run_cell", self.post_run_cell)
        self._hooked = True
        if self.magics.switch_interval is not None:
            self._saved_switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(self.magics.switch_interval)
        atexit.register(self.close)
        return rt

    def close(self) -> None:
        """Undo :meth:`start` (idempotent; also the ``atexit`` handler)."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        if self._saved_switch_interval is not None:
            sys.setswitchinterval(self._saved_switch_interval)
            self._saved_switch_interval = None
        shell = self.shell
        if self._hooked:
            with contextlib.suppress(ValueError):
                shell.events.unregister("pre_run_cell", self.recorder.pre_run_cell)
            with contextlib.suppress(ValueError):
                shell.events.unregister("post_run_cell", self.post_run_cell)
            self._hooked = False
        for explorer in self.explorers:
            _quietly(explorer.close, "closing a memory explorer")
        self.explorers.clear()
        if self.panel is not None:
            _quietly(self.panel.close, "closing the status panel")
            self.panel = None
        manager = getattr(shell, "magics_manager", None)
        if manager is not None:
            for kind in ("line", "cell"):
                if getattr(manager.magics[kind].get("car"), "__self__", None) is self.magics:
                    del manager.magics[kind]["car"]
            if manager.registry.get("CarMagics") is self.magics:
                del manager.registry["CarMagics"]
        with contextlib.suppress(ValueError):
            shell.configurables.remove(self.magics)
        self.magics.ext = None
        rt, self.runtime = self.runtime, None
        if rt is not None:
            rt.close()

    # -- shared by commands ----------------------------------------------------------------
    def ensure_panel(self) -> StatusPanel:
        from carnb.kernel.panel import StatusPanel

        rt = self.calls.runtime
        if self.panel is None:
            self.panel = StatusPanel(rt).start()
        return self.panel

    def post_run_cell(self, result: Any) -> None:
        """After every cell: record it if a run is open, then let the panel catch up."""
        if self.runtime is None or not self.runtime.running:
            return
        self.recorder.post_run_cell(result)
        if self.panel is not None:
            try:
                self.panel.flush(timeout=FLUSH_TIMEOUT)
            except (KeyboardInterrupt, Exception) as exc:
                log.warning("the status panel did not refresh after the cell: %s", exc)

    def _current_run(self) -> str | None:
        rt = self.runtime
        session = rt.session if rt is not None else None
        return session.current_run_id if session is not None else None

    def _record_turn(self, run_id: str, turn: dict[str, Any]) -> None:
        reply = self.calls.call("runs.record_turns", {"run_id": run_id, "turns": [turn]},
                                what="recording the cell as a turn", timeout=30)
        if isinstance(reply, dict) and reply.get("ok") is False:
            log.warning("turn not recorded in %s: %s", run_id, reply.get("dropped"))


def _quietly(fn: Any, what: str) -> None:
    try:
        fn()
    except Exception:
        log.exception("%s failed", what)


def _not_loaded(line: str = "", cell: str | None = None) -> None:
    from IPython.core.error import UsageError

    raise UsageError("carnb is not loaded (it was unloaded): run `%load_ext carnb`")


def load(ipython: Any) -> None:
    """``load_ipython_extension``: start the runtime once per kernel and print its URL."""
    global _active
    with _lock:
        ext = _active
        if ext is not None and ext.runtime is not None and ext.runtime.running:
            if ext.shell is ipython:
                print(f"carnb is already running on {ext.runtime.url} (`%reload_ext carnb` "
                      "restarts it)")
                return
            raise CarMagicError("carnb already runs in another shell of this process")
        if ext is not None:  # a runtime that was closed behind our back
            ext.close()
        try:
            ext = KernelExtension(ipython)
        except Exception as exc:  # e.g. a CarMagics option that fails validation
            raise CarMagicError(f"cannot load carnb: {one_line(str(exc))}") from None
        rt = ext.start()
        _active = ext
    session = rt.session.client_id if rt.session is not None else "?"
    print(f"carnb: CAR session server on {rt.url} (notebook session {session}; `%car --help`)")


def unload(ipython: Any) -> None:
    """``unload_ipython_extension``: undo :func:`load`."""
    global _active
    with _lock:
        ext, _active = _active, None
        if ext is not None:
            ext.close()
    manager = getattr(ipython, "magics_manager", None)
    if manager is not None:
        ipython.register_magic_function(_not_loaded, "line_cell", "car")


def active() -> KernelExtension | None:
    """The loaded extension of this process, if any."""
    return _active

"""The IPython extension: ``%load_ext carnb`` / ``%unload_ext carnb`` / ``%reload_ext carnb``.

:func:`load` starts one runtime per kernel through a :class:`~carnb.kernel.engine.NotebookEngine`
(the server on the loop thread, the notebook's own session authenticated as host), registers
``%car`` and its ``CarMagics`` options, the ``%car`` tab completer (an IPython custom matcher),
the inspector that answers Shift+Tab in a ``%car`` line (in front of the kernel's own),
a ``pre_run_cell`` and a ``post_run_cell`` hook (the engine records the cell as a turn of the
open run, then lets the panel catch up) and an ``atexit`` handler that stops everything when the
kernel shuts down. It prints one line with the URL. Loading twice keeps the running runtime.
:func:`unload` undoes exactly that: hooks, magics, completer, inspector, configurable, atexit
handler, widgets, browsers, server and thread, so ``%reload_ext`` leaves no port or process
behind. After unload ``%car`` only says how to load carnb again.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import sys
import threading
from typing import TYPE_CHECKING, Any

from carnb.kernel.calls import CarMagicError, one_line
from carnb.kernel.completer import CarCompleter
from carnb.kernel.engine import NotebookEngine
from carnb.kernel.inspector import CarInspector
from carnb.kernel.magics import CarMagics

if TYPE_CHECKING:
    from carnb.kernel.cellrun import CellRecorder
    from carnb.runtime import Runtime

log = logging.getLogger("carnb.kernel")

_lock = threading.Lock()
_active: KernelExtension | None = None


class KernelExtension:
    """Everything ``%load_ext carnb`` set up in one shell, and how to take it down again: the
    engine (the notebook session), the magics (options and parsing), hooks and ``atexit``."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.engine = NotebookEngine()
        self.magics = CarMagics(shell=shell, engine=self.engine)
        self.completer = CarCompleter(
            self.magics.line_parser, self.magics.cell_parser, self.engine.known
        )
        self.inspector = CarInspector(self.magics.line_parser, self.magics.cell_parser)
        self._hooked = False
        self._closed = False
        self._saved_switch_interval: float | None = None

    @property
    def runtime(self) -> Runtime | None:
        return self.engine.runtime

    @property
    def recorder(self) -> CellRecorder:
        return self.engine.recorder

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> Runtime:
        rt = self.engine.start(self.magics.settings())
        shell = self.shell
        shell.register_magics(self.magics)
        if self.magics not in shell.configurables:
            shell.configurables.append(self.magics)
        shell.events.register("pre_run_cell", self.recorder.pre_run_cell)
        shell.events.register("post_run_cell", self.post_run_cell)
        self._hooked = True
        matchers = _custom_matchers(shell)
        if matchers is not None and self.completer not in matchers:
            matchers.append(self.completer)
        self.inspector.install(getattr(shell, "kernel", None))
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
        matchers = _custom_matchers(shell)
        if matchers is not None:
            with contextlib.suppress(ValueError):
                matchers.remove(self.completer)
        self.inspector.remove()
        manager = getattr(shell, "magics_manager", None)
        if manager is not None:
            for kind in ("line", "cell"):
                if getattr(manager.magics[kind].get("car"), "__self__", None) is self.magics:
                    del manager.magics[kind]["car"]
            if manager.registry.get("CarMagics") is self.magics:
                del manager.registry["CarMagics"]
        with contextlib.suppress(ValueError):
            shell.configurables.remove(self.magics)
        self.magics.engine = None
        self.engine.close()

    def post_run_cell(self, result: Any) -> None:
        """IPython's ``post_run_cell`` hook: hand the finished cell to the engine."""
        self.engine.after_cell(result)


def _custom_matchers(shell: Any) -> list[Any] | None:
    """The shell completer's ``custom_matchers`` list (None in a shell without a completer)."""
    matchers = getattr(getattr(shell, "Completer", None), "custom_matchers", None)
    return matchers if isinstance(matchers, list) else None


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
                print(
                    f"carnb is already running on {ext.runtime.url} (`%reload_ext carnb` "
                    "restarts it)"
                )
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
    session = rt.notebook().get("client_id") or "?"
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

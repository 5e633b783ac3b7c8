"""Widget clicks that arrive while a cell is busy.

ipywidgets deliver a click as a ``comm_msg`` on the kernel's shell channel, and a kernel
handles shell messages on its main thread, one after the other: while a cell runs (say the cell
that started an agent and now waits for it) a click would wait behind it, and a proposal that
waits for that click would fail closed. ipykernel 7 runs *subshells* (JEP 91), each a thread of
its own with its own shell queue, and routes a comm's messages to the subshell the comm names
(``_reply_subshell_id``). :func:`route_to_subshell` gives a widget's comm a carnb subshell, made
once per kernel, so its clicks are handled on that thread while the main thread is busy. A
kernel without subshells (older ipykernel) handles them on the main thread as before.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger("carnb.kernel.clicks")

_lock = threading.Lock()
_subshell: list[str] = []  # the one subshell of this kernel, once made


def click_subshell(timeout: float = 5.0) -> str | None:
    """The id of carnb's subshell in this kernel (made on first use); None without one."""
    with _lock:
        if _subshell:
            return _subshell[0]
        try:
            from ipykernel.kernelbase import Kernel
        except ImportError:
            return None
        if not Kernel.initialized():
            return None
        channel = getattr(Kernel.instance(), "shell_channel_thread", None)
        manager: Any = getattr(channel, "manager", None)
        if channel is None or not hasattr(manager, "_create_subshell"):
            return None
        made: list[str] = []
        done = threading.Event()

        def create() -> None:  # on the shell channel thread, where subshells are made
            try:
                made.append(manager._create_subshell())
            except Exception:
                log.exception("could not make a subshell for widget clicks")
            finally:
                done.set()

        channel.io_loop.add_callback(create)
        if not done.wait(timeout) or not made:
            return None
        _subshell.append(made[0])
        return made[0]


def route_to_subshell(widget: Any) -> bool:
    """Have ``widget``'s messages handled on carnb's subshell; False when the kernel has none."""
    subshell = click_subshell()
    comm = getattr(widget, "comm", None)
    if subshell is None or comm is None:
        return False
    comm._reply_subshell_id = subshell
    return True

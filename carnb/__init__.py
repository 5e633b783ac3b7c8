"""carnb: host CAR (Common Agent Runtime) sessions inside a Jupyter kernel.

``%load_ext carnb`` starts the session server in the kernel; ``carnb.current()`` returns the
running :class:`carnb.runtime.Runtime`. Heavy imports happen only when the extension loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from carnb._version import __version__

if TYPE_CHECKING:
    from carnb.runtime import Runtime

__all__ = ["__version__", "current", "load_ipython_extension", "unload_ipython_extension"]


def current() -> Runtime:
    """The runtime ``%load_ext carnb`` started in this kernel (raises if not loaded)."""
    from carnb.runtime import current as _current

    return _current()


def load_ipython_extension(ipython: Any) -> None:
    from carnb.kernel.extension import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from carnb.kernel.extension import unload

    unload(ipython)

"""How a magic talks to the runtime: one call as the notebook's session, errors as one line.

Every ``%car`` subcommand goes through :class:`Calls`. A failure never shows a traceback: a
:class:`~carnb.errors.CarnbError` from the server (bad params, unknown run, no Chromium, ...)
becomes :class:`CarCommandError`, Ctrl-C while the kernel waits on the loop thread becomes
:class:`CarInterrupted` (the loop thread has already cancelled the coroutine, so the runtime stays
usable), and a loop thread that does not answer in time becomes :class:`CarCommandError` as
well. IPython shows these through ``_render_traceback_``: one line, the cell marked as failed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any

from carnb.errors import CarnbError

if TYPE_CHECKING:
    from carnb.runtime import Runtime

log = logging.getLogger("carnb.kernel")

DEFAULT_TIMEOUT = 120.0


class CarMagicError(Exception):
    """A ``%car`` failure shown as one line (no traceback) by IPython."""

    prefix = "carnb"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def line(self) -> str:
        return f"{self.prefix}: {self.message}"

    def _render_traceback_(self) -> list[str]:
        return [self.line()]


class CarCommandError(CarMagicError):
    """The runtime refused or failed the command; the message says why and what to do."""


class CarInterrupted(CarMagicError):
    """Ctrl-C while the kernel waited on the loop thread; the call was cancelled."""

    prefix = "carnb (interrupted)"


class NotLoaded(CarMagicError):
    """A magic used while no runtime is running."""


def one_line(text: str) -> str:
    return " ".join(str(text).split())


class Calls:
    """Calls on the runtime as the notebook's session, with errors turned into one line."""

    def __init__(self, runtime_getter: Callable[[], Runtime | None]) -> None:
        self._get = runtime_getter

    @property
    def runtime(self) -> Runtime:
        rt = self._get()
        if rt is None:
            raise NotLoaded("carnb is not loaded: run `%load_ext carnb` first")
        if not rt.running:
            raise NotLoaded(
                "the carnb runtime has stopped (unloaded or closed): run `%reload_ext carnb`"
            )
        return rt

    def call(
        self,
        method: str,
        params: Any = None,
        *,
        what: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> Any:
        """``runtime.call(method, params)``; ``what`` names the command in messages."""
        rt = self.runtime
        with _explained(what or method):
            return rt.call(method, params, timeout=timeout)

    def on_loop(
        self, coro: Coroutine[Any, Any, Any], *, what: str, timeout: float | None = 30.0
    ) -> Any:
        """Run a coroutine on the loop thread and wait (Ctrl-C cancels it)."""
        try:
            rt = self.runtime
        except CarMagicError:
            coro.close()
            raise
        with _explained(what):
            return rt.run_on_loop(coro, timeout=timeout)

    def guard(self, fn: Callable[[], Any], *, what: str) -> Any:
        """Run a direct runtime operation (e.g. ``register_agent``) with the same error rules."""
        try:
            return fn()
        except KeyboardInterrupt:
            raise CarInterrupted(f"{what} was cancelled by Ctrl-C") from None
        except CarnbError as exc:
            raise CarCommandError(f"{what} failed: {one_line(exc.message)}") from None


@contextlib.contextmanager
def _explained(label: str) -> Iterator[None]:
    """Turn what a call to the loop thread can raise into one-line magic errors."""
    try:
        yield
    except KeyboardInterrupt:
        raise CarInterrupted(
            f"{label} was cancelled by Ctrl-C; the runtime is still running"
        ) from None
    except CarnbError as exc:
        raise CarCommandError(f"{label} failed: {one_line(exc.message)}") from None
    except TimeoutError as exc:
        raise CarCommandError(f"{label}: {one_line(str(exc))}") from None

"""The loop thread: one daemon thread running the asyncio loop that owns the server,
every session, the engines and the browsers (docs/architecture.md "Threading").

Sync callers (the kernel thread running a magic) hand it coroutines with :meth:`LoopThread.call`
and get the result or the exception back; Ctrl-C in the caller cancels the coroutine. The thread
starts lazily, :meth:`LoopThread.stop` is idempotent, and a ``weakref.finalize`` backstop stops
the loop if the owner is garbage-collected without stopping it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from carnb.errors import LoopThreadError

log = logging.getLogger("carnb.server.loopthread")

T = TypeVar("T")


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    if loop.is_closed():
        return
    try:
        loop.call_soon_threadsafe(loop.stop)
    except RuntimeError:  # loop closed between the check and the call
        return
    if thread is not threading.current_thread():
        thread.join(timeout=10)


class LoopThread:
    """A daemon thread with its own asyncio event loop."""

    def __init__(self, name: str = "carnb-loop") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._finalizer: (
            weakref.finalize[[asyncio.AbstractEventLoop, threading.Thread], LoopThread] | None
        ) = None

    # -- lifecycle -----------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        self.start()
        assert self._loop is not None
        return self._loop

    def in_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def start(self) -> None:
        """Start the thread if it is not running (idempotent, thread-safe)."""
        with self._lock:
            if self.running:
                return
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                try:
                    loop.run_forever()
                finally:
                    _drain(loop)
                    loop.close()

            thread = threading.Thread(target=run, name=self.name, daemon=True)
            thread.start()
            if not ready.wait(timeout=10):
                raise LoopThreadError("the carnb loop thread did not start within 10 s")
            self._loop, self._thread = loop, thread
            self._finalizer = weakref.finalize(self, _stop_loop, loop, thread)

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel what still runs, stop the loop and join the thread. Idempotent."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
            if self._finalizer is not None:
                self._finalizer.detach()
                self._finalizer = None
        if loop is None or thread is None or loop.is_closed():
            return
        if threading.current_thread() is thread:
            raise LoopThreadError("LoopThread.stop() cannot be called from the loop thread itself")
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if thread.is_alive():
            log.warning("carnb loop thread did not stop within %.1f s", timeout)

    # -- calls ---------------------------------------------------------------------------
    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the server loop; returns a concurrent future."""
        loop = self.loop
        return asyncio.run_coroutine_threadsafe(coro, loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the server loop and wait for it from a foreign thread.

        KeyboardInterrupt while waiting cancels the coroutine and is re-raised; a timeout
        cancels it and raises :class:`TimeoutError` saying what took too long.
        """
        if self.in_thread():
            coro.close()
            raise LoopThreadError(
                "LoopThread.call() was used on the loop thread itself; await the coroutine instead"
            )
        fut = self.submit(coro)
        try:
            return fut.result(timeout)
        except KeyboardInterrupt:
            fut.cancel()
            raise
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise TimeoutError(f"the carnb loop thread did not answer within {timeout} s") from None

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run a plain callback on the server loop (thread-safe; runs inline if already there)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if self.in_thread():
            fn(*args)
        else:
            loop.call_soon_threadsafe(fn, *args)

    async def wrap(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the server loop from another event loop (e.g. an async cell)."""
        if self.in_thread():
            return await coro
        return await asyncio.wrap_future(self.submit(coro))


def _drain(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel tasks left on a stopped loop and let them finish their cleanup."""
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in tasks:
        t.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())

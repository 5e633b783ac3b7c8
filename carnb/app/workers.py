"""A small pool of daemon worker threads: where the notebook's tools and models run."""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any

from carnb.errors import PoolClosed


class WorkerPool:
    """At most ``size`` daemon threads running submitted calls in order. Unlike
    ``ThreadPoolExecutor`` (whose threads the interpreter joins at exit) a call stuck forever
    (a notebook tool or model) cannot keep the kernel or ``serve`` from exiting."""

    def __init__(self, size: int, name: str) -> None:
        self._size = size
        self._name = name
        self._queue: queue.SimpleQueue[
            tuple[concurrent.futures.Future[Any], Callable[[], Any]] | None
        ] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0  # workers waiting for a call
        self._waiting = 0  # calls queued and not yet taken
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise PoolClosed(f"the {self._name} pool is closed")
            self._queue.put((future, lambda: fn(*args)))
            self._waiting += 1
            if self._waiting > self._idle and len(self._threads) < self._size:
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-{len(self._threads) + 1}", daemon=True
                )
                self._threads.append(thread)
                self._idle += 1
                thread.start()
        return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            with self._lock:
                self._idle -= 1
                self._waiting -= 1
            future, call = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(call())
                except BaseException as exc:  # handed to the waiter, as an executor does
                    future.set_exception(exc)
            with self._lock:
                self._idle += 1

    def close(self) -> None:
        """Stop taking calls; idle workers end, busy ones end after their call."""
        with self._lock:
            self._closed = True
            for _ in self._threads:
                self._queue.put(None)

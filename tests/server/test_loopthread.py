"""The loop thread: lazy start, results and exceptions back, Ctrl-C cancels, idempotent stop."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import threading
import time

import pytest

from carnb.errors import LoopThreadError
from carnb.server.loopthread import LoopThread


def test_runs_coroutines_on_its_own_thread_and_returns_results() -> None:
    host = LoopThread()
    assert not host.running
    try:

        async def where() -> str:
            return threading.current_thread().name

        assert host.call(where(), timeout=5) == "carnb-loop"
        assert host.running
    finally:
        host.stop()


def test_exceptions_come_back_to_the_caller() -> None:
    host = LoopThread()
    try:

        async def boom() -> None:
            raise ValueError("bad thing")

        with pytest.raises(ValueError, match="bad thing"):
            host.call(boom(), timeout=5)

        # still usable afterwards
        async def ok() -> int:
            return 1

        assert host.call(ok(), timeout=5) == 1
    finally:
        host.stop()


async def sleeps_until_cancelled(cancelled: threading.Event) -> None:
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        cancelled.set()
        raise


def test_timeout_cancels_the_coroutine() -> None:
    host = LoopThread()
    cancelled = threading.Event()
    try:
        with pytest.raises(TimeoutError, match="did not answer"):
            host.call(sleeps_until_cancelled(cancelled), timeout=0.2)
        assert cancelled.wait(5)
    finally:
        host.stop()


def test_keyboard_interrupt_in_the_caller_cancels_the_coroutine() -> None:
    host = LoopThread()
    cancelled = threading.Event()
    try:
        # a real SIGINT, as Jupyter's interrupt button sends to the kernel process
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            host.call(sleeps_until_cancelled(cancelled), timeout=20)
        assert cancelled.wait(5)

        # the loop thread is still usable after the interrupt
        async def ok() -> str:
            return "alive"

        assert host.call(ok(), timeout=5) == "alive"
    finally:
        host.stop()


def test_stop_is_idempotent_and_joins_and_cleans_up_tasks() -> None:
    host = LoopThread()
    cleaned = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.set()

    host.submit(forever())
    time.sleep(0.1)
    thread = host._thread
    host.stop()
    host.stop()
    assert thread is not None and not thread.is_alive()
    assert cleaned.is_set()
    assert not host.running


def test_restart_after_stop() -> None:
    host = LoopThread()

    async def one() -> int:
        return 1

    assert host.call(one(), timeout=5) == 1
    host.stop()
    assert host.call(one(), timeout=5) == 1
    host.stop()


def test_calling_from_the_loop_thread_itself_is_refused_not_deadlocked() -> None:
    host = LoopThread()
    try:

        async def inner() -> None:
            async def nothing() -> None:
                return None

            host.call(nothing(), timeout=1)

        with pytest.raises(LoopThreadError, match="loop thread itself"):
            host.call(inner(), timeout=5)
    finally:
        host.stop()


def test_finalizer_stops_the_thread_when_the_owner_is_collected() -> None:
    host = LoopThread()
    host.start()
    thread = host._thread
    assert thread is not None and thread.is_alive()
    del host
    gc.collect()
    thread.join(5)
    assert not thread.is_alive()

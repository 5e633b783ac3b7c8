"""Pool and slot lifecycle on a real Chromium: cold launch, reuse, close, kill and relaunch,
no process left behind, and the driver dying with its parent."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from carnb.browser import BrowserPool

from .conftest import chromium_or_skip, chromium_processes, element_id, steps_ok
from .site import Site

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parents[2]


def script(url: str) -> dict[str, Any]:
    return {"operations": [{"op": "navigate", "url": url}, {"op": "observe"}]}


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def wait_until(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return bool(predicate())


async def test_cold_launch_is_lazy_and_shared(site: Site) -> None:
    chromium_or_skip()
    pool = BrowserPool()
    try:
        events: list[dict[str, Any]] = []
        first = pool.slot("first")
        first.add_listener(events.append)
        assert (pool.running, pool.pid, first.state, first.url) == (
            False,
            None,
            "not launched",
            None,
        )
        steps = steps_ok(await first.run(script(site.url("/index.html"))))
        assert steps[1]["data"]["title"] == "Home"
        assert pool.running and pool.launches == 1 and first.state == "launched"
        pid = pool.pid
        assert pid is not None and psutil.Process(pid).name() in (
            "chromium",
            "chrome",
            "headless_shell",
        )
        # our switches reached Chromium; ours is the last --disable-features (the one Chromium
        # keeps) and still carries Playwright's own list
        cmdline = psutil.Process(pid).cmdline()
        assert "--disable-background-networking" in cmdline and "--disable-quic" in cmdline
        if os.geteuid() == 0:
            assert "--no-sandbox" in cmdline
        features = [a for a in cmdline if a.startswith("--disable-features=")][-1].split("=")[1]
        assert {"PaintHolding", "RenderDocument"} <= set(features.split(","))
        assert [e["event"] for e in events] == ["launched", "run"]
        assert events[-1]["url"] == site.url("/index.html") and events[-1]["ok"] is True
        # a second session reuses the same Chromium
        second = pool.slot("second")
        steps_ok(await second.run(script(site.url("/second.html"))))
        assert pool.launches == 1 and pool.pid == pid
    finally:
        await pool.close()
    assert not pool.running and pool.pid is None


async def test_slot_close_is_idempotent_and_reopens_on_demand(site: Site) -> None:
    chromium_or_skip()
    pool = BrowserPool()
    try:
        slot = pool.slot("s")
        events: list[str] = []
        slot.add_listener(lambda e: events.append(e["state"]))
        assert await slot.close() == {"closed": False}  # nothing was open
        assert slot.state == "not launched"
        steps_ok(await slot.run(script(site.url("/index.html"))))
        assert await slot.close() == {"closed": True}
        assert slot.state == "closed"
        assert await slot.close() == {"closed": False}
        steps_ok(await slot.run(script(site.url("/second.html"))))
        assert slot.state == "launched"
        assert events == ["launched", "launched", "closed", "launched", "launched"]
    finally:
        await pool.close()
    assert slot.state == "closed"


async def test_killed_chromium_is_relaunched_on_next_run(site: Site) -> None:
    chromium_or_skip()
    pool = BrowserPool()
    try:
        slot = pool.slot("s")
        summary = steps_ok(await slot.run(script(site.url("/index.html"))))[1]["data"]["summary"]
        old_id = element_id(summary, "button", "Show")
        old_pid = pool.pid
        assert old_pid is not None
        os.kill(old_pid, signal.SIGKILL)
        assert await wait_until(lambda: not pool.running)
        result = await slot.run(
            {
                "operations": [
                    {"op": "navigate", "url": site.url("/index.html")},
                    {"op": "observe"},
                    {"op": "click", "element_id": old_id},
                ]
            }
        )
        steps = result["steps"]
        assert [s["status"] for s in steps] == ["ok", "ok", "error"]
        assert "is stale" in steps[2]["error"]  # the same page, but ids from before are gone
        assert element_id(steps[1]["data"]["summary"], "button", "Show") != old_id
        assert pool.generation == 2 and pool.launches == 2
        assert pool.pid is not None and pool.pid != old_pid
        assert not alive(old_pid)
    finally:
        await pool.close()


async def test_close_leaves_no_chromium_or_driver_behind(site: Site) -> None:
    chromium_or_skip()
    before = {p.pid for p in chromium_processes()}
    pool = BrowserPool()
    a, b = pool.slot("a"), pool.slot("b")
    steps_ok(await a.run(script(site.url("/index.html"))))
    steps_ok(await b.run(script(site.url("/second.html"))))
    ours = [p for p in chromium_processes() if p.pid not in before]
    assert pool.pid in {p.pid for p in ours} and len(ours) >= 3  # browser, zygotes, renderers
    driver = psutil.Process(pool.pid).parent()
    assert driver is not None and driver.pid != os.getpid()
    await pool.close()
    await pool.close()  # idempotent
    assert await wait_until(lambda: not any(alive(p.pid) for p in ours), timeout=5)
    assert await wait_until(lambda: not alive(driver.pid), timeout=5)
    assert {p.pid for p in chromium_processes()} <= before
    assert (a.state, b.state) == ("closed", "closed")
    # the pool can be used again: it relaunches, and closes again cleanly
    steps_ok(await a.run(script(site.url("/index.html"))))
    pid = pool.pid
    assert pid is not None
    await pool.close()
    assert await wait_until(lambda: not alive(pid), timeout=5)


def test_chromium_dies_with_a_crashed_caller(site: Site, tmp_path: Path) -> None:
    chromium_or_skip()
    child = tmp_path / "child.py"
    child.write_text(
        textwrap.dedent(f"""
        import asyncio, sys
        sys.path.insert(0, {str(REPO)!r})
        from carnb.browser import BrowserPool

        async def main():
            pool = BrowserPool()
            await pool.slot().run({{"operations": [{{"op": "navigate",
                                                    "url": {site.url("/index.html")!r}}}]}})
            print(pool.pid, flush=True)
            await asyncio.sleep(60)

        asyncio.run(main())
    """)
    )
    proc = subprocess.Popen([sys.executable, str(child)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        pid = int(proc.stdout.readline())
        assert alive(pid)
        proc.kill()  # no cleanup code runs in the caller
        proc.wait(10)
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(pid), "Chromium outlived its crashed caller"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_group_sigint_leaves_chromium_running(site: Site, tmp_path: Path) -> None:
    """A Jupyter interrupt signals the kernel's whole process group; browsers must survive it."""
    chromium_or_skip()
    child = tmp_path / "child.py"
    child.write_text(
        textwrap.dedent(f"""
        import asyncio, os, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        from carnb.browser import BrowserPool
        signal.signal(signal.SIGINT, lambda *a: None)  # the kernel handles its own SIGINT

        async def main():
            pool = BrowserPool()
            slot = pool.slot()
            url = {site.url("/index.html")!r}
            await slot.run({{"operations": [{{"op": "navigate", "url": url}}]}})
            pid = pool.pid
            os.killpg(os.getpgrp(), signal.SIGINT)
            await asyncio.sleep(1.0)
            result = await slot.run({{"operations": [{{"op": "observe"}}]}})
            print(pool.running, pool.pid == pid, result["steps"][0]["status"], flush=True)
            await pool.close()

        asyncio.run(main())
    """)
    )
    proc = subprocess.run(
        [sys.executable, str(child)],
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "True", "ok"]

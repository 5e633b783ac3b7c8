"""The browser pool: one Chromium process (and one Playwright driver) shared by every session.

Theory of operation. Nothing starts until a slot first needs a page: then the pool starts the
Playwright driver (``async_playwright().start()``, a node process that is a child of this one)
and launches Chromium through it with the flags of :mod:`carnb.browser.flags`. Each slot gets
its own ``BrowserContext`` (cookies, storage and cache are not shared). The pool lives on the
asyncio loop that launched it (carnb's loop thread) and refuses calls from another loop.

* Spare context: launching a context and its first page costs ~200 ms; after a run the pool
  prepares one spare context+page in the background, so a second session's first call does not
  pay it. ``spare_context=False`` turns this off.
* Chromium gone (killed, crashed): Playwright reports the browser disconnected; the next call
  that needs a page launches a new Chromium (generation + 1) and slots reopen their contexts.
  If the driver itself died, it is restarted once before giving up.
* ``close()`` closes every slot's context, Chromium and the driver, and kills Chromium by pid
  if it does not exit in time. Idempotent; the pool can be used again afterwards (it relaunches).
* Crash of this process: the driver reads its stdin from us; when we die it sees EOF, exits and
  takes Chromium with it (Chromium's debugging pipe closes). A SIGINT to the whole process group
  (a Jupyter interrupt uses killpg) does not close Chromium (``handle_sigint=False``); should the
  driver die anyway, the next run restarts it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import weakref
from typing import TYPE_CHECKING

from carnb.browser.discovery import INSTALL_HINT, find_chromium
from carnb.browser.flags import find_browser_pid, launch_args
from carnb.browser.ops import first_line
from carnb.browser.slot import BrowserSlot
from carnb.errors import BrowserUnavailable, CallerFault

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page, Playwright

log = logging.getLogger("carnb.browser")

CLOSE_TIMEOUT_S = 10.0


class BrowserPool:
    """One lazily launched Chromium for all sessions; hands out isolated per-session slots."""

    def __init__(
        self,
        *,
        executable: str | None = None,
        headless: bool = True,
        op_timeout_ms: int = 10_000,
        launch_timeout_ms: int = 30_000,
        extra_args: list[str] | None = None,
        spare_context: bool = True,
    ) -> None:
        self.executable = executable
        self.headless = headless
        self.op_timeout_ms = op_timeout_ms
        self.launch_timeout_ms = launch_timeout_ms
        self.extra_args = list(extra_args or [])
        self.spare_context = spare_context
        self.generation = 0  # bumped at every launch; contexts of older generations are dead
        self.launches = 0
        self._pw: Playwright | None = None
        self._browser: Browser | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = asyncio.Lock()
        self._marker = ""
        self._pid: int | None = None
        self._slots: weakref.WeakSet[BrowserSlot] = weakref.WeakSet()
        self._spare: tuple[BrowserContext, Page, int] | None = None
        self._spare_task: asyncio.Task[None] | None = None

    # -- public surface -------------------------------------------------------------------

    def slot(self, owner: str = "") -> BrowserSlot:
        """A new per-session slot; launches nothing."""
        slot = BrowserSlot(self, owner)
        self._slots.add(slot)
        return slot

    @property
    def running(self) -> bool:
        return self._browser is not None and self._browser.is_connected()

    @property
    def version(self) -> str | None:
        """Chromium's version, while it runs."""
        return self._browser.version if self.running and self._browser is not None else None

    @property
    def pid(self) -> int | None:
        """The Chromium browser process's pid, if it is running and can be found."""
        if not self.running:
            return None
        if self._pid is None:
            self._pid = find_browser_pid(self._marker)
        return self._pid

    async def start(self) -> None:
        """Launch Chromium now instead of on first use. Idempotent."""
        await self.ensure_browser()

    async def close(self) -> None:
        """Close every slot's context, Chromium and the Playwright driver. Idempotent."""
        self._check_loop()
        async with self._lock:
            await self._drop_spare()
            for slot in list(self._slots):
                await slot._discard(reason="pool closed")
            await self._stop_browser()
            pw, self._pw = self._pw, None
            if pw is not None:
                try:
                    await asyncio.wait_for(pw.stop(), CLOSE_TIMEOUT_S)
                except Exception:
                    log.exception("stopping the Playwright driver failed")
            self._loop = None

    # -- used by slots --------------------------------------------------------------------

    async def ensure_browser(self) -> tuple[Browser, int]:
        """The running browser and its generation, launching (or relaunching) it if needed."""
        self._check_loop()
        browser = self._browser
        if browser is not None and browser.is_connected():
            return browser, self.generation
        async with self._lock:
            browser = self._browser
            if browser is not None and browser.is_connected():
                return browser, self.generation
            if browser is not None:
                log.warning("Chromium (generation %d) went away; relaunching", self.generation)
                self._browser = None
                self._spare = None
            self._loop = asyncio.get_running_loop()
            browser = await self._launch()
            return browser, self.generation

    async def open_context(self, width: int, height: int) -> tuple[BrowserContext, Page, int]:
        """A fresh isolated context with one page, taken from the spare if one is ready."""
        browser, generation = await self.ensure_browser()
        spare, self._spare = self._spare, None
        if spare is not None and spare[2] == generation and not spare[1].is_closed():
            context, page, _ = spare
            size = page.viewport_size
            if size is None or (size["width"], size["height"]) != (width, height):
                await page.set_viewport_size({"width": width, "height": height})
            return context, page, generation
        context, page = await self._new_context(browser, width, height)
        return context, page, generation

    def schedule_spare(self) -> None:
        """Prepare a spare context in the background (after a run, when the browser is idle)."""
        if not self.spare_context or self._spare is not None or not self.running:
            return
        if self._spare_task is not None and not self._spare_task.done():
            return
        self._spare_task = asyncio.get_running_loop().create_task(self._make_spare())

    # -- internals ------------------------------------------------------------------------

    def _check_loop(self) -> None:
        if self._loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not self._loop:
            raise CallerFault(
                "this BrowserPool runs on the event loop that launched it (carnb's loop thread); "
                "call it from that loop"
            )

    async def _new_context(
        self, browser: Browser, width: int, height: int
    ) -> tuple[BrowserContext, Page]:
        bound = self.launch_timeout_ms / 1000
        context = await asyncio.wait_for(
            browser.new_context(
                viewport={"width": width, "height": height},
                device_scale_factor=1,
                accept_downloads=False,
            ),
            bound,
        )
        context.set_default_timeout(self.op_timeout_ms)
        try:
            page = await asyncio.wait_for(context.new_page(), bound)
        except BaseException:
            await self._close_context(context)
            raise
        return context, page

    async def _make_spare(self) -> None:
        generation = self.generation
        browser = self._browser
        if browser is None:
            return
        try:
            context, page = await self._new_context(browser, 1280, 720)
        except Exception as exc:  # the browser may be closing; the spare is only an optimisation
            log.debug("preparing a spare browser context failed: %s", exc)
            return
        if self._spare is None and generation == self.generation and self.running:
            self._spare = (context, page, generation)
        else:
            await self._close_context(context)

    async def _drop_spare(self) -> None:
        task, self._spare_task = self._spare_task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        spare, self._spare = self._spare, None
        if spare is not None:
            await self._close_context(spare[0])

    async def _close_context(self, context: BrowserContext) -> None:
        try:
            await asyncio.wait_for(context.close(), CLOSE_TIMEOUT_S)
        except Exception as exc:
            log.debug("closing a browser context failed (browser gone?): %s", exc)

    async def _start_driver(self) -> Playwright:
        from playwright.async_api import async_playwright

        try:
            return await asyncio.wait_for(async_playwright().start(), self.launch_timeout_ms / 1000)
        except Exception as exc:
            raise BrowserUnavailable(
                f"the Playwright driver did not start: {first_line(exc)}. Reinstall it with "
                "`pip install --force-reinstall playwright`."
            ) from exc

    async def _launch(self) -> Browser:
        executable = find_chromium(self.executable, headless=self.headless)
        if self._pw is None:
            self._pw = await self._start_driver()
        try:
            browser = await self._launch_with(self._pw, executable)
        except Exception as first:
            # The driver may have died under us (e.g. a signal); restart it once.
            log.warning("Chromium launch failed (%s); restarting the driver", first_line(first))
            old, self._pw = self._pw, None
            try:
                await asyncio.wait_for(old.stop(), CLOSE_TIMEOUT_S)
            except Exception as exc:
                log.debug("stopping the old Playwright driver failed: %s", exc)
            self._pw = await self._start_driver()
            try:
                browser = await self._launch_with(self._pw, executable)
            except Exception as exc:
                raise BrowserUnavailable(
                    f"Chromium at {executable} did not start: {first_line(exc)}. Check that it "
                    f"runs (`{executable} --headless --version`). {INSTALL_HINT}"
                ) from exc
        self._browser = browser
        self.generation += 1
        self.launches += 1
        generation = self.generation
        browser.on("disconnected", lambda _b: self._on_disconnected(generation))
        log.info(
            "Chromium %s launched (%s, generation %d)", browser.version, executable, generation
        )
        return browser

    async def _launch_with(self, pw: Playwright, executable: str) -> Browser:
        self._marker = secrets.token_hex(8)
        self._pid = None
        return await pw.chromium.launch(
            executable_path=executable,
            headless=self.headless,
            args=launch_args(self._marker, self.extra_args),
            timeout=self.launch_timeout_ms,
            handle_sigint=False,
        )

    def _on_disconnected(self, generation: int) -> None:
        if generation == self.generation:
            log.info("Chromium (generation %d) disconnected", generation)
            self._spare = None

    async def _stop_browser(self) -> None:
        browser, self._browser = self._browser, None
        if browser is None:
            return
        pid = self._pid or find_browser_pid(self._marker)
        try:
            await asyncio.wait_for(browser.close(), CLOSE_TIMEOUT_S)
        except Exception as exc:
            log.warning("Chromium did not close cleanly (%s); killing it", first_line(exc))
        if pid is not None and find_browser_pid(self._marker) == pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError as exc:
                log.debug("killing Chromium %d failed: %s", pid, exc)
        self._pid = None

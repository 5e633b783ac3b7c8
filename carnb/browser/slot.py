"""A session's browser slot: one isolated BrowserContext and page, and the run loop over ops.

States: ``not launched`` (no context yet) -> ``launched`` (context and page open) ->
``closed`` (after :meth:`BrowserSlot.close` or the pool's close). A run on a closed slot opens a
new context (state ``launched`` again). Element ids come from a per-slot counter that only
grows (see :mod:`carnb.browser.observe`), so ids from before a close or a relaunch are stale,
never silently re-bound.

A run validates the whole script first (:func:`validate_script`), then executes the ops in order
and stops at the first failing step; the trace is returned either way. Each step is bounded by
the op timeout (Playwright's own timeout plus an ``asyncio.wait_for`` backstop). A page that stops
answering (e.g. a script in an endless loop) is replaced by a blank page after its step times
out. Runs of one slot are serialised; different slots run concurrently.

Listeners (``add_listener(fn)``) get a dict ``{owner, state, url, runs, event, ...}`` on the
pool's loop; ``event`` is ``launched``, ``relaunched`` (new Chromium), ``new page`` (the page
crashed or hung and was replaced in the same context), ``run`` (with ``steps`` and ``ok``) or
``closed`` (with ``reason``). The notebook panel and the session state mirror these.

A link or form with a ``target`` opens a new tab: the click waits for it and the slot follows it
(other tabs a page opens by script are followed from the next step on).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from carnb.browser.ops import OPS, OpEnv, StepError, first_line
from carnb.browser.script import validate_script, validate_viewport

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Page

log = logging.getLogger("carnb.browser")

NOT_LAUNCHED, LAUNCHED, CLOSED = "not launched", "launched", "closed"
BACKSTOP_SLACK_S = 1.0
# Steps after which the page counts as settled: url_changed compares against the URL then.
SETTLING_OPS = frozenset({"navigate", "observe", "wait", "screenshot"})
PROBE_TIMEOUT_S = 1.0
# Opening a page is carnb's housekeeping, not the caller's op: give it a fixed, generous bound
# (spawning a renderer on a loaded machine can take a second).
OPEN_TIMEOUT_S = 15.0

Listener = Callable[[dict[str, Any]], Any]


class SlotPool(Protocol):
    """What a slot needs from its pool (:class:`carnb.browser.pool.BrowserPool`)."""

    op_timeout_ms: int
    generation: int

    @property
    def running(self) -> bool: ...

    async def open_context(self, width: int, height: int) -> tuple[BrowserContext, Page, int]: ...

    def schedule_spare(self) -> None: ...


class BrowserSlot:
    """One session's isolated browser context; created by :meth:`BrowserPool.slot`."""

    def __init__(self, pool: SlotPool, owner: str = "") -> None:
        self.owner = owner
        self.state = NOT_LAUNCHED
        self.url: str | None = None
        self.runs = 0
        self._pool = pool
        self._context: BrowserContext | None = None
        self._page: Page | None = None
        self._popup: Page | None = None
        self._generation = 0
        self._viewport: tuple[int, int] | None = None
        self._env = OpEnv(timeout_ms=pool.op_timeout_ms)
        self._lock = asyncio.Lock()
        self._listeners: list[Listener] = []
        self._crashed: weakref.WeakSet[Page] = weakref.WeakSet()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- listeners ------------------------------------------------------------------------

    def add_listener(self, fn: Listener) -> None:
        self._listeners.append(fn)

    def snapshot(self) -> dict[str, Any]:
        return {"owner": self.owner, "state": self.state, "url": self.url, "runs": self.runs}

    def _emit(self, event: str, **extra: Any) -> None:
        info = {**self.snapshot(), "event": event, **extra}
        for fn in list(self._listeners):
            try:
                fn(info)
            except Exception:
                log.exception("browser slot listener %r failed", fn)

    # -- running scripts ------------------------------------------------------------------

    async def run(
        self, script: object, *, width: object = 1280, height: object = 720
    ) -> dict[str, Any]:
        """Run a script; ``{steps: [{op, status, duration_ms, data, error}]}``.

        ``script`` and the viewport may come straight from the wire (``width``/``height`` of
        ``None`` mean 1280x720); they are validated here.

        Raises :class:`~carnb.errors.InvalidParams` for a bad script (nothing runs) and
        :class:`~carnb.errors.BrowserUnavailable` when no Chromium can be launched.
        """
        ops = validate_script(script)
        size = validate_viewport(width, height)
        async with self._lock:
            page = await self._ensure_page(size)
            self._env.url_mark = page.url
            steps: list[dict[str, Any]] = []
            for op in ops:
                page = self._adopt_popup(page)
                step = await self._step(page, op)
                steps.append(step)
                if step["status"] == "error":
                    break
            self.runs += 1
            if self._page is not None and not self._page.is_closed():
                self.url = self._page.url
            ok = all(s["status"] == "ok" for s in steps)
            self._emit("run", steps=len(steps), ok=ok)
        self._pool.schedule_spare()
        return {"steps": steps}

    async def _step(self, page: Page, op: dict[str, Any]) -> dict[str, Any]:
        name = op["op"]
        timeout_ms = self._env.timeout_ms
        if name == "wait" and op.get("timeout_ms"):
            timeout_ms = op["timeout_ms"]
        started = time.perf_counter()
        data: Any = None
        error: str | None = None
        try:
            data = await asyncio.wait_for(
                OPS[name](page, op, self._env), timeout_ms / 1000 + BACKSTOP_SLACK_S
            )
        except StepError as exc:
            error = str(exc) if not self._gone(page) else self._explain(name, None)
            if exc.timed_out and name not in ("navigate", "wait"):
                # navigation and waits time out on slow servers; other ops on a stuck page
                error += await self._recover(page, quiet=True)
        except TimeoutError:
            error = f"{name} did not finish within {timeout_ms} ms"
            error += await self._recover(page)
        except Exception as exc:  # Playwright errors we did not word: report, keep the loop alive
            error = self._explain(name, None if self._gone(page) else exc)
        if error is None and name in SETTLING_OPS:
            self._env.url_mark = page.url
        duration_ms = int(round((time.perf_counter() - started) * 1000))
        return {
            "op": name,
            "status": "error" if error is not None else "ok",
            "duration_ms": duration_ms,
            "data": data if error is None else None,
            "error": error,
        }

    def _gone(self, page: Page) -> bool:
        return (
            page.is_closed()
            or page in self._crashed
            or not self._pool.running
            or self._page is not page
        )

    def _explain(self, name: str, exc: BaseException | None) -> str:
        if self.state == CLOSED or self._page is None:
            return f"{name} failed: the browser slot was closed during this step"
        if not self._pool.running:
            return (
                f"{name} failed: the browser went away (Chromium exited or was killed); the next "
                "run relaunches it"
            )
        if exc is None:
            what = "crashed" if self._page in self._crashed else "was closed"
            return f"{name} failed: the page {what}; the next run opens a new one"
        return f"{name} failed: {first_line(exc)}"

    async def _recover(self, page: Page, *, quiet: bool = False) -> str:
        """After a step timed out: keep the page if it answers, else replace it."""
        if self._gone(page):
            return ""
        try:
            await asyncio.wait_for(page.evaluate("1"), PROBE_TIMEOUT_S)
            return "" if quiet else "; the page is still responsive"
        except Exception as exc:
            log.warning("page of slot %s is not answering (%s); replacing it", self.owner, exc)
        context = self._context
        if context is None or self._page is not page:
            return ""
        try:
            await asyncio.wait_for(page.close(run_before_unload=False), PROBE_TIMEOUT_S * 2)
        except Exception as exc:
            log.debug("closing the hung page failed: %s", exc)
        try:
            self._page = await asyncio.wait_for(context.new_page(), OPEN_TIMEOUT_S)
            self._watch(self._page)
        except Exception as exc:
            log.warning("opening a replacement page failed: %s", exc)
            await self._discard(reason="page hung")
            return "; the page stopped responding and was closed; the next run opens a new one"
        return "; the page stopped responding and was replaced by a blank page (ids are stale)"

    # -- pages and contexts ---------------------------------------------------------------

    async def _ensure_page(self, size: tuple[int, int]) -> Page:
        browser_ok = self._pool.running and self._generation == self._pool.generation
        page = self._page
        if page is not None and browser_ok and not page.is_closed() and page not in self._crashed:
            if size != self._viewport:
                await page.set_viewport_size({"width": size[0], "height": size[1]})
                self._viewport = size
            return page
        if self._context is not None and browser_ok:
            # the page crashed or was closed but the context (cookies, storage) is alive
            if page is not None and not page.is_closed():
                await self._close_page(page)
            try:
                page = await asyncio.wait_for(self._context.new_page(), OPEN_TIMEOUT_S)
            except Exception as exc:
                log.warning(
                    "a new page in slot %s's context failed (%s); reopening", self.owner, exc
                )
            else:
                await page.set_viewport_size({"width": size[0], "height": size[1]})
                self._page, self._viewport = page, size
                self._watch(page)
                self._emit("new page")
                return page
        relaunch = self._context is not None
        if self._context is not None:
            await self._close_context()
        context, page, generation = await self._pool.open_context(*size)
        self._context, self._page, self._generation = context, page, generation
        self._viewport = size
        self._watch(page)
        self.state = LAUNCHED
        self.url = page.url
        self._emit("relaunched" if relaunch else "launched")
        return page

    def _watch(self, page: Page) -> None:
        page.on("popup", self._on_popup)
        page.on("crash", self._on_crash)

    def _on_crash(self, page: Page) -> None:
        log.warning("the page of browser slot %s crashed", self.owner)
        self._crashed.add(page)

    def _on_popup(self, popup: Page) -> None:
        self._popup = popup

    def _adopt_popup(self, page: Page) -> Page:
        """Follow a page opened by the current one (``target=_blank``, ``window.open``)."""
        popup, self._popup = self._popup, None
        if popup is None or popup.is_closed():
            return page
        self._page = popup
        self._watch(popup)
        task = asyncio.get_running_loop().create_task(self._close_page(page))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return popup

    async def _close_page(self, page: Page) -> None:
        try:
            await asyncio.wait_for(page.close(run_before_unload=False), PROBE_TIMEOUT_S * 5)
        except Exception as exc:
            log.debug("closing a replaced page failed: %s", exc)

    async def _close_context(self) -> bool:
        context, self._context = self._context, None
        self._page = self._popup = None
        if context is None:
            return False
        if self._generation == self._pool.generation and self._pool.running:
            try:
                await asyncio.wait_for(context.close(), 10)
            except Exception as exc:
                log.debug("closing the context of slot %s failed: %s", self.owner, exc)
        return True

    async def _discard(self, *, reason: str) -> bool:
        closed = await self._close_context()
        if self.state == LAUNCHED or closed:
            self.state = CLOSED
            self._emit("closed", reason=reason)
        return closed

    async def close(self) -> dict[str, bool]:
        """Close this session's context. ``{closed: bool}``: was anything open. Idempotent."""
        closed = await self._discard(reason="closed")
        return {"closed": closed}

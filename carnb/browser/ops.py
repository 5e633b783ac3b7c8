"""Executing one validated operation on a Playwright page, and wording its failures.

Each ``op_*`` coroutine takes the page, the validated op (see :mod:`carnb.browser.script`) and
the slot's :class:`OpEnv`, and returns the step's ``data`` or raises :class:`StepError` with the
message a caller reads in the trace. Every Playwright call is given the op's timeout; calls that
take none (``evaluate``) are bounded by the slot's ``asyncio.wait_for`` backstop. Playwright is
only imported inside functions (this package must import without it).
"""

from __future__ import annotations

import base64
import contextlib
import json
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from carnb.browser.observe import (
    ID_ATTR,
    MAX_ELEMENT_LINES,
    MAX_NAME,
    MAX_TEXT,
    MAX_TEXT_LINES,
    OBSERVE_JS,
    RESOLVE_JS,
    SCROLL_JS,
    SELECT_JS,
)

if TYPE_CHECKING:
    from playwright.async_api import Page


class StepError(Exception):
    """A step failed; the message is the trace's ``error`` string.

    ``timed_out`` says the op ran into its timeout, so the page may have stopped answering.
    """

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


@dataclass
class OpEnv:
    """Per-slot state the ops read and update."""

    timeout_ms: int
    counter: int = 0  # next element number; ids below it were issued by observe
    # The URL url_changed compares against: the page's URL when the run started or when the
    # last navigate/observe/wait/screenshot step finished (clicks and keys do not move it).
    url_mark: str | None = None


def first_line(exc: BaseException) -> str:
    """Playwright's message without the ``Page.goto:`` prefix and the call log."""
    text = str(getattr(exc, "message", None) or exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    head, sep, rest = line.partition(": ")
    if sep and "." in head and " " not in head:
        line = rest
    return line.strip().removeprefix("Error: ")


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    if len(png) < 24 or png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise StepError("screenshot failed: Chromium did not return a PNG image")
    width, height = struct.unpack(">II", png[16:24])
    return int(width), int(height)


def _is_timeout(exc: BaseException) -> bool:
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    return isinstance(exc, PlaywrightTimeout)


def _navigation_race(exc: BaseException) -> bool:
    msg = str(exc)
    return "Execution context was destroyed" in msg or "navigation" in msg.lower()


async def _settle_error_page(page: Page) -> None:
    """After a failed load Chromium commits its error page a moment later; let it land so it
    does not interrupt the next navigation."""
    from playwright.async_api import Error

    with contextlib.suppress(Error):  # no error page for this kind of failure
        await page.wait_for_url(
            lambda u: u.startswith("chrome-error:"), wait_until="commit", timeout=2000
        )


async def op_navigate(page: Page, op: dict[str, Any], env: OpEnv) -> dict[str, Any]:
    from playwright.async_api import Error

    url = op["url"]
    for attempt in range(2):
        try:
            response = await page.goto(url, wait_until="load", timeout=env.timeout_ms)
            break
        except Error as exc:
            if _is_timeout(exc):
                raise StepError(
                    f"navigate to {url} timed out after {env.timeout_ms} ms: the page did not "
                    "finish loading; the browser is still usable",
                    timed_out=True,
                ) from None
            message = first_line(exc)
            if attempt == 0 and "interrupted by another navigation" in message:
                await _settle_error_page(page)
                continue  # a late error page from an earlier failure got in the way
            if "net::ERR_" in message and "ERR_ABORTED" not in message:
                await _settle_error_page(page)
            raise StepError(f"navigate to {url} failed: {message}") from None
    return {"url": page.url, "status": response.status if response is not None else None}


async def op_observe(page: Page, op: dict[str, Any], env: OpEnv) -> dict[str, Any]:
    from playwright.async_api import Error

    args = [ID_ATTR, env.counter, MAX_ELEMENT_LINES, MAX_TEXT_LINES, MAX_NAME, MAX_TEXT]
    for attempt in range(3):
        try:
            await page.wait_for_load_state("domcontentloaded", timeout=env.timeout_ms)
            result: dict[str, Any] = await page.evaluate(OBSERVE_JS, args)
            break
        except Error as exc:
            if _is_timeout(exc):
                raise StepError(
                    f"observe timed out after {env.timeout_ms} ms waiting for the page to load",
                    timed_out=True,
                ) from None
            if attempt < 2 and _navigation_race(exc):
                continue  # the page navigated under us; read the new document
            raise StepError(f"observe failed: {first_line(exc)}") from None
    env.counter = max(env.counter, int(result.pop("counter")))
    return result


async def _resolve(page: Page, element_id: str, env: OpEnv, verb: str) -> tuple[str, bool]:
    """Check an id still names a visible element; returns its tag and whether a click on it
    opens a new tab."""
    number = int(element_id[3:])
    if number >= env.counter:
        raise StepError(
            f"element {element_id} was never assigned in this session; run observe and use an "
            "id from its summary"
        )
    from playwright.async_api import Error

    try:
        where = await page.evaluate(RESOLVE_JS, [ID_ATTR, element_id])
    except Error as exc:
        if _navigation_race(exc):
            where = "missing"
        else:
            raise StepError(f"{verb} {element_id} failed: {first_line(exc)}") from None
    if where == "missing":
        raise StepError(
            f"element {element_id} is stale: the page changed since observe; run observe again"
        )
    if where == "hidden":
        raise StepError(
            f"element {element_id} is not visible now (hidden or zero-sized); run observe again"
        )
    _, tag, *popup = str(where).split(":")
    return tag, bool(popup)


def _selector(element_id: str) -> str:
    return f'[{ID_ATTR}="{element_id}"]'


async def op_click(page: Page, op: dict[str, Any], env: OpEnv) -> dict[str, Any]:
    from playwright.async_api import Error

    eid = op["element_id"]
    _, opens_tab = await _resolve(page, eid, env, "click")
    locator = page.locator(_selector(eid)).first
    try:
        if opens_tab:
            # wait for the new tab, so the slot follows it before the next step runs
            async with page.expect_popup(timeout=env.timeout_ms) as popup:
                await locator.click(timeout=env.timeout_ms)
            try:
                tab = await popup.value
            except Error:
                raise StepError(
                    f"click {eid} was done but the new tab it should open did not appear within "
                    f"{env.timeout_ms} ms"
                ) from None
            return {"element_id": eid, "url": tab.url, "new_tab": True}
        await locator.click(timeout=env.timeout_ms)
    except Error as exc:
        if _is_timeout(exc):
            raise StepError(
                f"click {eid} timed out after {env.timeout_ms} ms: the element did not become "
                "clickable (covered, disabled or moving)",
                timed_out=True,
            ) from None
        raise StepError(f"click {eid} failed: {first_line(exc)}") from None
    return {"element_id": eid, "url": page.url}


async def op_type(page: Page, op: dict[str, Any], env: OpEnv) -> dict[str, Any]:
    from playwright.async_api import Error

    eid, text = op["element_id"], op["text"]
    tag, _ = await _resolve(page, eid, env, "type into")
    locator = page.locator(_selector(eid)).first
    try:
        if tag == "SELECT":  # choose the option whose label (or else value) is the text
            found: dict[str, Any] = await locator.evaluate(SELECT_JS, text)
            if found["value"] is None:
                labels = ", ".join(json.dumps(label) for label in found["labels"][:20])
                raise StepError(f"type into {eid} failed: no option {text!r}; options: {labels}")
            await locator.select_option(found["value"], timeout=env.timeout_ms)
        else:
            await locator.fill(text, timeout=env.timeout_ms)
    except Error as exc:
        if _is_timeout(exc):
            raise StepError(
                f"type into {eid} timed out after {env.timeout_ms} ms: the element is not "
                "editable (disabled or read-only)",
                timed_out=True,
            ) from None
        raise StepError(f"type into {eid} failed: {first_line(exc)}") from None
    return {"element_id": eid, "chars": len(text)}


async def op_scroll(page: Page, op: dict[str, Any], env: OpEnv) -> dict[str, Any]:
    from playwright.async_api import Error

    try:
        pos: dict[str, Any] = await page.evaluate(SCROLL_JS, op["delta_y"])
    except Error as exc:
        raise StepError(f"scroll failed: {first_line(exc)}") from None
    delta = op["delta_y"]
    return {"delta_y": int(delta) if float(delta).is_integer() else delta, **pos}


async def op_keypress(page: Page, op: dict[str, Any], env: OpEnv) -> dict[str, Any]:
    from playwright.async_api import Error

    combo = "+".join([*op["modifiers"], op["key"]])
    try:
        await page.keyboard.press(combo)
    except Error as exc:
        raise StepError(f"keypress {combo} failed: {first_line(exc)}") from None
    return {"key": op["key"], "modifiers": op["modifiers"]}


async def op_wait(page: Page, op: dict[str, Any], env: OpEnv) -> dict[str, Any]:
    from playwright.async_api import Error

    timeout = op["timeout_ms"] or env.timeout_ms
    condition = op["condition"]
    try:
        if condition == "page_loaded":
            await page.wait_for_load_state("load", timeout=timeout)
        else:
            mark = env.url_mark
            if page.url == mark:
                await page.wait_for_url(lambda u: u != mark, wait_until="commit", timeout=timeout)
    except Error as exc:
        if _is_timeout(exc):
            what = (
                "the page did not finish loading"
                if condition == "page_loaded"
                else f"the URL is still {page.url}"
            )
            raise StepError(
                f"wait {condition} timed out after {timeout} ms: {what}", timed_out=True
            ) from None
        raise StepError(f"wait {condition} failed: {first_line(exc)}") from None
    return {"condition": condition, "success": True, "url": page.url}


async def op_screenshot(page: Page, op: dict[str, Any], env: OpEnv) -> dict[str, Any]:
    from playwright.async_api import Error

    try:
        png = await page.screenshot(
            type="png", full_page=op["full_page"], timeout=env.timeout_ms, animations="disabled"
        )
    except Error as exc:
        raise StepError(f"screenshot failed: {first_line(exc)}") from None
    width, height = png_size(png)
    return {
        "mime_type": "image/png",
        "width": width,
        "height": height,
        "full_page": op["full_page"],
        "base64": base64.b64encode(png).decode("ascii"),
    }


OPS = {
    "navigate": op_navigate,
    "observe": op_observe,
    "click": op_click,
    "type": op_type,
    "scroll": op_scroll,
    "keypress": op_keypress,
    "wait": op_wait,
    "screenshot": op_screenshot,
}

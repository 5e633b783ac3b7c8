"""``browser.*`` handlers: the session's lazy browser slot (launched on first ``browser.run``)."""

from __future__ import annotations

from typing import Any

from carnb.app.methods import Method, Params
from carnb.app.params import opt_int
from carnb.app.ports import Record, SessionBrowser
from carnb.app.services import Services
from carnb.errors import InvalidParams
from carnb.protocol.session import ClientSession


def attach(svc: Services) -> None:
    """Close a session's browser slot when the session ends."""
    if svc.browsers is not None:
        svc.sessions.on_close(_close_slot)


async def _close_slot(s: ClientSession) -> None:
    if s.browser is not None:
        await s.browser.close()


def slot_of(s: ClientSession, svc: Services) -> SessionBrowser:
    """The session's slot, created (not launched) on first use; mirrors its state on the session."""
    if s.browser is None:
        assert svc.browsers is not None  # the table offers browser.* only with a pool
        slot = svc.browsers.slot(owner=s.client_id)

        def mirror(info: Record) -> None:
            s.update(browser_state=info.get("state", s.browser_state), browser_url=info.get("url"))

        slot.add_listener(mirror)
        s.browser = slot
    current: SessionBrowser = s.browser
    return current


async def browser_run(s: ClientSession, p: Params, svc: Services) -> Record:
    if "script" not in p or p["script"] is None:
        raise InvalidParams("script is required: {operations: [{op: ..., ...}]}")
    width = opt_int(p, "width", 1280, minimum=100, maximum=8192)
    height = opt_int(p, "height", 720, minimum=100, maximum=8192)
    return await slot_of(s, svc).run(p["script"], width=width, height=height)


async def browser_close(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    if s.browser is None:
        return {"closed": False}
    slot: SessionBrowser = s.browser
    return await slot.close()


METHODS = (
    Method(
        "browser.run",
        browser_run,
        mode="task",
        needs="browser",
        summary="Run a script of browser operations in the session's Chromium",
        params={
            "script": "{operations: [{op, ...}]} (object or JSON string)",
            "width": "integer? (1280)",
            "height": "integer? (720)",
        },
        result="{steps: [{op, status, duration_ms, data, error}]}",
    ),
    Method(
        "browser.close",
        browser_close,
        mode="task",
        needs="browser",
        summary="Close the session's browser context",
        result="{closed}",
    ),
)

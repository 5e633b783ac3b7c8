"""``browser.*`` handlers: the session's lazy browser slot (launched on first ``browser.run``)."""

from __future__ import annotations

from typing import Any

from carnb.errors import InvalidParams
from carnb.protocol.session import ClientSession
from carnb.server.dispatch import MethodTable
from carnb.server.params import opt_int
from carnb.server.services import Services


def slot_of(s: ClientSession, svc: Services) -> Any:
    """The session's slot, created (not launched) on first use; mirrors its state on the session."""
    if s.browser is None:
        assert svc.browsers is not None
        slot = svc.browsers.slot(owner=s.client_id)

        def mirror(info: dict[str, Any]) -> None:
            s.update(browser_state=info.get("state", s.browser_state), browser_url=info.get("url"))

        slot.add_listener(mirror)
        s.browser = slot
    return s.browser


def register(table: MethodTable, services: Services) -> None:
    if services.browsers is None:
        return

    async def close_slot(s: ClientSession) -> None:
        if s.browser is not None:
            await s.browser.close()

    services.sessions.on_close(close_slot)
    m = table.method

    @m(
        "browser.run",
        mode="async",
        summary="Run a script of browser operations in the session's Chromium",
        params={
            "script": "{operations: [{op, ...}]} (object or JSON string)",
            "width": "integer? (1280)",
            "height": "integer? (720)",
        },
        result="{steps: [{op, status, duration_ms, data, error}]}",
    )
    async def browser_run(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
        if "script" not in p or p["script"] is None:
            raise InvalidParams("script is required: {operations: [{op: ..., ...}]}")
        width = opt_int(p, "width", 1280, minimum=100, maximum=8192)
        height = opt_int(p, "height", 720, minimum=100, maximum=8192)
        assert width is not None and height is not None
        return await slot_of(s, svc).run(p["script"], width=width, height=height)

    @m(
        "browser.close",
        mode="async",
        summary="Close the session's browser context",
        result="{closed}",
    )
    async def browser_close(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
        if s.browser is None:
            return {"closed": False}
        return await s.browser.close()

"""Every op against a real Chromium on pages served from 127.0.0.1 (one Chromium per module)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time

import pytest

from carnb.browser import BrowserPool
from carnb.errors import InvalidParams

from .conftest import element_id, png_size, steps_ok
from .site import Site

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]


def nav(url: str, *more: dict[str, object]) -> dict[str, object]:
    return {"operations": [{"op": "navigate", "url": url}, *more]}


OBSERVE = {"op": "observe"}


async def test_navigate_and_observe_lists_roles_and_names(pool: BrowserPool, site: Site) -> None:
    slot = pool.slot("observer")
    steps = steps_ok(await slot.run(nav(site.url("/index.html"), OBSERVE)))
    assert [s["op"] for s in steps] == ["navigate", "observe"]
    assert steps[0]["data"] == {"url": site.url("/index.html"), "status": 200}
    for s in steps:
        assert isinstance(s["duration_ms"], int) and s["error"] is None
    data = steps[1]["data"]
    assert data["url"] == site.url("/index.html") and data["title"] == "Home"
    summary = data["summary"]
    assert "(heading) Welcome" in summary
    assert "(text) This is the home page." in summary
    element_id(summary, "button", "Show")
    element_id(summary, "textbox", "Name")  # named by its <label for>
    element_id(summary, "textbox", "Search")  # named by aria-label
    element_id(summary, "link", "Second page")
    assert "Hidden button" not in summary
    assert data["element_count"] == len(re.findall(r"^\[el_\d+\] ", summary, re.M)) == 4
    assert slot.state == "launched" and slot.url == site.url("/index.html")
    await slot.close()


async def test_click_changes_the_page(pool: BrowserPool, site: Site) -> None:
    slot = pool.slot()
    summary = steps_ok(await slot.run(nav(site.url("/index.html"), OBSERVE)))[1]["data"]["summary"]
    assert "Clicked!" not in summary
    button = element_id(summary, "button", "Show")
    steps = steps_ok(
        await slot.run({"operations": [{"op": "click", "element_id": button}, OBSERVE]})
    )
    assert steps[0]["data"]["element_id"] == button
    assert "(text) Clicked!" in steps[1]["data"]["summary"]
    await slot.close()


async def test_ids_are_stable_across_runs(pool: BrowserPool, site: Site) -> None:
    slot = pool.slot()
    first = steps_ok(await slot.run(nav(site.url("/index.html"), OBSERVE)))[1]["data"]["summary"]
    again = steps_ok(await slot.run({"operations": [OBSERVE]}))[0]["data"]["summary"]
    lines = [ln for ln in first.splitlines() if ln.startswith("[el_")]
    assert lines and lines == [ln for ln in again.splitlines() if ln.startswith("[el_")]
    link = element_id(first, "link", "Second page")
    steps = steps_ok(
        await slot.run(
            {
                "operations": [
                    {"op": "click", "element_id": link},
                    {"op": "wait", "condition": "url_changed"},
                    OBSERVE,
                ]
            }
        )
    )
    assert steps[2]["data"]["title"] == "Second"
    # a new document gets new numbers: an old id never names a different element
    back = element_id(steps[2]["data"]["summary"], "link", "Back home")
    assert int(back[3:]) > max(int(ln[4 : ln.index("]")]) for ln in lines)
    await slot.close()


async def test_type_then_observe_shows_the_value(pool: BrowserPool, site: Site) -> None:
    slot = pool.slot()
    summary = steps_ok(await slot.run(nav(site.url("/index.html"), OBSERVE)))[1]["data"]["summary"]
    name = element_id(summary, "textbox", "Name")
    steps = steps_ok(
        await slot.run(
            {"operations": [{"op": "type", "element_id": name, "text": "Ada Lovelace"}, OBSERVE]}
        )
    )
    assert steps[0]["data"] == {"element_id": name, "chars": 12}
    assert f'[{name}] textbox "Name" value="Ada Lovelace"' in steps[1]["data"]["summary"]
    await slot.close()


async def test_type_chooses_an_option_of_a_select(pool: BrowserPool, site: Site) -> None:
    slot = pool.slot()
    summary = steps_ok(await slot.run(nav(site.url("/select.html"), OBSERVE)))[1]["data"]["summary"]
    color = element_id(summary, "combobox", "Color")
    assert f'[{color}] combobox "Color" value="Red"' in summary
    steps = steps_ok(
        await slot.run(
            {"operations": [{"op": "type", "element_id": color, "text": "Green"}, OBSERVE]}
        )
    )
    assert f'[{color}] combobox "Color" value="Green"' in steps[1]["data"]["summary"]
    result = await slot.run({"operations": [{"op": "type", "element_id": color, "text": "Mauve"}]})
    error = result["steps"][0]["error"]
    assert "no option 'Mauve'" in error and '"Blue"' in error
    await slot.close()


async def test_keypress_enter_submits_the_form(pool: BrowserPool, site: Site) -> None:
    slot = pool.slot()
    summary = steps_ok(await slot.run(nav(site.url("/index.html"), OBSERVE)))[1]["data"]["summary"]
    search = element_id(summary, "textbox", "Search")
    steps = steps_ok(
        await slot.run(
            {
                "operations": [
                    {"op": "type", "element_id": search, "text": "kittens"},
                    {"op": "keypress", "key": "Enter"},
                    {"op": "wait", "condition": "url_changed", "timeout_ms": 5000},
                    OBSERVE,
                ]
            }
        )
    )
    assert steps[1]["data"] == {"key": "Enter", "modifiers": []}
    assert steps[2]["data"]["url"] == site.url("/result.html?q=kittens")
    assert steps[3]["data"]["title"] == "Result"
    assert "You searched for kittens" in steps[3]["data"]["summary"]
    await slot.close()


async def test_keypress_with_modifiers(pool: BrowserPool, site: Site) -> None:
    slot = pool.slot()
    steps = steps_ok(
        await slot.run(
            nav(
                site.url("/keys.html"),
                {"op": "keypress", "key": "k", "modifiers": ["Control"]},
                OBSERVE,
            )
        )
    )
    assert "pressed ctrl+k" in steps[2]["data"]["summary"]
    await slot.close()


async def test_scroll_moves_the_page(pool: BrowserPool, site: Site) -> None:
    slot = pool.slot()
    steps = steps_ok(
        await slot.run(
            nav(
                site.url("/long.html"),
                OBSERVE,
                {"op": "scroll", "delta_y": 700},
                OBSERVE,
            ),
            width=800,
            height=600,
        )
    )
    assert "at top" in steps[1]["data"]["summary"]
    assert steps[2]["data"]["scroll_y"] == 700 and steps[2]["data"]["delta_y"] == 700
    # the page's own scroll listener saw it
    assert "scrolled to 700" in steps[3]["data"]["summary"]
    steps = steps_ok(await slot.run({"operations": [{"op": "scroll", "delta_y": -200}, OBSERVE]}))
    assert steps[0]["data"]["scroll_y"] == 500
    await slot.close()


async def test_wait_url_changed_and_page_loaded(pool: BrowserPool, site: Site) -> None:
    slot = pool.slot()
    # the page moves itself after 300 ms
    steps = steps_ok(
        await slot.run(
            nav(
                site.url("/later.html"),
                {"op": "wait", "condition": "url_changed", "timeout_ms": 5000},
            )
        )
    )
    assert steps[1]["data"]["url"] == site.url("/second.html")
    # a click starts a navigation to a page whose image takes 600 ms; wait for its load event
    summary = steps_ok(await slot.run(nav(site.url("/links.html"), OBSERVE)))[1]["data"]["summary"]
    link = element_id(summary, "link", "Go slow")
    steps = steps_ok(
        await slot.run(
            {
                "operations": [
                    {"op": "click", "element_id": link},
                    {"op": "wait", "condition": "page_loaded", "timeout_ms": 5000},
                    OBSERVE,
                ]
            }
        )
    )
    assert steps[2]["data"]["title"] == "Slow load"
    assert "fully loaded" in steps[2]["data"]["summary"]
    # nothing changes: url_changed times out with an error step
    result = await slot.run(
        {"operations": [{"op": "wait", "condition": "url_changed", "timeout_ms": 300}, OBSERVE]}
    )
    assert [s["status"] for s in result["steps"]] == ["error"]
    assert "wait url_changed timed out after 300 ms" in result["steps"][0]["error"]
    await slot.close()


async def test_screenshot_is_a_png_of_the_requested_size(pool: BrowserPool, site: Site) -> None:
    slot = pool.slot()
    steps = steps_ok(
        await slot.run(nav(site.url("/index.html"), {"op": "screenshot"}), width=800, height=600)
    )
    shot = steps[1]["data"]
    assert png_size(shot["base64"]) == (800, 600) == (shot["width"], shot["height"])
    assert shot["mime_type"] == "image/png"
    # a new size on the next run resizes the viewport; full_page covers the whole document
    steps = steps_ok(
        await slot.run(
            nav(
                site.url("/long.html"),
                {"op": "screenshot"},
                {"op": "screenshot", "full_page": True},
            ),
            width=640,
            height=480,
        )
    )
    assert png_size(steps[1]["data"]["base64"]) == (640, 480)
    width, height = png_size(steps[2]["data"]["base64"])
    assert width == 640 and height > 5000
    await slot.close()


async def test_stale_id_is_an_error_step_and_stops_the_run(pool: BrowserPool, site: Site) -> None:
    slot = pool.slot()
    summary = steps_ok(await slot.run(nav(site.url("/replace.html"), OBSERVE)))[1]["data"][
        "summary"
    ]
    old = element_id(summary, "button", "Replace everything")
    result = await slot.run(
        {
            "operations": [
                {"op": "click", "element_id": old},  # replaces the whole body
                {"op": "click", "element_id": old},
                OBSERVE,
            ]
        }
    )
    steps = result["steps"]
    assert [s["status"] for s in steps] == ["ok", "error"]  # stopped at the failure
    assert steps[1]["error"] == (
        f"element {old} is stale: the page changed since observe; run observe again"
    )
    assert steps[1]["data"] is None
    # never-issued ids are told apart from stale ones
    result = await slot.run({"operations": [{"op": "click", "element_id": "el_999999"}]})
    assert "was never assigned" in result["steps"][0]["error"]
    # the slot is fine: observe finds the new button under a new id
    summary = steps_ok(await slot.run({"operations": [OBSERVE]}))[0]["data"]["summary"]
    assert element_id(summary, "button", "Fresh") != old
    # a navigation makes ids stale too
    result = await slot.run(
        nav(
            site.url("/index.html"),
            {"op": "click", "element_id": element_id(summary, "button", "Fresh")},
        )
    )
    assert "is stale" in result["steps"][1]["error"]
    # after close, old ids are stale (the counter is not reset)
    assert await slot.close() == {"closed": True}
    result = await slot.run({"operations": [{"op": "click", "element_id": old}]})
    assert "is stale" in result["steps"][0]["error"]
    await slot.close()


async def test_hidden_element_is_reported(pool: BrowserPool, site: Site) -> None:
    slot = pool.slot()
    summary = steps_ok(await slot.run(nav(site.url("/hide.html"), OBSERVE)))[1]["data"]["summary"]
    hide, target = element_id(summary, "button", "Hide"), element_id(summary, "button", "Target")
    result = await slot.run(
        {
            "operations": [
                {"op": "click", "element_id": hide},
                {"op": "click", "element_id": target},
            ]
        }
    )
    assert [s["status"] for s in result["steps"]] == ["ok", "error"]
    assert f"element {target} is not visible now" in result["steps"][1]["error"]
    await slot.close()


async def test_a_link_opening_a_new_tab_is_followed(pool: BrowserPool, site: Site) -> None:
    slot = pool.slot()
    summary = steps_ok(await slot.run(nav(site.url("/popup.html"), OBSERVE)))[1]["data"]["summary"]
    link = element_id(summary, "link", "Open in a new tab")
    steps = steps_ok(
        await slot.run(
            {
                "operations": [
                    {"op": "click", "element_id": link},
                    {"op": "wait", "condition": "page_loaded"},
                    OBSERVE,
                ]
            }
        )
    )
    assert steps[2]["data"]["title"] == "Second"
    assert slot.url == site.url("/second.html")
    await slot.close()


async def test_crashed_page_is_replaced_keeping_the_context(pool: BrowserPool, site: Site) -> None:
    slot = pool.slot()
    steps_ok(await slot.run(nav(site.url("/setcookie"))))
    page = slot._page  # test-only: crash the renderer the way a real crash would
    assert page is not None
    cdp = await page.context.new_cdp_session(page)
    events: list[str] = []
    slot.add_listener(lambda e: events.append(e["event"]))
    with contextlib.suppress(Exception):  # the crashed target never answers
        await asyncio.wait_for(cdp.send("Page.crash"), 2)
    # the next run notices, opens a new page in the same context: the cookie is still there
    steps = steps_ok(await slot.run(nav(site.url("/showcookie"), OBSERVE)))
    assert "cookie: flavor=oatmeal" in steps[1]["data"]["summary"]
    assert slot._page is not page and events[0] == "new page"
    await slot.close()


async def test_two_slots_are_isolated(pool: BrowserPool, site: Site) -> None:
    a, b = pool.slot("a"), pool.slot("b")
    steps_ok(await a.run(nav(site.url("/setcookie"))))
    seen_a = steps_ok(await a.run(nav(site.url("/showcookie"), OBSERVE)))[1]["data"]["summary"]
    seen_b = steps_ok(await b.run(nav(site.url("/showcookie"), OBSERVE)))[1]["data"]["summary"]
    assert "cookie: flavor=oatmeal" in seen_a
    assert "cookie: no cookie" in seen_b
    await a.close()
    await b.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable_url_is_an_error_step_and_slot_stays_usable(
    pool: BrowserPool, site: Site
) -> None:
    slot = pool.slot()
    url = f"http://127.0.0.1:{closed_port()}/"
    result = await slot.run(nav(url, OBSERVE))
    steps = result["steps"]
    assert len(steps) == 1 and steps[0]["status"] == "error"
    assert steps[0]["error"].startswith(f"navigate to {url} failed: ")
    assert "ERR_CONNECTION_REFUSED" in steps[0]["error"]
    steps = steps_ok(await slot.run(nav(site.url("/second.html"), OBSERVE)))
    assert steps[1]["data"]["title"] == "Second"
    await slot.close()


async def test_never_answering_page_times_out_without_blocking_others(site: Site) -> None:
    pool = BrowserPool(op_timeout_ms=1500)
    try:
        hung, other = pool.slot("hung"), pool.slot("other")
        steps_ok(await other.run(nav(site.url("/index.html"))))  # launch before timing
        started = time.monotonic()
        hung_task = asyncio.create_task(hung.run(nav(site.url("/hang"), OBSERVE)))
        await asyncio.sleep(0.3)
        other_steps = steps_ok(await other.run(nav(site.url("/second.html"), OBSERVE)))
        other_done = time.monotonic()
        assert not hung_task.done()  # the other session finished while this one hangs
        assert other_steps[1]["data"]["title"] == "Second"
        result = await asyncio.wait_for(hung_task, 10)
        elapsed = time.monotonic() - started
        steps = result["steps"]
        assert len(steps) == 1 and steps[0]["status"] == "error"
        assert "timed out after 1500 ms" in steps[0]["error"]
        assert other_done - started < elapsed
        # the hung slot is still usable
        steps = steps_ok(await hung.run(nav(site.url("/second.html"), OBSERVE)))
        assert steps[1]["data"]["title"] == "Second"
    finally:
        await pool.close()


async def test_frozen_page_is_replaced_after_its_step_times_out(site: Site) -> None:
    pool = BrowserPool(op_timeout_ms=1000)
    try:
        slot, other = pool.slot("frozen"), pool.slot("other")
        summary = steps_ok(await slot.run(nav(site.url("/busy.html"), OBSERVE)))[1]["data"][
            "summary"
        ]
        freeze = element_id(summary, "button", "Freeze")
        result = await asyncio.wait_for(
            slot.run(
                {
                    "operations": [
                        {"op": "click", "element_id": freeze},  # the page spins forever after this
                        {"op": "scroll", "delta_y": 10},
                    ]
                }
            ),
            15,
        )
        steps = result["steps"]
        assert steps[-1]["status"] == "error", steps
        assert "1000 ms" in steps[-1]["error"], steps
        assert "replaced by a blank page" in steps[-1]["error"], steps
        steps_ok(await other.run(nav(site.url("/second.html"))))
        steps = steps_ok(await slot.run(nav(site.url("/second.html"), OBSERVE)))
        assert steps[1]["data"]["title"] == "Second"
    finally:
        await pool.close()


async def test_invalid_script_runs_nothing(pool: BrowserPool, site: Site) -> None:
    slot = pool.slot()
    with pytest.raises(InvalidParams) as info:
        await slot.run(nav(site.url("/setcookie"), {"op": "click"}))
    assert info.value.message == "invalid params: operations[1].element_id is required for click"
    assert slot.state == "not launched"
    with pytest.raises(InvalidParams, match="invalid params: width"):
        await slot.run({"operations": []}, width=10)
    assert slot.state == "not launched"
    assert await slot.run({"operations": []}) == {"steps": []}
    await slot.close()

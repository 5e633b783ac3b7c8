"""browser.* over a real server with a real Chromium: the lazy slot per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.browser.conftest import chromium_or_skip, element_id, png_size, steps_ok
from tests.browser.site import Site
from tests.conftest import Client

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    chromium_or_skip()
    s = Site().start()
    yield s
    s.close()


def script(*ops: dict) -> dict:
    return {"script": {"operations": list(ops)}}


def test_first_call_launches_later_calls_reuse_ids(runtime, connect_client, site) -> None:
    c = connect_client()
    assert runtime.services.browsers.running is False  # nothing launched before first use
    first = c.call(
        "browser.run",
        script({"op": "navigate", "url": site.url("/index.html")}, {"op": "observe"}),
        timeout=60,
    )
    steps = steps_ok(first)
    assert [s["op"] for s in steps] == ["navigate", "observe"]
    obs = steps[1]["data"]
    assert obs["title"] == "Home" and obs["url"].endswith("/index.html")
    button = element_id(obs["summary"], "button", "Show")
    # a second call (think: the next notebook cell) clicks the id from the first one
    second = c.call(
        "browser.run", script({"op": "click", "element_id": button}, {"op": "observe"}), timeout=30
    )
    assert "Clicked!" in steps_ok(second)[1]["data"]["summary"]
    assert runtime.services.browsers.running is True
    snap = [x for x in runtime.snapshots() if x["kind"] == "socket"][0]
    assert snap["browser_state"] == "launched" and snap["browser_url"].endswith("/index.html")


def test_script_as_json_string_and_screenshot_size(runtime, connect_client, site) -> None:
    import json

    c = connect_client()
    ops = {"operations": [{"op": "navigate", "url": site.url("/index.html")}, {"op": "screenshot"}]}
    res = c.call(
        "browser.run", {"script": json.dumps(ops), "width": 640, "height": 480}, timeout=60
    )
    shot = steps_ok(res)[1]["data"]
    assert shot["mime_type"] == "image/png"
    assert png_size(shot["base64"]) == (640, 480) == (shot["width"], shot["height"])


def test_sessions_are_isolated(runtime, connect_client, site) -> None:
    a, b = connect_client(), connect_client()
    a.call("browser.run", script({"op": "navigate", "url": site.url("/setcookie")}), timeout=60)
    res_a = a.call(
        "browser.run",
        script({"op": "navigate", "url": site.url("/showcookie")}, {"op": "observe"}),
        timeout=30,
    )
    res_b = b.call(
        "browser.run",
        script({"op": "navigate", "url": site.url("/showcookie")}, {"op": "observe"}),
        timeout=60,
    )
    assert "flavor=oatmeal" in steps_ok(res_a)[1]["data"]["summary"]
    assert "oatmeal" not in steps_ok(res_b)[1]["data"]["summary"]
    assert "no cookie" in steps_ok(res_b)[1]["data"]["summary"]


def test_validation_errors_before_anything_runs(runtime, connect_client) -> None:
    c = connect_client()
    for params, text in [
        ({}, "script"),
        ({"script": 5}, "script"),
        (script({"op": "teleport"}), "operations[0]"),
        (script({"op": "click"}), "element_id"),
        (script({"op": "scroll", "delta_y": "down"}), "delta_y"),
    ]:
        err = c.request("browser.run", params)["error"]
        assert err["code"] == -32602 and text in err["message"], (params, err)
    assert runtime.services.browsers.running in (True, False)  # no crash, still serving
    assert c.call("state.keys") == []


def test_close_and_stale_ids(runtime, connect_client, site) -> None:
    c = connect_client()
    res = c.call(
        "browser.run",
        script({"op": "navigate", "url": site.url("/index.html")}, {"op": "observe"}),
        timeout=60,
    )
    button = element_id(steps_ok(res)[1]["data"]["summary"], "button", "Show")
    assert c.call("browser.close", timeout=30) == {"closed": True}
    assert c.call("browser.close", timeout=30) == {"closed": False}
    again = c.call(
        "browser.run",
        script(
            {"op": "navigate", "url": site.url("/index.html")},
            {"op": "click", "element_id": button},
        ),
        timeout=30,
    )
    assert again["steps"][1]["status"] == "error"
    assert button in again["steps"][1]["error"]


def test_session_end_closes_its_context(runtime, site) -> None:
    c = Client(runtime.url)
    c.call("session.auth", {"token": runtime.token})
    c.call("browser.run", script({"op": "navigate", "url": site.url("/index.html")}), timeout=60)
    (session,) = [x for x in runtime.services.sessions if x.kind == "socket"]
    slot = session.browser
    assert slot is not None and slot.state == "launched"
    c.close()
    import time

    deadline = time.monotonic() + 10
    while any(x["kind"] == "socket" for x in runtime.snapshots()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(x["kind"] == "socket" for x in runtime.snapshots())
    assert slot.state == "closed"


def test_missing_chromium_is_a_clear_error(make_runtime, tmp_path) -> None:
    rt = make_runtime(chromium=str(tmp_path / "no-such-chromium"))
    c = Client(rt.url)
    try:
        c.call("session.auth", {"token": rt.token})
        reply = c.request(
            "browser.run", script({"op": "navigate", "url": "about:blank"}), timeout=30
        )
        msg = reply["error"]["message"] if "error" in reply else str(reply["result"])
        assert "apt-get install chromium" in msg or "playwright install chromium" in msg
        assert c.call("state.keys") == []  # the session is still usable
    finally:
        c.close()


def test_serve_browser_timeout_bounds_each_step(serve_process, site) -> None:
    import time

    p = serve_process("--browser-timeout", "1.5")
    c = Client(p.url)
    try:
        c.call("session.auth", {"token": p.info["token"]})
        c.call(
            "browser.run", script({"op": "navigate", "url": site.url("/index.html")}), timeout=60
        )  # launch first, so the timing below is the step's own
        t0 = time.monotonic()
        res = c.call(
            "browser.run", script({"op": "navigate", "url": site.url("/hang")}), timeout=30
        )
        took = time.monotonic() - t0
        step = res["steps"][0]
        assert (
            step["status"] == "error"
            and "1500" in step["error"] + str(step.get("data"))
            or "timeout" in step["error"].lower()
        ), step
        assert took < 10, took
        again = c.call(
            "browser.run",
            script({"op": "navigate", "url": site.url("/index.html")}, {"op": "observe"}),
            timeout=30,
        )
        assert steps_ok(again)[1]["data"]["title"] == "Home"  # the slot is still usable
    finally:
        c.close()

"""``%car browser`` on a real Chromium against a page served on 127.0.0.1: the notebook's slot
is launched once and reused across cells, element ids carry over, screenshots show inline."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

import carnb
from carnb.kernel.calls import CarCommandError
from tests.kernel.conftest import needs_chromium

pytestmark = [pytest.mark.browser]


def element(result: Any, name: str) -> str:
    """The el_N id of the element whose line mentions ``name``."""
    for line in result.elements:
        if name in line:
            return line.split("]")[0].lstrip("[")
    raise AssertionError(f"no element {name!r} in {result.elements}")


@needs_chromium
def test_slot_is_reused_across_cells(loaded: Any, site: str) -> None:
    loaded.user_ns["url"] = site
    car = lambda line: loaded.run_line_magic("car", line)  # noqa: E731
    opened = car(f"browser open {site}")
    assert opened.observation["title"] == "carnb demo page"
    assert carnb.current().session.browser_state == "launched"
    name, go = element(opened, "textbox"), element(opened, "Greet")
    # Next "cell": the ids from the previous one still work.
    car(f"browser type {name} Ada --quiet")
    after = car(f"browser click {go}")
    assert "Hi Ada" in after.observation["summary"]
    link = element(after, "Second page")
    moved = car(f"browser click {link}")
    assert moved.observation["url"] == site + "second.html"
    assert carnb.current().session.browser_url == site + "second.html"
    shot = car("browser screenshot")
    bundle = shot._repr_mimebundle_()
    png = base64.b64decode(bundle["image/png"])
    assert png.startswith(b"\x89PNG") and shot.screenshot.width == 1280
    assert 'src="data:image/png;base64,' in bundle["text/html"]
    obs = car("browser observe --screenshot")
    assert obs.screenshot is not None and obs.observation["title"] == "second"
    assert "Back home" in obs._repr_mimebundle_()["text/html"]
    assert "closed" in str(car("browser close"))
    assert carnb.current().session.browser_state == "closed"
    again = car(f"browser open {site}")  # relaunches
    assert again.observation["title"] == "carnb demo page"


@needs_chromium
def test_keys_and_scroll(loaded: Any, site: str) -> None:
    car = lambda line: loaded.run_line_magic("car", line)  # noqa: E731
    opened = car(f"browser open {site}")
    car(f"browser click {element(opened, 'textbox')} --quiet")
    car("browser type " + element(opened, "textbox") + " Bo --quiet")
    car("browser key Tab --quiet")
    res = car("browser key Enter")  # Enter on the focused button greets
    assert "Hi Bo" in res.observation["summary"]
    scrolled = car("browser scroll 200 --quiet")
    assert scrolled.steps[0]["op"] == "scroll" and scrolled.steps[0]["status"] == "ok"


@needs_chromium
def test_cell_script_and_failures(loaded: Any, site: str) -> None:
    script = {
        "operations": [
            {"op": "navigate", "url": site},
            {"op": "observe"},
            {"op": "click", "element_id": "el_999"},
            {"op": "observe"},
        ]
    }
    res = loaded.run_cell("%%car browser\n" + json.dumps(script))
    out = res.result
    assert [s["status"] for s in out.steps] == ["ok", "ok", "error"]  # stops at the failure
    assert "el_999" in out._repr_mimebundle_()["text/plain"]
    bad = loaded.run_cell("%car browser click el_999")
    assert isinstance(bad.error_in_exec, CarCommandError)
    assert "step click failed" in bad.error_in_exec.message
    bad = loaded.run_cell('%%car browser\n{"operations": [{"op": "fly"}]}')
    assert "step 1: the op 'fly' is unknown" in bad.error_in_exec.message  # no protocol words
    bad = loaded.run_cell("%%car browser\nnot json")
    assert "not JSON" in bad.error_in_exec.message
    assert loaded.run_line_magic("car", f"browser open {site}").observation["url"] == site


def test_no_chromium_is_one_line_and_leaves_the_runtime_usable(
    shell: Any, monkeypatch: pytest.MonkeyPatch, site: str, capsys: Any
) -> None:
    monkeypatch.setenv("CARNB_CHROMIUM", "/nonexistent/chromium")
    shell.run_line_magic("load_ext", "carnb")
    res = shell.run_cell(f"%car browser open {site}")
    assert isinstance(res.error_in_exec, CarCommandError)
    msg = res.error_in_exec.message
    assert "CARNB_CHROMIUM" in msg and "install" in msg.lower() and "\n" not in msg
    assert shell.run_line_magic("car", "memory count").value == 0
    assert carnb.current().running


def test_the_chromium_option_is_the_browser_launched(
    shell: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.delenv("CARNB_CHROMIUM", raising=False)
    fake = tmp_path / "not-chromium"
    fake.write_text("#!/bin/sh\nexit 3\n")
    fake.chmod(0o755)
    shell.run_line_magic("config", f"CarMagics.chromium = {str(fake)!r}")
    shell.run_line_magic("load_ext", "carnb")
    assert str(fake) in str(shell.run_line_magic("car", "server"))
    res = shell.run_cell("%car browser open about:blank")
    assert isinstance(res.error_in_exec, CarCommandError)
    assert str(fake) in res.error_in_exec.message and "\n" not in res.error_in_exec.message
    assert shell.run_line_magic("car", "memory count").value == 0

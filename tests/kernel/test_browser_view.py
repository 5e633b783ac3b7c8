"""Browser results as a person reads them: observations as tables, screenshots at most 960 px
wide, plain words for a URL without a scheme and for a page that did not load."""

from __future__ import annotations

import re
from typing import Any

import pytest

from carnb.kernel.browser_view import Observation, friendly_error, page_url, plural, url_problem
from carnb.kernel.calls import CarCommandError
from carnb.kernel.cmd_browser import BrowserResult
from tests.kernel.conftest import needs_chromium

SUMMARY = (
    "## Visible text\n  (heading) Hello <there>\n  (text) Name\n## Interactive elements\n"
    '[el_0] textbox "Name" value="Ada"\n[el_1] button "Say \\"hi\\""\n[el_2] link "Next" disabled\n'
    "... 4 more elements not listed\n"
)
OBS = {"url": "http://127.0.0.1:8000/", "title": "demo", "element_count": 7, "summary": SUMMARY}


def test_an_observation_reads_as_tables_and_keeps_its_text() -> None:
    o = Observation(OBS)
    texts, elements, notes = o.sections()
    assert texts == [["heading", "Hello <there>"], ["text", "Name"]]
    assert [[str(c) for c in row] for row in elements] == [
        ["el_0", "textbox", "Name", 'value="Ada"'],
        ["el_1", "button", 'Say "hi"', ""],
        ["el_2", "link", "Next", "disabled"],
    ]
    assert notes == ["... 4 more elements not listed"]
    html = o.html()
    assert "<pre>" not in html and "## " not in html
    assert "Hello &lt;there&gt;" in html and "interactive elements (7 elements)" in html
    assert '<td><span class="carnb-id">el_1</span></td>' in html
    # The text form is what an agent reads: the summary, unchanged.
    assert SUMMARY.strip() in o.text() and "title     demo" in o.text()


def test_error_pages_and_counts_read_plainly() -> None:
    assert page_url("chrome-error://chromewebdata/").startswith("(error page")
    assert page_url("http://x/") == "http://x/"
    assert plural(1, "element") == "1 element" and plural(2, "element") == "2 elements"
    steps = [
        {"op": "observe", "status": "ok", "duration_ms": 3, "data": {**OBS, "element_count": 1}}
    ]
    assert "1 element on http://127.0.0.1:8000/" in BrowserResult(steps).text()
    assert "1 elements" not in BrowserResult(steps).text()


def test_bad_urls_and_failed_navigations_get_plain_words() -> None:
    assert url_problem("http://127.0.0.1:8000/") is None and url_problem("about:blank") is None
    assert "e.g. https://example.com" in str(url_problem("example.com"))
    assert "e.g. http://localhost:8000" in str(url_problem("localhost:8000"))
    wire = "%car browser open failed: invalid params: operations[0].url scheme 'ftp' is not allowed"
    assert friendly_error(wire) == (
        "%car browser open failed: step 1: the url scheme 'ftp' is not allowed"
    )
    nav = "navigate to http://127.0.0.1:9/ failed: net::ERR_CONNECTION_REFUSED at http://x"
    assert friendly_error(nav) == (
        "could not load http://127.0.0.1:9/: nothing is listening at that address "
        "(connection refused) (ERR_CONNECTION_REFUSED)"
    )
    assert friendly_error("something else") == "something else"


def test_screenshots_show_at_most_960_px_wide() -> None:
    steps = [
        {
            "op": "screenshot",
            "status": "ok",
            "data": {"base64": "iVBORw0KGgo=", "width": 1280, "height": 720},
        }
    ]
    html = BrowserResult(steps)._repr_mimebundle_()["text/html"]
    img = re.search(r"<img [^>]*>", html)
    assert img is not None
    assert "max-width:min(960px,100%)" in img.group(0) and "click for full size" in img.group(0)


@needs_chromium
@pytest.mark.browser
def test_the_notebook_hears_plain_words_from_the_browser(loaded: Any, site: str) -> None:
    car = lambda line: loaded.run_line_magic("car", line)  # noqa: E731
    with pytest.raises(CarCommandError, match="needs a scheme, e.g. https://example.com"):
        loaded.run_line_magic("car", "browser open example.com")
        raise AssertionError("unreachable: run_line_magic raises")
    bad = loaded.run_cell("%car browser open http://127.0.0.1:9/")
    assert "could not load http://127.0.0.1:9/" in bad.error_in_exec.message
    assert "net::" not in bad.error_in_exec.message
    seen = car("browser observe")
    assert "(error page: the last navigation failed)" in seen.text()
    assert "chrome-error" not in seen.html()
    loaded.run_line_magic("car", "status")
    assert "chrome-error" not in carnb_panel_html(loaded)
    ok = car(f"browser open {site}")
    assert "<pre>" not in ok.html() and "carnb-elements" in ok.html()


def carnb_panel_html(loaded: Any) -> str:
    panel = loaded.run_line_magic("car", "status")
    return str(panel.title.value + panel.mine.value + panel.others.value)

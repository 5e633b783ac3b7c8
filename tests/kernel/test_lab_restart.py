"""JupyterLab in headless Chromium: the panel holds its shape. In a narrow notebook its flags
row wraps between label/value pairs instead of cutting them off; after a kernel restart the old
panel's output is one disconnected widget, not a wall of them, and its buttons no longer look
or act clickable."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kernel.conftest import chromium_path, needs_chromium
from tools.labdriver import (
    code_notebook,
    lab_in_chromium,
    open_notebook,
    restart_kernel,
    run_all,
    wait_until_done,
)

pytestmark = [pytest.mark.kernel, pytest.mark.browser, pytest.mark.timeout(300), needs_chromium]

# In the panel cell's output: the disconnected views, how many of them draw ipywidgets'
# broken-link icon (its ::before), and each button's computed look.
OLD_PANEL_JS = """(cell) => {
  const out = document.querySelectorAll('.jp-NotebookPanel .jp-Cell')[cell]
    .querySelector('.jp-OutputArea');
  const gone = [...out.querySelectorAll('.jupyter-widgets-disconnected')];
  const icons = gone.filter((e) => {
    const s = getComputedStyle(e, '::before');
    return s.content !== 'none' && s.display !== 'none';
  });
  const buttons = [...out.querySelectorAll('.carnb-panel button')].map((b) => {
    const s = getComputedStyle(b);
    return {text: b.textContent, disabled: b.disabled, pointerEvents: s.pointerEvents,
            opacity: Number(s.opacity), cursor: s.cursor};
  });
  return {disconnected: gone.length, icons: icons.length, buttons};
}"""


# The flags row's pairs: each one line high, none past the panel's right edge.
FLAGS_JS = """() => {
  const panel = document.querySelector('.carnb-panel');
  const right = panel.getBoundingClientRect().right;
  return [...panel.querySelectorAll('table.carnb-notebook td')].map((td) => {
    const r = td.getBoundingClientRect();
    const line = parseFloat(getComputedStyle(td).lineHeight) || 20;
    return {text: td.textContent, top: r.top, oneLine: r.height < 1.8 * line,
            inside: r.right <= right + 1};
  });
}"""


@pytest.fixture
def panel_page(tmp_path: Path) -> Iterator[Any]:
    """JupyterLab showing a notebook that opened a run and shows the panel, all cells run."""
    pytest.importorskip("jupyterlab")

    root = tmp_path / "root"
    root.mkdir()
    cells = ("%load_ext carnb", "%car run start restart check", "%car status")
    (root / "restart.ipynb").write_text(code_notebook(*cells))
    with lab_in_chromium(root, tmp_path, chromium_path()) as (lab, browser):
        page = open_notebook(browser, lab.url("restart.ipynb"), width=1280, height=900)
        run_all(page)
        wait_until_done(page)
        page.locator(".carnb-panel button").first.wait_for()
        yield page


def test_a_narrow_panel_wraps_its_flags_between_pairs(panel_page: Any) -> None:
    page = panel_page
    page.keyboard.press("Control+b")  # no file browser: the notebook takes the window
    wide = page.evaluate(FLAGS_JS)
    assert len({round(f["top"]) for f in wide}) == 1, wide  # one row when there is room
    page.set_viewport_size({"width": 720, "height": 900})
    page.wait_for_timeout(500)
    narrow = page.evaluate(FLAGS_JS)
    assert [f["text"] for f in narrow] == [f["text"] for f in wide]
    assert all(f["oneLine"] and f["inside"] for f in narrow), narrow
    assert len({round(f["top"]) for f in narrow}) > 1, narrow  # wrapped onto more rows


def test_after_a_restart_the_old_panel_shows_one_marker_and_dead_buttons(
    panel_page: Any,
) -> None:
    page = panel_page
    live: dict[str, Any] = page.evaluate(OLD_PANEL_JS, 2)
    assert live["disconnected"] == 0 and live["icons"] == 0
    assert live["buttons"] and all(
        b["pointerEvents"] != "none" and b["opacity"] == 1 for b in live["buttons"]
    ), live
    restart_kernel(page)
    page.wait_for_function(
        "() => document.querySelector('.carnb-panel.jupyter-widgets-disconnected')"
    )
    old: dict[str, Any] = page.evaluate(OLD_PANEL_JS, 2)
    # every view of the panel is disconnected, and one icon says so
    assert old["disconnected"] > 1 and old["icons"] == 1, old
    assert [b["text"] for b in old["buttons"]] == [b["text"] for b in live["buttons"]]
    for button in old["buttons"]:
        assert button["pointerEvents"] == "none", button  # clicks do nothing
        assert button["opacity"] <= 0.5 and button["cursor"] == "default", button

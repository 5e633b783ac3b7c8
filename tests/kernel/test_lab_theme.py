"""carnb's output in JupyterLab's themes (dark, light, dark high contrast), in headless Chromium:
every table cell carnb renders (panel, greyed ended sessions, server sessions, memory query, run
trace) reads with WCAG AA contrast (4.5:1, computed colours) and is left-aligned, and so do the
panel's run buttons and the trace they open; and a notebook saved with its outputs and reopened
without running it shows carnb's panel, not a widget error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.kernel.conftest import chromium_path, needs_chromium
from tests.kernel.test_notebooks import execute
from tools.labdriver import (
    CONTRAST_JS,
    lab_in_chromium,
    new_page,
    open_notebook,
    run_all,
    wait_for_kernel,
    wait_until_done,
)

pytestmark = [pytest.mark.kernel, pytest.mark.browser, pytest.mark.timeout(400), needs_chromium]

NOTEBOOK = "01-quickstart.ipynb"
CELLS = ".carnb-out td, .carnb-out th, .carnb-out td *, .carnb-out th *"
RUN_BUTTONS = (
    ".carnb-out .carnb-trace-pick button, .carnb-out .carnb-trace-pick .carnb-label, "
    ".carnb-out .carnb-panel-trace button, .carnb-out .carnb-panel-trace .carnb-h"
)
WCAG_AA = 4.5


@pytest.mark.parametrize("theme", ["dark", "light", "high-contrast"])
def test_carnb_tables_read_in_every_theme(theme: str, tmp_path: Path) -> None:
    pytest.importorskip("jupyterlab")
    from playwright.sync_api import expect

    root = tmp_path / "root"
    root.mkdir()
    (root / NOTEBOOK).write_text(with_a_trace_on_the_panel(REPO / "notebooks" / NOTEBOOK))
    with lab_in_chromium(root, tmp_path, chromium_path(), theme=theme) as (lab, browser):
        page = new_page(browser, lab.url(NOTEBOOK))
        page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for()
        light = page.locator("body").get_attribute("data-jp-theme-light")
        assert light == ("true" if theme == "light" else "false")
        wait_for_kernel(page)
        run_all(page)
        panel = page.locator(".carnb-panel").first
        expect(panel.locator("td.carnb-facts")).to_contain_text("2", timeout=120_000)
        wait_until_done(page)
        # Tables from the panel, %car server, %car memory query and the run trace.
        for table in ("table.carnb-sessions", "table.carnb-notebook", "table.carnb-kv"):
            expect(page.locator(table).first).to_be_visible()
        # Greyed rows (sessions that ended) are measured too: the client process of cell 5
        # may come and go between two refreshes, so add one for sure (a copy of a row).
        page.evaluate(
            "() => { const tr = document.querySelector('table.carnb-sessions tbody tr');"
            " const copy = tr.cloneNode(true); copy.className = 'carnb-ended';"
            " tr.parentElement.appendChild(copy); }"
        )
        expect(page.locator("tr.carnb-ended").first).to_be_visible()
        # The panel's run button and the trace it opened (cells added to the copy).
        expect(panel.locator(".carnb-trace-run").first).to_be_visible()
        expect(panel.locator(".carnb-panel-trace .carnb-live-trace")).to_be_visible()
        cells: list[dict[str, Any]] = page.evaluate(CONTRAST_JS, f"{CELLS}, {RUN_BUTTONS}")
        assert len(cells) > 40
        assert any(c["text"].startswith("run-") for c in cells)
        worst = min(cells, key=lambda c: c["ratio"])
        assert worst["ratio"] >= WCAG_AA, worst
        # JupyterLab right-aligns table cells; carnb's are left-aligned (numbers, and the
        # trace's record numbers and offsets, aside).
        aligned = page.evaluate(
            "() => [...document.querySelectorAll('.carnb-out td:not(.carnb-num), "
            ".carnb-out th')].filter(e => e.offsetParent && !e.style.textAlign)"
            ".map(e => getComputedStyle(e)"
            ".textAlign)"
        )
        assert aligned and set(aligned) <= {"left", "start"}, set(aligned)
        # The run id in the panel is short, with the full id on hover.
        run = page.locator("table.carnb-sessions .carnb-id[title^='run-']")
        if run.count():
            assert run.first.inner_text().endswith("…")


def test_a_saved_notebook_shows_the_panel_without_a_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Executed headless (nbclient, as `jupyter execute` does), saved, then opened in JupyterLab
    and not run: the panel's static copy shows, styled, with no 'Error displaying widget'."""
    pytest.importorskip("jupyterlab")
    import nbformat
    from playwright.sync_api import expect

    nb, _ = execute(NOTEBOOK, tmp_path, monkeypatch)
    root = tmp_path / "root"
    root.mkdir()
    nbformat.write(nb, root / NOTEBOOK)
    with lab_in_chromium(root, tmp_path, chromium_path(), theme="light") as (lab, browser):
        page = new_page(browser, lab.url(NOTEBOOK))
        panel = page.locator(".jp-OutputArea-output").filter(has_text="authenticated")
        # a saved notebook renders once Lab has loaded it, which a busy machine takes seconds for
        expect(panel.first).to_be_visible(timeout=60_000)
        expect(panel.first).to_contain_text("session(s)")
        page.locator(".jp-Notebook").screenshot(path=str(tmp_path / "saved.png"))
        assert "Error displaying widget" not in page.locator(".jp-Notebook").inner_text()


def test_a_notebook_saved_in_lab_reopens_with_its_panel(tmp_path: Path) -> None:
    """Run in JupyterLab, saved, opened again under a new kernel without running it: the panel
    shows its last state (saved widget state), not 'Error displaying widget: model not found'."""
    pytest.importorskip("jupyterlab")
    from playwright.sync_api import expect

    root = tmp_path / "root"
    root.mkdir()
    nb = nbformat_cells(REPO / "notebooks" / NOTEBOOK, upto="%car status")
    (root / NOTEBOOK).write_text(nb)
    with lab_in_chromium(root, tmp_path, chromium_path()) as (lab, browser):
        page = open_notebook(browser, lab.url(NOTEBOOK))
        run_all(page)
        expect(page.locator(".carnb-panel td.carnb-host")).to_contain_text("yes")
        wait_until_done(page)
        page.keyboard.press("Control+s")
        expect(page.locator(".jp-mod-dirty")).to_have_count(0)
        saved = json.loads((root / NOTEBOOK).read_text())
        assert "widgets" in saved["metadata"]
        (root / "reopened.ipynb").write_text(json.dumps(saved))
        again = new_page(browser, lab.url("reopened.ipynb").replace("?", "?reset&"))
        shown = again.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
        expect(shown).to_have_count(1)
        expect(again.locator(".jp-NotebookPanel")).to_have_count(1)  # only the reopened one
        panel = shown.locator(".carnb-panel").first
        expect(panel.locator("td.carnb-authenticated")).to_contain_text("yes")
        expect(panel.locator(".carnb-title")).to_contain_text("session(s)")
        assert "Error displaying widget" not in shown.inner_text()


def nbformat_cells(path: Path, upto: str) -> str:
    """The notebook at ``path`` cut after the first cell whose source is ``upto``."""
    doc = json.loads(path.read_text())
    cells = doc["cells"]
    end = next(i for i, c in enumerate(cells) if "".join(c["source"]) == upto)
    doc["cells"] = cells[: end + 1]
    return json.dumps(doc)


def with_a_trace_on_the_panel(path: Path) -> str:
    """The notebook at ``path`` plus two cells: a run is open, and the panel shows its trace."""
    doc = json.loads(path.read_text())
    for source in (
        "%car run start theme check",
        "import carnb\n_panel = %car status\n"
        "_live = _panel.traces.open(carnb.current().notebook()['current_run_id'])",
    ):
        doc["cells"].append(
            {
                "cell_type": "code",
                "metadata": {},
                "execution_count": None,
                "outputs": [],
                "source": source,
            }
        )
    return json.dumps(doc)

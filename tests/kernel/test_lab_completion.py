"""JupyterLab in headless Chromium with the demo Lab's settings (tools/lab_settings.py, as
`make lab` and Binder): %car completion lists the kernel's items only, each with its kind and
help, and Tab inserts the item."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.kernel.conftest import chromium_path, needs_chromium
from tools.lab_settings import DEMO_SETTINGS, install
from tools.labdriver import (
    code_notebook,
    lab_in_chromium,
    new_page,
    wait_for_kernel,
    wait_until_done,
)

pytestmark = [pytest.mark.kernel, pytest.mark.browser, pytest.mark.timeout(300), needs_chromium]


def test_car_completion_in_lab_offers_the_kernels_items_and_tab_inserts(tmp_path: Path) -> None:
    pytest.importorskip("jupyterlab")
    from playwright.sync_api import expect

    root = tmp_path / "root"
    root.mkdir()
    # words the context provider would offer: "%", "car", "memory" from the first cell
    (root / "c.ipynb").write_text(code_notebook("%load_ext carnb\n%car memory query deploy", ""))
    with lab_in_chromium(root, tmp_path, chromium_path()) as (lab, browser):
        page = new_page(browser, lab.url("c.ipynb"), width=1280, height=900)
        cells = page.locator(".jp-NotebookPanel .jp-Cell")
        cells.first.wait_for()
        wait_for_kernel(page)
        cells.nth(0).locator(".cm-content").click()
        page.keyboard.press("Shift+Enter")
        wait_until_done(page)
        editor = cells.nth(1).locator(".cm-content")
        items = page.locator(".jp-Completer .jp-Completer-item")

        editor.click()
        page.keyboard.type("%car ")
        page.keyboard.press("Tab")
        expect(items.first).to_be_visible()
        labels = items.locator(".jp-Completer-match").all_inner_texts()
        assert "memory" in labels and "status" in labels
        assert "%" not in labels and "car" not in labels, labels  # no context provider
        assert set(items.locator(".jp-Completer-typeExtended").all_inner_texts()) == {"command"}
        # the documentation panel shows the active item's help
        expect(page.locator(".jp-Completer-docpanel")).not_to_be_empty()
        page.keyboard.press("Escape")

        page.keyboard.type("mem")
        page.keyboard.press("Tab")
        expect(items).to_have_count(1)
        expect(items.first.locator(".jp-Completer-match")).to_have_text("memory")
        # JupyterLab 4 shows even a single match before inserting it: Tab again inserts
        page.keyboard.press("Tab")
        expect(editor).to_have_text("%car memory")
        expect(page.locator(".jp-Completer")).to_be_hidden()


def test_the_demo_settings_merge_into_overrides_keeping_others(tmp_path: Path) -> None:
    path = install(tmp_path)
    assert json.loads(path.read_text()) == DEMO_SETTINGS
    other = {"@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"}}
    completer = "@jupyterlab/completer-extension:manager"
    path.write_text(json.dumps({**other, completer: {"providerTimeout": 3000}}))
    merged = json.loads(install(tmp_path).read_text())
    assert merged[completer] == {"providerTimeout": 3000, **DEMO_SETTINGS[completer]}
    assert {k: merged[k] for k in other} == other
    assert path == tmp_path / "share/jupyter/lab/settings/overrides.json"

"""JupyterLab in headless Chromium: open a demo notebook, run it, see the live panel render and
update (from the cells, and from the loop thread when an outside client connects)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, Client
from tests.kernel.conftest import chromium_path, needs_chromium
from tools.labdriver import Lab, lab_in_chromium, open_notebook, run_all

pytestmark = [pytest.mark.kernel, pytest.mark.browser, pytest.mark.timeout(300), needs_chromium]

NOTEBOOK = "01-quickstart.ipynb"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[Lab, Any]]:
    """JupyterLab serving a copy of the quickstart, and a Chromium to look at it."""
    pytest.importorskip("jupyterlab")
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(REPO / "notebooks" / NOTEBOOK, root / NOTEBOOK)
    with lab_in_chromium(root, tmp_path, chromium_path()) as (server, browser):
        yield server, browser


def connection_info(home: Path, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = sorted((home / "run").glob("carnb-*.json")) if (home / "run").exists() else []
        if files:
            return json.loads(files[-1].read_text())
        time.sleep(0.2)
    raise AssertionError("the kernel never wrote a carnb connection file")


def test_live_panel_in_jupyterlab(lab: tuple[Lab, Any]) -> None:
    from playwright.sync_api import expect

    server, browser = lab
    page = open_notebook(browser, server.url(NOTEBOOK))
    run_all(page)

    panel = page.locator(".carnb-panel").first
    panel.wait_for(state="attached")
    panel.scroll_into_view_if_needed()
    expect(panel).to_be_visible()
    expect(panel.locator(".carnb-title")).to_contain_text("ws://127.0.0.1:")
    # Updates from the cells: `%car auth --agent demo` binds the notebook's session.
    expect(panel.locator("td.carnb-agent")).to_contain_text("demo", timeout=90_000)
    expect(panel.locator("td.carnb-facts")).to_contain_text("2", timeout=90_000)
    expect(page.locator(".jp-NotebookPanel-toolbar")).to_contain_text("Idle", timeout=90_000)
    # Updates from the loop thread with no cell running: an outside client attaches.
    info = connection_info(server.home)
    count = int(panel.locator(".carnb-count").inner_text())
    c = Client(info["url"])
    try:
        c.call("session.auth", {"token": info["token"]})
        expect(panel.locator(".carnb-count")).to_have_text(str(count + 1))
        expect(panel.locator("table.carnb-sessions")).to_contain_text("socket")
    finally:
        c.close()
    expect(panel.locator(".carnb-count")).to_have_text(str(count))
    assert info["token"] not in page.content()

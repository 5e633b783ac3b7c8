"""JupyterLab in headless Chromium: open a demo notebook, run it, see the live panel render and
update (from the cells, and from the host thread when an outside client connects)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, Client
from tests.kernel.conftest import chromium_path, needs_chromium

pytestmark = [pytest.mark.kernel, pytest.mark.browser, pytest.mark.timeout(300), needs_chromium]

NOTEBOOK = "01-quickstart.ipynb"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[dict[str, Any]]:
    pytest.importorskip("jupyterlab")
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(REPO / "notebooks" / NOTEBOOK, root / NOTEBOOK)
    home = tmp_path / "carnb-home"
    token, port = secrets.token_hex(16), free_port()
    # Keep every cell in the DOM (JupyterLab 4 windows long notebooks), skip the news prompt.
    settings = tmp_path / "lab-settings"
    for ext, name, value in [
        ("@jupyterlab/notebook-extension", "tracker", {"windowingMode": "none"}),
        (
            "@jupyterlab/apputils-extension",
            "notification",
            {"fetchNews": "false", "checkForUpdates": False},
        ),
    ]:
        (settings / ext).mkdir(parents=True, exist_ok=True)
        (settings / ext / f"{name}.jupyterlab-settings").write_text(json.dumps(value))
    env = {
        **os.environ,
        "CARNB_HOME": str(home),
        "CAR_NO_VERSION_WARNING": "1",
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
    }
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--ServerApp.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.port_retries=0",
        "--LabApp.news_url=",
        "--allow-root",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    log = (tmp_path / "lab.log").open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("jupyter lab did not start: " + (tmp_path / "lab.log").read_text())
        time.sleep(0.3)
    try:
        yield {"base": base, "token": token, "home": home, "log": tmp_path / "lab.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def connection_info(home: Path, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = sorted((home / "run").glob("carnb-*.json")) if (home / "run").exists() else []
        if files:
            return json.loads(files[-1].read_text())
        time.sleep(0.2)
    raise AssertionError("the kernel never wrote a carnb connection file")


def wait_for_kernel(page: Any, timeout: float = 90) -> None:
    """Until the notebook has a running, idle kernel. JupyterLab sometimes asks which kernel to
    start (a race in its kernel preference); accept the notebook's own, Python 3."""
    toolbar = page.locator(".jp-NotebookPanel-toolbar")
    select = page.locator(".jp-Dialog").get_by_role("button", name="Select", exact=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.count() and select.is_visible():
            select.click()
        name = toolbar.locator(".jp-Toolbar-kernelName").inner_text()
        status = toolbar.locator(".jp-Notebook-ExecutionIndicator").get_attribute("data-status")
        if "Python 3" in name and status == "idle":
            return
        time.sleep(0.2)
    raise AssertionError(f"no idle kernel in JupyterLab after {timeout} s")


def test_live_panel_in_jupyterlab(lab: dict[str, Any]) -> None:
    from playwright.sync_api import expect, sync_playwright

    args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), headless=True, args=args)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(f"{lab['base']}/lab/tree/{NOTEBOOK}?token={lab['token']}")
            page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for()
            wait_for_kernel(page)
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()

            panel = page.locator(".carnb-panel").first
            panel.wait_for(state="attached")
            panel.scroll_into_view_if_needed()
            expect(panel).to_be_visible()
            expect(panel.locator(".carnb-title")).to_contain_text("ws://127.0.0.1:")
            # Updates from the cells: `%car auth --agent demo` binds the notebook's session.
            expect(panel.locator("td.carnb-agent")).to_contain_text("demo", timeout=90_000)
            expect(panel.locator("td.carnb-facts")).to_contain_text("2", timeout=90_000)
            expect(page.locator(".jp-NotebookPanel-toolbar")).to_contain_text(
                "Idle", timeout=90_000
            )
            # Updates from the host thread with no cell running: an outside client attaches.
            info = connection_info(lab["home"])
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
        finally:
            browser.close()

"""Drive JupyterLab in headless Chromium (Playwright): start a private Lab server, open a
notebook, run it, measure how readable carnb's tables are. Used by the JupyterLab UI tests
(tests/kernel/test_lab*.py) and by ``make screenshots`` (tools/screenshots.py)."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.lab_settings import DEMO_SETTINGS

THEMES = {
    "light": "JupyterLab Light",
    "dark": "JupyterLab Dark",
    "high-contrast": "JupyterLab Dark High Contrast",
}


@dataclass
class Lab:
    base: str
    token: str
    home: Path
    log: Path

    def url(self, notebook: str) -> str:
        return f"{self.base}/lab/tree/{notebook}?token={self.token}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_settings(settings: Path, theme: str) -> None:
    # The demo Lab's settings (`make lab` and Binder write the same as overrides), then: keep
    # every cell in the DOM (JupyterLab 4 windows long notebooks), skip the news prompt, pick
    # the theme.
    demo = [(*plugin.split(":"), values) for plugin, values in DEMO_SETTINGS.items()]
    for ext, name, value in [
        *demo,
        ("@jupyterlab/notebook-extension", "tracker", {"windowingMode": "none"}),
        (
            "@jupyterlab/apputils-extension",
            "notification",
            {"fetchNews": "false", "checkForUpdates": False},
        ),
        ("@jupyterlab/apputils-extension", "themes", {"theme": THEMES[theme]}),
    ]:
        (settings / ext).mkdir(parents=True, exist_ok=True)
        (settings / ext / f"{name}.jupyterlab-settings").write_text(json.dumps(value))


@contextmanager
def start_lab(
    root: Path, work: Path, *, theme: str = "light", timeout: float = 90
) -> Iterator[Lab]:
    """A JupyterLab server on 127.0.0.1 serving ``root``; its config, runtime files and carnb's
    home live under ``work``. Stopped on exit."""
    home = work / "carnb-home"
    settings = work / "lab-settings"
    _write_settings(settings, theme)
    token, port = secrets.token_hex(16), free_port()
    env = {
        **os.environ,
        "CARNB_HOME": str(home),
        "CAR_NO_VERSION_WARNING": "1",
        "JUPYTER_CONFIG_DIR": str(work / "jupyter-config"),
        "JUPYTER_RUNTIME_DIR": str(work / "jupyter-runtime"),
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
    log_path = work / "lab.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_up(base, token, proc, log_path, timeout)
            yield Lab(base, token, home, log_path)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait_up(
    base: str, token: str, proc: subprocess.Popen[bytes], log: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("jupyter lab did not start: " + log.read_text())
        time.sleep(0.3)


@contextmanager
def lab_in_chromium(
    root: Path, work: Path, chromium: str | None, *, theme: str = "light"
) -> Iterator[tuple[Lab, Any]]:
    """:func:`start_lab` and a headless Chromium (``chromium``: its executable, ``None`` for
    Playwright's own) to look at it: ``(lab, browser)``; both stopped on exit."""
    from playwright.sync_api import sync_playwright

    with start_lab(root, work, theme=theme) as lab, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=chromium_args())
        try:
            yield lab, browser
        finally:
            browser.close()


def new_page(browser: Any, url: str, *, width: int = 1400, height: int = 1000) -> Any:
    """A page of ``width`` x ``height`` showing ``url``, 60 s for each step it is asked to wait
    for."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(60_000)
    page.goto(url)
    return page


def open_notebook(browser: Any, url: str, *, width: int = 1400, height: int = 1000) -> Any:
    """:func:`new_page` on a notebook's ``url``, once its first cell shows and its kernel is
    running and idle."""
    page = new_page(browser, url, width=width, height=height)
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for()
    wait_for_kernel(page)
    return page


def chromium_args() -> list[str]:
    return ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []


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


def run_all(page: Any) -> None:
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


def restart_kernel(page: Any) -> None:
    """Kernel > Restart Kernel..., confirmed; returns once the new kernel is idle."""
    page.get_by_role("menuitem", name="Kernel", exact=True).click()
    # its accessible name ends with the key binding ("Restart Kernel… 0, 0")
    page.get_by_role("menuitem", name="Restart Kernel…").click()
    page.locator(".jp-Dialog .jp-mod-accept").click()
    page.locator(".jp-Dialog").wait_for(state="detached")
    wait_for_kernel(page)


def code_notebook(*sources: str) -> str:
    """An nbformat 4 notebook (Python 3 kernel) of code cells with these sources, unrun."""
    cells = [
        {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": s}
        for s in sources
    ]
    kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    doc = {"cells": cells, "metadata": {"kernelspec": kernelspec}, "nbformat": 4}
    return json.dumps({**doc, "nbformat_minor": 5})


def wait_until_done(page: Any, timeout: float = 300) -> None:
    """Until no cell is queued or running ("[*]") and the kernel is idle."""
    deadline = time.monotonic() + timeout
    busy = page.locator(".jp-InputPrompt", has_text="[*]")
    indicator = page.locator(".jp-NotebookPanel-toolbar .jp-Notebook-ExecutionIndicator")
    while time.monotonic() < deadline:
        if busy.count() == 0 and indicator.get_attribute("data-status") == "idle":
            time.sleep(1.0)  # let the last widget updates land
            if busy.count() == 0:
                return
        time.sleep(0.3)
    raise AssertionError(f"the notebook still runs after {timeout} s")


# For every visible cell of carnb's tables: its text colour and the background it is drawn on
# (translucent layers composited up to the first opaque ancestor), the WCAG 2 contrast ratio of
# the two, and its text alignment.
CONTRAST_JS = r"""
(selector) => {
  const parse = (c) => {
    const m = c.match(/rgba?\(([^)]+)\)/);
    if (!m) return [0, 0, 0, 0];
    const p = m[1].split(/[ ,\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, bottom) => {
    const a = top[3];
    return [0, 1, 2].map(i => top[i] * a + bottom[i] * (1 - a)).concat([1]);
  };
  const background = (el) => {
    const layers = [];
    for (let n = el; n; n = n.parentElement) {
      const c = parse(getComputedStyle(n).backgroundColor);
      if (c[3] > 0) layers.push(c);
      if (c[3] >= 1) break;
    }
    let bg = [255, 255, 255, 1];
    for (let i = layers.length - 1; i >= 0; i--) bg = over(layers[i], bg);
    return bg;
  };
  const lum = (c) => {
    const f = (v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
  };
  const out = [];
  for (const el of document.querySelectorAll(selector)) {
    if (!el.offsetParent || !el.textContent.trim()) continue;
    const s = getComputedStyle(el);
    const bg = background(el);
    const fg = over(parse(s.color), bg);
    const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
    out.push({text: el.textContent.trim().slice(0, 40), ratio: (hi + 0.05) / (lo + 0.05),
              fg: s.color, bg: 'rgb(' + bg.slice(0, 3).map(Math.round).join(',') + ')',
              align: s.textAlign});
  }
  return out;
}
"""

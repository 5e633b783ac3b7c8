"""``make screenshots``: run each demo notebook in JupyterLab (headless Chromium) and save a
full-length screenshot of it in the light and the dark theme.

    python tools/screenshots.py [--out screenshots] [--theme light --theme dark] [NOTEBOOK ...]

Writes OUT/<notebook>-<theme>.png (OUT defaults to ./screenshots, which git ignores). Each run
uses a private JupyterLab server and carnb home in a temporary directory.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.labdriver import (  # noqa: E402
    THEMES,
    lab_in_chromium,
    open_notebook,
    run_all,
    wait_until_done,
)

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
log = logging.getLogger("carnb.tools.screenshots")
TO_TOP_JS = """() => {
  const panel = document.querySelector('.jp-NotebookPanel');
  for (const el of panel.querySelectorAll('.jp-WindowedPanel-outer, .jp-Notebook')) {
    el.scrollTop = 0;
  }
}"""
FULL_HEIGHT_JS = """() => {
  const panel = document.querySelector('.jp-NotebookPanel');
  const scroller = panel.querySelector('.jp-WindowedPanel-outer') || panel;
  return scroller.scrollHeight + panel.querySelector('.jp-Toolbar').offsetHeight + 40;
}"""


def chromium() -> str | None:
    try:
        from carnb.browser import find_chromium

        return find_chromium()
    except Exception:
        return shutil.which("chromium")


def shoot(notebook: Path, theme: str, out: Path) -> Path:

    with tempfile.TemporaryDirectory(prefix="carnb-shots-") as tmp:
        work = Path(tmp)
        root = work / "root"
        root.mkdir()
        shutil.copy(notebook, root / notebook.name)
        with lab_in_chromium(root, work, chromium(), theme=theme) as (lab, browser):
            page = open_notebook(browser, lab.url(notebook.name), width=1280, height=900)
            run_all(page)
            wait_until_done(page)
            # Hide the file browser, grow the window to the notebook's full length (Lab
            # lays out on resize), then take the notebook.
            page.evaluate("() => document.activeElement && document.activeElement.blur()")
            page.keyboard.press("Control+b")
            height = page.evaluate(FULL_HEIGHT_JS)
            page.set_viewport_size({"width": 1280, "height": int(height) + 160})
            page.evaluate("() => window.dispatchEvent(new Event('resize'))")
            page.wait_for_timeout(1000)
            page.evaluate(TO_TOP_JS)
            page.wait_for_timeout(500)
            target = out / f"{notebook.stem}-{theme}.png"
            page.locator(".jp-NotebookPanel").screenshot(path=str(target))
    return target


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("notebooks", nargs="*", help="notebook names (default: all in notebooks/)")
    p.add_argument("--out", default=str(REPO / "screenshots"), help="output folder")
    p.add_argument(
        "--theme", action="append", choices=sorted(THEMES), help="default: light and dark"
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = args.notebooks or sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    for name in names:
        for theme in args.theme or ["light", "dark"]:
            target = shoot(NOTEBOOKS / name, theme, out)
            log.info("%s", target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Finding a Chromium executable (docs/architecture.md, "Tests": Chromium discovery).

Order: the ``CARNB_CHROMIUM`` environment variable, then the configured path, then the Chromium
Playwright installed for itself (``python -m playwright install chromium``) if its executable
exists, then ``chromium``, ``chromium-browser`` and ``google-chrome`` on ``PATH``. An explicit
setting (environment or configuration) that does not point at an executable is an error, not a
reason to quietly use another browser. Nothing is imported from Playwright: its install layout
is read from the package's ``browsers.json`` without running the driver.

Debian's ``/usr/bin/chromium`` is a shell wrapper that sources ``/etc/chromium.d`` (loading
extensions) before exec'ing ``/usr/lib/chromium/chromium``; when ``PATH`` yields such a script and
the real binary sits in a known place, the binary is used directly (about 200 ms faster to start).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import sys
from pathlib import Path

from carnb.errors import BrowserUnavailable

log = logging.getLogger("carnb.browser")

ENV_VAR = "CARNB_CHROMIUM"
PATH_NAMES = ("chromium", "chromium-browser", "google-chrome")
# Real binaries behind distribution wrapper scripts.
WRAPPED_BINARIES = {
    "chromium": ("/usr/lib/chromium/chromium",),
    "chromium-browser": (
        "/usr/lib/chromium-browser/chromium-browser",
        "/usr/lib/chromium/chromium",
    ),
    "google-chrome": ("/opt/google/chrome/chrome",),
}
MAC_APP = "Google Chrome for Testing.app/Contents/MacOS/Google Chrome for Testing"
INSTALL_HINT = (
    "Install one with `apt-get install chromium` (Debian/Ubuntu) or "
    "`python -m playwright install chromium`, or set CARNB_CHROMIUM to the path of a Chromium "
    "or Chrome executable."
)


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _resolve(value: str) -> Path | None:
    """A path, or a bare name looked up on PATH."""
    if os.sep in value or (os.altsep and os.altsep in value):
        path = Path(value).expanduser()
        return path if _is_executable(path) else None
    found = shutil.which(value)
    return Path(found) if found else None


def _playwright_registry() -> Path | None:
    env = os.environ.get("PLAYWRIGHT_BROWSERS_PATH")
    if env == "0":
        spec = importlib.util.find_spec("playwright")
        if spec is None or not spec.submodule_search_locations:
            return None
        pkg = Path(next(iter(spec.submodule_search_locations)))
        return pkg / "driver" / "package" / ".local-browsers"
    if env:
        return Path(env).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "ms-playwright"
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "ms-playwright"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "ms-playwright"


def _playwright_revisions() -> dict[str, str]:
    """``{browser name: revision}`` from the installed Playwright package, if any."""
    spec = importlib.util.find_spec("playwright")
    if spec is None or not spec.submodule_search_locations:
        return {}
    pkg = Path(next(iter(spec.submodule_search_locations)))
    try:
        doc = json.loads((pkg / "driver" / "package" / "browsers.json").read_text())
    except (OSError, ValueError):
        return {}
    return {b["name"]: str(b["revision"]) for b in doc.get("browsers", []) if "name" in b}


def _playwright_executables(headless: bool) -> list[Path]:
    """Candidate executables of Playwright's own browsers (headless shell first if headless)."""
    registry = _playwright_registry()
    if registry is None or not registry.is_dir():
        return []
    revisions = _playwright_revisions()
    layouts = {
        "chromium-headless-shell": [
            "chrome-headless-shell-linux64/chrome-headless-shell",
            "chrome-headless-shell-linux-arm64/chrome-headless-shell",
            "chrome-headless-shell-mac-arm64/chrome-headless-shell",
            "chrome-headless-shell-mac-x64/chrome-headless-shell",
            "chrome-headless-shell-win64/chrome-headless-shell.exe",
            "chrome-linux/headless_shell",
        ],
        "chromium": [
            "chrome-linux64/chrome",
            "chrome-linux-arm64/chrome",
            "chrome-linux/chrome",
            f"chrome-mac-arm64/{MAC_APP}",
            f"chrome-mac-x64/{MAC_APP}",
            "chrome-win64/chrome.exe",
        ],
    }
    order = ["chromium-headless-shell", "chromium"] if headless else ["chromium"]
    out: list[Path] = []
    for name in order:
        prefix = name.replace("-", "_") + "-"
        dirs = [registry / f"{prefix}{revisions[name]}"] if name in revisions else []
        # then any other installed revision, newest first
        others = sorted(
            (d for d in registry.glob(prefix + "*") if d.name[len(prefix) :].isdigit()),
            key=lambda d: int(d.name[len(prefix) :]),
            reverse=True,
        )
        dirs += [d for d in others if d not in dirs]
        for d in dirs:
            out += [d / rel for rel in layouts[name]]
    return out


def _unwrap(path: Path) -> Path:
    """The real binary behind a distribution's shell wrapper, when it is in a known place."""
    try:
        with path.open("rb") as fh:
            if fh.read(2) != b"#!":
                return path
    except OSError:
        return path
    for real in WRAPPED_BINARIES.get(path.name, ()):
        if _is_executable(Path(real)):
            log.debug("using %s instead of the wrapper script %s", real, path)
            return Path(real)
    return path


def find_chromium(configured: str | None = None, *, headless: bool = True) -> str:
    """The Chromium executable to launch, or :class:`BrowserUnavailable` saying how to get one."""
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        found = _resolve(env)
        if found is None:
            raise BrowserUnavailable(
                f"{ENV_VAR}={env!r} is not an executable file. Point it at a Chromium binary "
                f"(e.g. /usr/bin/chromium) or unset it to search PATH. {INSTALL_HINT}"
            )
        return str(found)
    if configured:
        found = _resolve(configured)
        if found is None:
            raise BrowserUnavailable(
                f"the configured Chromium {configured!r} is not an executable file. Fix the "
                f"setting or leave it empty to search PATH. {INSTALL_HINT}"
            )
        return str(found)
    for candidate in _playwright_executables(headless):
        if _is_executable(candidate):
            return str(candidate)
    for name in PATH_NAMES:
        found_on_path = shutil.which(name)
        if found_on_path:
            return str(_unwrap(Path(found_on_path)))
    raise BrowserUnavailable(
        "no Chromium found: CARNB_CHROMIUM is not set, no browser is configured, Playwright has "
        f"no Chromium installed and none of {', '.join(PATH_NAMES)} is on PATH. {INSTALL_HINT}"
    )

"""Chromium's command line for the pool, and finding the browser process it starts.

Flags: headless-friendly and quiet on the network on its own (no first-run, sync, component
updates, background networking, QUIC), ``--no-sandbox`` as root (Chromium refuses to start as
root with its sandbox), ``--disable-gpu`` and ``--disable-dev-shm-usage`` for containers.

Features: navigations are ~10-20 % faster here with ``RenderDocument`` (a new frame host per
same-site navigation), ``ProactivelySwapBrowsingInstance`` and ``BackForwardCache`` disabled.
Chromium keeps only the *last* ``--disable-features`` switch, and Playwright passes its own, so
ours carries Playwright's list too (read from the installed Playwright package) plus any given
in ``extra_args``. If that list cannot be read, no feature switch is added (only speed is lost).

A marker switch ``--carnb-pool=<token>`` (ignored by Chromium, not passed to child processes)
lets :func:`find_browser_pid` find the browser process on Linux.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import re
from pathlib import Path

log = logging.getLogger("carnb.browser")

QUIET_FLAGS = (
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--no-default-browser-check",
    "--disable-quic",
    "--disable-gpu",
    "--disable-dev-shm-usage",
)
DISABLED_FEATURES = ("RenderDocument", "ProactivelySwapBrowsingInstance", "BackForwardCache")
DISABLE_FEATURES = "--disable-features="
MARKER = "--carnb-pool="


@functools.lru_cache(maxsize=1)
def playwright_disabled_features() -> tuple[str, ...]:
    """The features Playwright disables at launch, read from its package (empty if unknown)."""
    spec = importlib.util.find_spec("playwright")
    if spec is None or not spec.submodule_search_locations:
        return ()
    lib = Path(next(iter(spec.submodule_search_locations))) / "driver" / "package" / "lib"
    for candidate in (lib / "server" / "chromium" / "chromiumSwitches.js", lib / "coreBundle.js"):
        try:
            source = candidate.read_bytes()
        except OSError:
            continue
        start = source.find(b"disabledFeatures = ")
        if start < 0:
            continue
        match = re.compile(rb"disabledFeatures\s*=\s*(?:\([^)]*\)\s*=>\s*)?\[").match(source, start)
        if match is None:
            continue
        end = source.find(b"]", match.end())
        body = re.sub(rb"//[^\n]*", b"", source[match.end() : end]).decode("utf-8", "replace")
        names = tuple(re.findall(r"[\"']([A-Za-z][A-Za-z0-9_]*)[\"']", body))
        if names:
            return names
    log.debug("could not read Playwright's disabled Chromium features; adding none")
    return ()


def launch_args(marker: str, extra: list[str] | None = None) -> list[str]:
    """The switches the pool passes to ``chromium.launch(args=...)``."""
    args = list(QUIET_FLAGS)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")
    args.append(MARKER + marker)
    user_features: list[str] = []
    for arg in extra or []:
        if arg.startswith(DISABLE_FEATURES):
            user_features += [f for f in arg[len(DISABLE_FEATURES) :].split(",") if f]
        else:
            args.append(arg)
    base = playwright_disabled_features()
    features = [*base, *DISABLED_FEATURES] if base else []
    features += user_features
    if features:
        args.append(DISABLE_FEATURES + ",".join(dict.fromkeys(features)))
    return args


def find_browser_pid(marker: str) -> int | None:
    """The pid of the Chromium browser process launched with ``--carnb-pool=<marker>`` (Linux)."""
    needle = (MARKER + marker).encode()
    proc = Path("/proc")
    if not marker or not proc.is_dir():
        return None
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline and b"--type=" not in cmdline:
            return int(entry.name)
    return None

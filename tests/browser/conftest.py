"""Fixtures for the browser tests: a local site, a shared pool on a real Chromium, helpers."""

from __future__ import annotations

import base64
import os
import re
import struct
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psutil
import pytest
import pytest_asyncio

from carnb.browser import BrowserPool, find_chromium
from carnb.errors import BrowserUnavailable

from .site import Site

CHROMIUM_NAMES = ("chromium", "chrome", "headless_shell", "chrome-headless-shell")


def chromium_or_skip() -> str:
    """The Chromium to test with. Skips on a developer machine without one; in CI (``CI`` set)
    a missing Chromium fails, because .ci/run installs it and the browser tests must run."""
    try:
        return find_chromium()
    except BrowserUnavailable as exc:  # pragma: no cover - CI installs Chromium
        if os.environ.get("CI"):
            pytest.fail(f"CI must have a Chromium for the browser tests: {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    s = Site().start()
    yield s
    s.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool() -> AsyncIterator[BrowserPool]:
    """One Chromium for the whole module (launched by the first test that needs it)."""
    chromium_or_skip()
    p = BrowserPool(op_timeout_ms=3000)
    yield p
    await p.close()


def chromium_processes() -> list[psutil.Process]:
    """Live (non-zombie) Chromium processes below this test process."""
    out = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.name() in CHROMIUM_NAMES:
                out.append(proc)
        except psutil.NoSuchProcess:
            continue
    return out


def steps_ok(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The steps, after checking every one succeeded (with the error shown if not)."""
    steps = result["steps"]
    for step in steps:
        assert step["status"] == "ok", step
    return steps


def element_id(summary: str, role: str, name: str) -> str:
    """The id of the element listed as ``[el_N] role "name"`` in an observe summary."""
    m = re.search(rf'^\[(el_\d+)\] {re.escape(role)} "{re.escape(name)}"', summary, re.M)
    assert m, f'no {role} "{name}" in summary:\n{summary}'
    return m.group(1)


def png_size(b64: str) -> tuple[int, int]:
    """Width and height from the IHDR chunk of a base64 PNG (parsed here, independently)."""
    raw = base64.b64decode(b64)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    length, kind = struct.unpack(">I4s", raw[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", raw[16:24])
    return width, height

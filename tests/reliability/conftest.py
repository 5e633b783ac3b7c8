"""Fixtures of the reliability suite: real `python -m carnb serve` processes with data in
``tmp_path``, and the ``reliability`` marker. Figures each test adds to ``harness.FIGURES`` are
printed in the terminal summary, so a CI log shows what the suite really did."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.harness import FIGURES, ServerProc, raise_fd_limit


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "reliability: load, fuzzing, fault and attack tests against a live server",
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("reliability figures")
    for name in sorted(FIGURES):
        terminalreporter.write_line(f"{name}: {FIGURES[name]}")


@pytest.fixture(scope="session", autouse=True)
def _fd_limit() -> None:
    raise_fd_limit(8192)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Any]:
    """``start_server(*args, home=None, log_level="WARNING")`` -> a running :class:`ServerProc`."""
    procs: list[ServerProc] = []

    def start(*args: str, home: Path | None = None, **kw: Any) -> ServerProc:
        h = home or tmp_path / "home"
        h.mkdir(parents=True, exist_ok=True)
        p = ServerProc(h, *args, **kw)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.stop()

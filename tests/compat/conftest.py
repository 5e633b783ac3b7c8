"""The official `car-runtime` client (a black box from the registry) against real carnb servers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

car_runtime = pytest.importorskip(
    "car_runtime", reason="install the test extra: pip install -e .[test]"
)

pytestmark = pytest.mark.compat

CAR_ENV = (
    "CAR_DAEMON_URL",
    "CAR_AUTH_TOKEN",
    "CAR_AGENT_ID",
    "CAR_AGENT_TOKEN",
    "CAR_MEMORY_NAMESPACE",
)


@pytest.fixture
def car_client(monkeypatch) -> Iterator[Any]:
    """Make a CarRuntime with exactly the given CAR_* environment."""
    made: list[Any] = []

    def make(**env: str) -> Any:
        for name in CAR_ENV:
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("CAR_NO_VERSION_WARNING", "1")
        rt = car_runtime.CarRuntime()
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.close()


@pytest.fixture
def served(serve_process) -> Any:
    """A real `python -m carnb serve` with two registered agents."""
    return serve_process("--agent", "alice", "--agent", "bob")

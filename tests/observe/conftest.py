"""A real Phoenix server for the export tests: started once per test session on free ports of
127.0.0.1, with its own SQLite working directory, no network and no telemetry of its own.

Phoenix lives in its own virtualenv (``make phoenix``: ``.venv-phoenix``; its ~110 packages
would otherwise pin the project's), found as ``$CARNB_PHOENIX`` (the ``phoenix`` executable),
``.venv-phoenix/bin/phoenix`` in the repository, or ``phoenix`` on PATH. Without one the tests
that need it are skipped, except under CI, where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_phoenix() -> str | None:
    for candidate in (os.environ.get("CARNB_PHOENIX"), str(ROOT / ".venv-phoenix/bin/phoenix")):
        if candidate and Path(candidate).is_file():
            return candidate
    return shutil.which("phoenix")


@dataclass
class Phoenix:
    url: str
    process: subprocess.Popen[bytes]

    @property
    def traces(self) -> str:
        return f"{self.url}/v1/traces"


@pytest.fixture(scope="session")
def phoenix(tmp_path_factory) -> Iterator[Phoenix]:
    exe = find_phoenix()
    if exe is None:
        message = "Phoenix is not installed: make phoenix (or set CARNB_PHOENIX)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    work = tmp_path_factory.mktemp("phoenix")
    port = free_port()
    env = {
        **os.environ,
        "PHOENIX_WORKING_DIR": str(work),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(free_port()),
        "PHOENIX_TELEMETRY_ENABLED": "false",
    }
    log = (work / "phoenix.log").open("wb")
    proc = subprocess.Popen([exe, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    import httpx

    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"Phoenix did not start: {(work / 'phoenix.log').read_text()[-2000:]}")
        time.sleep(0.5)
    try:
        yield Phoenix(url, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()

"""`python -m carnb serve` as a real process."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, Client


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_prints_url_and_connection_file_and_stops_cleanly(serve_process, sig) -> None:
    p = serve_process("--agent", "alice")
    assert p.url.startswith("ws://127.0.0.1:")
    assert p.lines[1] == f"connection file: {p.conn_file}"
    assert stat.S_IMODE(p.conn_file.stat().st_mode) == 0o600
    info = p.info
    assert info["url"] == p.url and info["pid"] == p.proc.pid
    assert set(info["agents"]) == {"alice"}
    c = Client(p.url)
    assert c.call("session.auth", {"token": info["token"]})["ok"] is True
    assert c.call("state.set", {"key": "a", "value": 1}) == "ok"
    c.close()
    assert p.stop(sig) == 0
    assert not p.conn_file.exists()


def test_serve_no_auth(serve_process) -> None:
    p = serve_process("--no-auth")
    c = Client(p.url)
    try:
        assert c.call("state.keys") == []
    finally:
        c.close()


def test_home_from_environment(tmp_path) -> None:
    home = tmp_path / "h"
    proc = subprocess.Popen(
        [sys.executable, "-m", "carnb", "serve"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "CARNB_HOME": str(home)},
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        line = proc.stdout.readline().strip()
        path = line.removeprefix("connection file: ")
        assert path.startswith(str(home / "run"))
        assert json.loads(Path(path).read_text())["home"] == str(home)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


def test_busy_port_is_a_clear_error(serve_process, tmp_path) -> None:
    p = serve_process()
    port = p.url.rsplit(":", 1)[1].strip("/")
    out = subprocess.run(
        [sys.executable, "-m", "carnb", "serve", "--port", port, "--home", str(tmp_path / "x")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 1
    assert "could not start the server" in out.stderr
    assert "Traceback" not in out.stderr


def test_help_explains_the_options() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "carnb", "serve", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0
    for opt in ("--host", "--port", "--no-auth", "--agent", "--home", "--connection-file"):
        assert opt in out.stdout


def test_a_bad_store_is_refused_naming_the_option() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "carnb", "serve", "--store", "mysql://db/x"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "PostgreSQL URL" in proc.stderr and "Traceback" not in proc.stderr


def test_an_unreachable_store_is_a_clear_error(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "carnb", "serve", "--home", str(tmp_path), "--store"]
        + ["postgresql://carnb:hunter2@127.0.0.1:1/nothing"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "cannot be reached" in proc.stderr and "--store" in proc.stderr
    assert "hunter2" not in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("justaname", "expected [NAME=]MODULE:CALLABLE"),
        ("no_such_module_xyz:fn", "ModuleNotFoundError"),
        ("tests.compat.loopmodels:nothing", "AttributeError"),
        ("tests.compat.loopmodels:STEPS", "STEPS is not callable"),
    ],
)
def test_a_bad_model_spec_is_a_clear_error(tmp_path, spec, message) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "carnb", "serve", "--home", str(tmp_path), "--model", spec],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 1 and message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_serve_model_names_and_the_default(serve_process) -> None:
    p = serve_process(
        "--model", "first=tests.compat.loopmodels:echo", "--model", "tests.compat.loopmodels:adder"
    )
    c = Client(p.url)
    try:
        c.call("session.auth", {"token": p.info["token"]})
        listed = c.call("models.list")
        assert listed["default"] == "first"
        assert [m["name"] for m in listed["models"]] == ["first", "adder"]
        assert c.call("infer", {"model": "adder", "messages": []})["tool_calls"][0]["name"] == "add"
    finally:
        c.close()

"""The extension in IPython's in-process shell: load, reload, unload, options, Ctrl-C."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError

import carnb
from carnb.errors import CarnbError
from carnb.kernel import extension
from carnb.kernel.calls import CarInterrupted
from tests.conftest import Client
from tests.kernel.conftest import port_is_free


def run(ip: Any, code: str) -> Any:
    return ip.run_cell(code)


def test_load_prints_one_line_and_current_is_the_runtime(shell: Any, capsys: Any) -> None:
    shell.run_line_magic("load_ext", "carnb")
    out = capsys.readouterr().out.strip().splitlines()
    rt = carnb.current()
    assert len(out) == 1 and rt.url in out[0]
    assert rt.running and rt.session is not None and rt.session.is_host
    assert rt.connection_file is not None and rt.connection_file.exists()
    assert rt.home == Path(shell.config.CarMagics.home)
    info = json.loads(rt.connection_file.read_text())
    assert info["url"] == rt.url and info["token"] == rt.token


def test_loading_twice_keeps_one_server(loaded: Any, capsys: Any) -> None:
    rt = carnb.current()
    carnb.load_ipython_extension(loaded)  # what a second load at kernel start would do
    assert "already running" in capsys.readouterr().out
    assert carnb.current() is rt and rt.running


def test_unload_frees_the_port_and_reload_starts_fresh(loaded: Any, capsys: Any) -> None:
    rt = carnb.current()
    port, conn = rt.port, rt.connection_file
    loaded.run_line_magic("reload_ext", "carnb")
    rt2 = carnb.current()
    assert rt2 is not rt and not rt.running and rt2.running
    assert port_is_free(port) and conn is not None and not conn.exists()
    loaded.run_line_magic("unload_ext", "carnb")
    assert not rt2.running and port_is_free(rt2.port if rt2.server else port)
    with pytest.raises(CarnbError, match="not loaded"):
        carnb.current()
    threads = [t.name for t in threading.enumerate()]
    assert "carnb-loop" not in threads
    res = run(loaded, "%car status")
    assert isinstance(res.error_in_exec, UsageError)
    assert "%load_ext carnb" in str(res.error_in_exec)


def test_unload_removes_the_post_run_cell_hook(loaded: Any) -> None:
    ext = extension.active()
    assert ext is not None and ext.post_run_cell in loaded.events.callbacks["post_run_cell"]
    assert ext.recorder.pre_run_cell in loaded.events.callbacks["pre_run_cell"]
    loaded.run_line_magic("unload_ext", "carnb")
    assert ext.post_run_cell not in loaded.events.callbacks["post_run_cell"]
    assert ext.recorder.pre_run_cell not in loaded.events.callbacks["pre_run_cell"]
    assert ext.magics not in loaded.configurables


def test_fixed_port_and_auth_off_through_config(shell: Any, capsys: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    shell.run_line_magic("config", f"CarMagics.port = {port}")
    shell.run_line_magic("config", "CarMagics.auth = False")
    shell.run_line_magic("load_ext", "carnb")
    rt = carnb.current()
    assert rt.port == port
    c = Client(rt.url)
    try:
        assert c.call("state.set", {"key": "k", "value": 1}) == "ok"  # no session.auth needed
    finally:
        c.close()
    out = str(loaded_server(shell))
    assert "OFF" in out and "CAR_AUTH_TOKEN" not in out


def loaded_server(ip: Any) -> Any:
    return ip.run_line_magic("car", "server")


def test_port_in_use_is_one_line_and_nothing_is_left(shell: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        shell.run_line_magic("config", f"CarMagics.port = {s.getsockname()[1]}")
        res = run(shell, "%load_ext carnb")
    assert res.error_in_exec is not None
    assert "CarMagics.port" in str(res.error_in_exec)
    assert "carnb-loop" not in [t.name for t in threading.enumerate()]
    shell.run_line_magic("config", "CarMagics.port = 0")
    shell.run_line_magic("load_ext", "carnb")
    assert carnb.current().running


@pytest.mark.parametrize(
    "line, match",
    [
        ("CarMagics.port = 70000", "0..65535"),
        ("CarMagics.allowed_origins = ['localhost:8888']", "not an origin"),
        ("CarMagics.chromium = '/nonexistent/chromium'", "not an executable"),
        ("CarMagics.switch_interval = 2.0", "between 0.0001 and 0.1"),
    ],
)
def test_options_are_validated(loaded: Any, caplog: Any, line: str, match: str) -> None:
    magics = extension.active().magics  # type: ignore[union-attr]
    before = (magics.port, list(magics.allowed_origins), magics.chromium)
    loaded.run_line_magic("config", line)
    assert match in caplog.text  # %config reports the TraitError through logging
    assert (magics.port, list(magics.allowed_origins), magics.chromium) == before


def test_an_invalid_option_fails_the_load_in_one_line(shell: Any) -> None:
    shell.run_line_magic("config", "CarMagics.port = 70000")  # not loaded yet: kept in config
    res = run(shell, "%load_ext carnb")
    assert "cannot load carnb" in str(res.error_in_exec) and "0..65535" in str(res.error_in_exec)
    assert "\n" not in str(res.error_in_exec)
    shell.run_line_magic("config", "CarMagics.port = 0")
    shell.run_line_magic("load_ext", "carnb")
    assert carnb.current().running


def test_switch_interval_is_set_while_loaded_and_restored(shell: Any) -> None:
    import sys

    before = sys.getswitchinterval()
    shell.run_line_magic("config", "CarMagics.switch_interval = 0.001")
    shell.run_line_magic("load_ext", "carnb")
    assert sys.getswitchinterval() == pytest.approx(0.001)
    shell.run_line_magic("unload_ext", "carnb")
    assert sys.getswitchinterval() == before


def test_config_lists_the_options_with_help(loaded: Any, capsys: Any) -> None:
    loaded.run_line_magic("config", "CarMagics")
    out = capsys.readouterr().out
    for name in ("port", "auth", "allowed_origins", "chromium", "home", "switch_interval"):
        assert f"CarMagics.{name}" in out


def test_allowed_origins_reach_the_server(shell: Any) -> None:
    shell.run_line_magic("config", "CarMagics.allowed_origins = ['http://localhost:8888']")
    shell.run_line_magic("load_ext", "carnb")
    rt = carnb.current()
    ok = Client(rt.url, origin="http://localhost:8888")
    ok.close()
    with pytest.raises(Exception, match="403|rejected"):
        Client(rt.url, origin="http://evil.example")


def test_ctrl_c_while_waiting_on_the_loop_thread(loaded: Any) -> None:
    rt = carnb.current()
    rt.loop_thread.call_soon(time.sleep, 4.0)  # the loop thread is busy for 4 s
    main = threading.main_thread().ident
    assert main is not None
    timer = threading.Timer(0.3, signal.pthread_kill, (main, signal.SIGINT))
    timer.start()
    t0 = time.monotonic()
    res = run(loaded, "%car server")
    assert time.monotonic() - t0 < 3.0  # the magic gave up at Ctrl-C, not when the host woke
    assert isinstance(res.error_in_exec, CarInterrupted)
    assert "cancelled by Ctrl-C" in res.error_in_exec.message
    assert rt.running
    assert loaded.run_line_magic("car", "memory count").value == 0  # usable afterwards


def test_a_closed_runtime_is_explained(loaded: Any) -> None:
    carnb.current().close()
    res = run(loaded, "%car status")
    assert isinstance(res.error_in_exec, Exception)
    assert "%reload_ext carnb" in str(res.error_in_exec)
    loaded.run_line_magic("reload_ext", "carnb")
    assert loaded.run_line_magic("car", "memory count").value == 0

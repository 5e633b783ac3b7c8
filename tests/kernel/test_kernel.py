"""A real ipykernel through jupyter_client: load, an external client answered while a cell is
blocked, reload and unload leave no port or thread, loading at kernel start, shutdown, Ctrl-C."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import Client
from tests.kernel.conftest import Kernel, needs_chromium, port_is_free

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(180)]


def runtime_info(k: Kernel) -> dict[str, Any]:
    res = k.ok(
        "import carnb, json as _j; _rt = carnb.current(); print(_j.dumps({'url': _rt.url, "
        "'token': _rt.token, 'port': _rt.port, 'file': str(_rt.connection_file), "
        "'session': _rt.session.client_id}))"
    )
    return json.loads(res.stdout)


def pinger(url: str, token: str, stop: threading.Event, out: list[float | None]) -> None:
    c = Client(url)
    c.call("session.auth", {"token": token})
    try:
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                c.call("state.get", {"key": "k"}, timeout=2)
                out.append(time.perf_counter() - t0)
            except Exception:
                out.append(None)
            time.sleep(0.1)
    finally:
        c.close()


def test_load_ext_starts_the_runtime(kernel: Kernel) -> None:
    res = kernel.ok("%load_ext carnb")
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("carnb: CAR session server on ws://127.0.0.1:")
    info = runtime_info(kernel)
    assert info["url"] in lines[0]
    assert json.loads(Path(info["file"]).read_text())["url"] == info["url"]
    again = kernel.ok("%load_ext carnb")  # IPython's own "already loaded"; same server
    assert "already loaded" in again.stdout
    assert runtime_info(kernel)["port"] == info["port"]


def test_a_magic_before_load_is_one_line(kernel: Kernel) -> None:
    res = kernel.run("%car status")
    # ipykernel shows a UsageError as one line on stderr
    assert res.status == "error" and res.error is None
    assert res.stderr.strip() == "UsageError: Line magic function `%car` not found."
    assert kernel.ok("%load_ext carnb").stdout.startswith("carnb: ")


@pytest.mark.parametrize(
    "cell",
    ["time.sleep(5)", "_t = time.time()\nwhile time.time() - _t < 5:\n    pass"],
    ids=["sleep", "busy-loop"],
)
def test_external_client_is_answered_while_a_cell_is_blocked(kernel: Kernel, cell: str) -> None:
    kernel.ok("%load_ext carnb")
    info = runtime_info(kernel)
    kernel.ok("import time")
    stop, lat = threading.Event(), []  # type: ignore[var-annotated]
    msg_id = kernel.submit(cell)
    time.sleep(0.3)  # the cell is running now
    t = threading.Thread(target=pinger, args=(info["url"], info["token"], stop, lat))
    t.start()
    time.sleep(4.0)
    stop.set()
    t.join(10)
    res = kernel.collect(msg_id, timeout=30)
    assert res.status == "ok"
    assert len(lat) >= 20
    assert None not in lat, lat  # every request answered while the cell ran


def test_reload_frees_the_port_and_unload_stops_everything(kernel: Kernel) -> None:
    kernel.ok("%load_ext carnb")
    first = runtime_info(kernel)
    kernel.ok("%reload_ext carnb")
    second = runtime_info(kernel)
    assert second["port"] != first["port"] or second["session"] != first["session"]
    assert port_is_free(first["port"]) or second["port"] == first["port"]
    assert not Path(first["file"]).exists() or first["file"] == second["file"]
    c = Client(second["url"])
    assert c.call("session.auth", {"token": second["token"]})["ok"] is True
    c.close()
    kernel.ok("%unload_ext carnb")
    assert port_is_free(second["port"])
    assert not Path(second["file"]).exists()
    names = kernel.value("[t.name for t in __import__('threading').enumerate()]")
    assert "carnb-loop" not in names
    res = kernel.run("%car status")
    assert res.status == "error"
    assert res.stderr.strip() == (
        "UsageError: carnb is not loaded (it was unloaded): run `%load_ext carnb`"
    )
    kernel.ok("%load_ext carnb")
    assert kernel.ok("%car memory count").text.strip().endswith("0 facts in ephemeral")


def test_loaded_at_kernel_start(start_kernel: Any, tmp_path: Path) -> None:
    profile = tmp_path / "ipython" / "profile_default"
    profile.mkdir(parents=True)
    (profile / "ipython_config.py").write_text('c.InteractiveShellApp.extensions = ["carnb"]\n')
    k = start_kernel(env={"IPYTHONDIR": str(tmp_path / "ipython")})
    info = runtime_info(k)
    c = Client(info["url"])
    assert c.call("session.auth", {"token": info["token"]})["ok"] is True
    c.close()
    res = k.ok("%car status")
    assert res.data("application/vnd.jupyter.widget-view+json")


def test_kernel_shutdown_stops_the_runtime(start_kernel: Any) -> None:
    k = start_kernel()
    k.ok("%load_ext carnb")
    info = runtime_info(k)
    assert not port_is_free(info["port"])
    k.kc.stop_channels()
    k.km.shutdown_kernel(now=False)
    deadline = time.monotonic() + 15
    while Path(info["file"]).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(info["file"]).exists()  # removed by the atexit handler
    assert port_is_free(info["port"])


def test_ctrl_c_while_a_magic_waits_on_the_loop_thread(kernel: Kernel) -> None:
    kernel.ok("%load_ext carnb")
    kernel.ok("import time, carnb\ncarnb.current().loop_thread.call_soon(time.sleep, 4)")
    msg_id = kernel.submit("%car server")
    time.sleep(0.8)
    kernel.interrupt()
    res = kernel.collect(msg_id, timeout=30)
    assert res.status == "error"
    assert res.error is not None and len(res.error["traceback"]) == 1
    assert "cancelled by Ctrl-C" in res.error["traceback"][0]
    after = kernel.ok("%car memory count", timeout=30)  # runtime and kernel usable
    assert "0 facts" in after.text


@pytest.mark.browser
@needs_chromium
def test_unload_leaves_no_browser_process(kernel: Kernel, site: str) -> None:
    kernel.ok("%load_ext carnb")
    res = kernel.ok(f"%car browser open {site}", timeout=60)
    assert "carnb demo page" in res.text
    proc = psutil.Process(kernel.pid)
    assert any("chrom" in p.name().lower() for p in proc.children(recursive=True))
    kernel.ok("%unload_ext carnb")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = [
            p
            for p in proc.children(recursive=True)
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        ]
        if not left:
            break
        time.sleep(0.1)
    assert left == []


def test_ctrl_c_in_a_bracketed_run_is_one_line_and_ends_the_run_interrupted(
    kernel: Kernel,
) -> None:
    kernel.ok("%load_ext carnb")
    msg_id = kernel.submit("%%car run wait for ever\nimport time\ntime.sleep(60)")
    time.sleep(1.5)
    kernel.interrupt()
    res = kernel.collect(msg_id, timeout=30)
    assert res.status == "error" and res.error is not None
    assert len(res.error["traceback"]) == 1, res.error["traceback"]
    line = res.error["traceback"][0]
    assert line.startswith("carnb (interrupted): the cell was interrupted; run run-")
    assert "KeyboardInterrupt" not in line and "…" in line  # a short run id
    listed = kernel.ok("%car run list")
    assert "interrupted" in listed.text and "completed" not in listed.text


def test_a_failing_bracketed_cell_names_its_own_cell(kernel: Kernel) -> None:
    kernel.ok("%load_ext carnb")
    kernel.ok("x = 1")
    res = kernel.run("%%car run divide\n1 / 0")
    assert res.status == "error" and res.error is not None
    shown = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(res.error["traceback"]))
    assert "Cell In[3]" in shown and "In[0]" not in shown
    assert "ZeroDivisionError" in shown

"""A notebook tool in a real kernel answers another session's proposal while a cell is busy."""

from __future__ import annotations

import time

import pytest

from tests.conftest import Client
from tests.kernel.conftest import Kernel
from tests.kernel.test_kernel import runtime_info
from tests.server.proposing import action, proposal, submit

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(180)]

TOOL = '''
import carnb, threading

@carnb.tool(share=True)
def double(n: int) -> dict:
    """Double a number."""
    return {"value": n * 2, "thread": threading.current_thread().name}
'''


@pytest.mark.parametrize(
    "cell",
    ["time.sleep(6)", "_t = time.time()\nwhile time.time() - _t < 6:\n    pass"],
    ids=["sleep", "busy-loop"],
)
def test_a_notebook_tool_answers_while_a_cell_is_busy(kernel: Kernel, cell: str) -> None:
    kernel.ok("%load_ext carnb")
    kernel.ok(TOOL)
    kernel.ok("import time")
    info = runtime_info(kernel)
    msg_id = kernel.submit(cell)
    time.sleep(0.5)  # the cell is running now
    client = Client(info["url"])
    try:
        client.call("session.auth", {"token": info["token"]})
        assert [t["name"] for t in client.call("tools.list")["tools"]] == ["double"]
        started = time.monotonic()
        served = submit(client, proposal(action("d", tool="double", parameters={"n": 21})))
        took = time.monotonic() - started
    finally:
        client.close()
    result = served.by_id("d")
    assert result["status"] == "succeeded", result
    assert result["output"]["value"] == 42 and result["output"]["thread"].startswith("carnb-tool")
    assert served.requests == []  # ran in the kernel, no tools.execute round trip
    assert took < 3, f"the tool took {took:.1f} s while the cell was busy"
    assert kernel.collect(msg_id, timeout=30).status == "ok"


SLOW_TOOL = '''
import carnb, time

@carnb.tool
def step(n: int) -> int:
    """One slow step."""
    time.sleep(0.4)
    return n * 10
'''


def test_propose_in_a_real_kernel_runs_notebook_tools_and_the_panel_follows(
    kernel: Kernel,
) -> None:
    """``%%car propose --run`` blocks the kernel thread while the proposal's notebook tools run
    in worker threads; the panel sends each action's progress while the cell still runs."""
    kernel.ok("%load_ext carnb")
    kernel.ok("%car status")
    kernel.ok(SLOW_TOOL)
    kernel.ok("%car policy add no-big --rule deny_tool_param --target step --key n --pattern 9")
    actions = ", ".join(
        f'{{"id": "s{i}", "type": "tool_call", "tool": "step", "parameters": {{"n": {i}}}'
        + (f', "depends_on": ["s{i - 1}"]' if i else "")
        + "}"
        for i in range(3)
    )
    kernel.comm_msgs.clear()
    res = kernel.ok(f'%%car propose --run\n{{"id": "steps", "actions": [{actions}]}}')
    (shown,) = [o for o in res.outputs if "text/html" in o.get("data", {})]
    assert "3 executed, 0 rejected" in shown["data"]["text/plain"]
    assert shown["data"]["text/html"].count("carnb-status-succeeded") == 3
    progress = [
        str(m["content"]["data"]["state"]["value"])
        for m in kernel.comm_msgs
        if "steps" in str((m["content"].get("data") or {}).get("state", {}).get("value", ""))
    ]
    assert any('data-action="s1" data-status="running"' in v for v in progress), progress
    assert any('data-action="s2" data-status="succeeded"' in v for v in progress), progress
    denied = kernel.ok(
        '%%car propose --run\n{"actions": [{"id": "big", "type": "tool_call", '
        '"tool": "step", "parameters": {"n": 99}}]}'
    )
    assert "denied by policy 'no-big'" in denied.text

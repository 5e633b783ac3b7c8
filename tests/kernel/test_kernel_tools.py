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

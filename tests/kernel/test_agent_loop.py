"""The official agent loop, in its own process, against a real kernel with
``%load_ext carnb`` whose model is a notebook callable (``carnb.model``)."""

from __future__ import annotations

import pytest

from tests.kernel.conftest import Kernel

pytestmark = pytest.mark.kernel

SETUP = """
%load_ext carnb
import json, os, subprocess, sys, carnb
from tests.compat import loopmodels
carnb.model(loopmodels.adder, name="adder")
token = carnb.current().register_agent("adder")
env = {**os.environ, **carnb.current().client_env("adder")}
"""

RUN = """
agent = subprocess.run(
    [sys.executable, "-m", "tests.compat.loopagent", "adder", "add 1, 2 and 3"],
    env=env, capture_output=True, text=True, timeout=120,
)
assert agent.returncode == 0, agent.stderr
outcome = json.loads(agent.stdout.strip().splitlines()[-1])
trace = carnb.current().call("runs.get_trace", {"run_id": outcome["run_id"]})
"""


def test_run_agent_completes_against_the_kernel_with_a_notebook_model(kernel: Kernel) -> None:
    kernel.ok(SETUP)
    kernel.ok(RUN, timeout=150)  # the cell waits on the agent: the server answers meanwhile
    assert kernel.value("(outcome['status'], outcome['summary'])") == ("success", "6")
    kinds = kernel.value("[r['record'] for r in trace['records']]")
    assert kinds == ["started"] + ["model_turn", "turn"] * 4 + ["ended"]
    assert kernel.value("(trace['agent_id'], trace['status'])") == ("adder", "completed")
    assert kernel.value(
        "[r['turn']['output'] for r in trace['records'] if r['record'] == 'turn'][:3]"
    ) == [
        {"sum": 1},
        {"sum": 3},
        {"sum": 6},
    ]
    # the trace view shows the model turns and the tool executions
    text = kernel.ok("doc = %car run trace {outcome['run_id']}\nprint(doc)").stdout
    assert "model adder" in text and "→ add" in text and "tool add" in text
    assert "[10 in / 5 out tokens]" in text

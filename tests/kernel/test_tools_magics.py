"""In the notebook: ``%car tools``, ``%car policy``, ``%%car propose [--run]`` in
IPython's in-process shell, tool and policy names completing, and the live panel showing each
session's tools and the proposal running now, action by action."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from IPython.core.error import UsageError

import carnb
from carnb.kernel.calls import CarCommandError
from tests.conftest import Client
from tests.kernel.test_complete import complete
from tests.kernel.test_panel import wait_for
from tests.server.proposing import action, proposal, write

NOTEBOOK_TOOLS = '''
import carnb

@carnb.tool(share=["alice"])
def price(item: str, quantity: int = 1) -> dict:
    """Price an order line."""
    return {"item": item, "total": 2.5 * quantity}

@carnb.tool
def wipe(path: str) -> str:
    """Delete a folder."""
    return "wiped " + path
'''


def alice(shell: Any) -> Client:
    """An external session bound to agent alice, with a client tool of its own."""
    info = shell.run_line_magic("car", "agent add alice")
    c = Client(info.env["CAR_DAEMON_URL"])
    c.call("session.auth", {"agent_id": "alice", "token": info.env["CAR_AGENT_TOKEN"]})
    c.call("tools.register", [{"name": "search", "description": "search the web"}])
    return c


def test_tools_lists_every_sessions_tools(loaded: Any) -> None:
    assert loaded.run_cell(NOTEBOOK_TOOLS).success
    c = alice(loaded)
    try:
        table = loaded.run_line_magic("car", "tools")
        rows = {(str(r[1]), str(r[2])): r for r in table.rows}
        assert set(rows) == {
            ("notebook", "price"),
            ("notebook", "wipe"),
            ("alice", "price"),
            ("alice", "search"),
        }
        assert rows[("notebook", "price")][3] == "item: string, quantity?: integer"
        assert rows[("notebook", "price")][5] == "notebook, shared with alice"
        assert rows[("notebook", "wipe")][5] == "notebook only"
        assert rows[("alice", "search")][5] == "own (client)"
        assert "Price an order line." in table.text()
        assert '<span class="carnb-tool">search</span>' in table._repr_mimebundle_()["text/html"]
        only = loaded.run_line_magic("car", "tools search")
        assert [str(r[2]) for r in only.rows] == ["search"]
        # tool names of every session complete, e.g. as a policy's target
        assert complete(loaded, "%car tools s") == ["search"]
        assert complete(loaded, "%car policy add x --rule deny_tool --target w") == ["wipe"]
    finally:
        c.close()
    deadline = time.monotonic() + 5
    while "search" in loaded.run_line_magic("car", "tools").tools:  # alice's tools end with her
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_policy_add_list_remove(loaded: Any) -> None:
    added = loaded.run_line_magic(
        "car", "policy add no-root --rule deny_tool_param --target wipe --key path --pattern /"
    )
    assert "no-root" in added.text()
    loaded.run_line_magic("car", "policy add no-rm --rule deny_tool --target rm")
    listed = loaded.run_line_magic("car", "policy list")
    assert [p["name"] for p in listed.policies] == ["no-root", "no-rm"]
    assert "no-rm" in listed._repr_mimebundle_()["text/html"]
    assert complete(loaded, "%car policy remove no-r") == ["no-rm", "no-root"]
    loaded.run_line_magic("car", "policy remove no-rm")
    assert [p["name"] for p in loaded.run_line_magic("car", "policy list").policies] == ["no-root"]
    res = loaded.run_cell("%car policy remove no-rm")
    assert isinstance(res.error_in_exec, CarCommandError)
    assert "no policy named 'no-rm'" in str(res.error_in_exec)
    res = loaded.run_cell("%car policy add bad --rule deny_everything")
    assert isinstance(res.error_in_exec, UsageError)
    assert "unknown --rule 'deny_everything'" in str(res.error_in_exec)
    res = loaded.run_cell("%car policy add half --rule deny_tool")  # no target: the server says
    assert isinstance(res.error_in_exec, CarCommandError) and "target" in str(res.error_in_exec)
    assert len(loaded.run_line_magic("car", "policy list").policies) == 1  # nothing registered


def test_propose_verifies_and_runs_only_with_run(loaded: Any) -> None:
    assert loaded.run_cell(NOTEBOOK_TOOLS).success
    loaded.run_line_magic(
        "car", "policy add no-root --rule deny_tool_param --target wipe --key path --pattern /etc"
    )
    body = json.dumps(
        proposal(
            action("p", tool="price", parameters={"item": "tea", "quantity": 4}),
            action("w", tool="wipe", parameters={"path": "/etc"}),
            write("s", "total", 10),
        )
    )
    checked = loaded.run_cell_magic("car", "propose", body)
    assert checked.outcome is None and "add --run" in checked.text()
    assert checked.verification.levels  # levels shown, nothing ran
    assert "wiped" not in checked.text()
    assert carnb.current().call("state.get", {"key": "total"}) is None
    ran = loaded.run_cell_magic("car", "propose --run", body)
    results = ran.outcome.results
    assert results["p"]["status"] == "skipped"
    assert results["w"]["status"] == "rejected" and "no-root" in results["w"]["error"]
    assert results["s"]["status"] == "skipped"  # a denial stops the proposal before it runs
    assert carnb.current().call("state.get", {"key": "total"}) is None
    text = ran.text()
    assert "rejected" in text and "no-root" in text
    html = ran._repr_mimebundle_()["text/html"]
    assert 'class="carnb-status carnb-status-rejected"' in html
    skip = json.loads(body)
    skip["actions"][1]["failure_behavior"] = "skip"  # the denied action alone is left out
    ran = loaded.run_cell_magic("car", "propose --run", json.dumps(skip))
    results = ran.outcome.results
    assert results["p"]["status"] == "succeeded" and results["p"]["output"]["total"] == 10.0
    assert results["w"]["status"] == "rejected"
    assert results["s"]["status"] == "succeeded"
    assert carnb.current().call("state.get", {"key": "total"}) == 10
    assert re.search(r"p\s+succeeded.*\d+\.\d ms", ran.text())


def test_verify_shows_a_conflict_and_bad_input_is_one_line(loaded: Any) -> None:
    assert loaded.run_cell(NOTEBOOK_TOOLS).success
    racing = proposal(
        action("a", tool="price", parameters={"item": "x"}, write_set=["basket"]),
        action("b", tool="price", parameters={"item": "y"}, write_set=["basket"]),
        action("c", tool="nope"),
    )
    checked = loaded.run_cell_magic("car", "propose", json.dumps(racing))
    assert checked.verification.valid is False
    assert [tuple(c) for c in checked.verification.conflicts] == [("a", "b", "basket")]
    assert any("'nope'" in i["message"] for i in checked.verification.issues)
    assert "write conflicts" in checked.text() and "basket" in checked.text()
    res = loaded.run_cell("%%car propose\nnot json")
    assert isinstance(res.error_in_exec, CarCommandError)
    assert "not JSON" in str(res.error_in_exec) and "\n" not in str(res.error_in_exec)
    dup = proposal(action("a", tool="price"), action("a", tool="price"))
    res = loaded.run_cell("%%car propose --run\n" + json.dumps(dup))
    assert isinstance(res.error_in_exec, CarCommandError)
    assert "unique" in str(res.error_in_exec)


def test_panel_shows_tools_and_the_proposal_running_now(loaded: Any) -> None:
    panel = loaded.run_line_magic("car", "status")
    assert loaded.run_cell(NOTEBOOK_TOOLS).success
    c = alice(loaded)
    try:
        panel.flush()
        assert "search" in panel.tools.value and "wipe" in panel.tools.value
        # alice proposes: a fast shared notebook tool, then her own tool she holds back
        c.send(
            {
                "jsonrpc": "2.0",
                "id": 99,
                "method": "proposal.submit",
                "params": {
                    "proposal": proposal(
                        action("quote", tool="price", parameters={"item": "tea"}),
                        action("look", tool="search", depends_on=["quote"]),
                        pid="shopping",
                    )
                },
            }
        )
        held = c.recv(10)
        assert held["method"] == "tools.execute" and held["params"]["action_id"] == "look"
        assert wait_for(lambda: 'data-action="look" data-status="running"' in panel.tools.value)
        value = panel.tools.value
        assert 'data-action="quote" data-status="succeeded"' in value
        assert "shopping" in value and "running" in value
        # each action is named by the tool it calls; its id is the hover text
        assert 'title="action look">search running</span>' in value
        assert 'title="action quote">price succeeded' in value
        assert "search running" in panel.snapshot().text()
        c.send({"jsonrpc": "2.0", "id": held["id"], "result": ["a", "b"]})
        assert c.recv_reply(99)["result"]["results"][1]["status"] == "succeeded"
        assert wait_for(lambda: 'data-action="look" data-status="succeeded"' in panel.tools.value)
        assert "<i>last</i>" in panel.tools.value
    finally:
        c.close()


@pytest.mark.parametrize("line", ["%car tools --session", "%car policy add x"])
def test_argument_errors(loaded: Any, line: str) -> None:
    res = loaded.run_cell(line)
    assert isinstance(res.error_in_exec, UsageError)


def test_progress_keeps_the_latest_proposal_and_caps_its_actions() -> None:
    from carnb.kernel.proposal_progress import MAX_ACTIONS_KEPT, ProposalProgress
    from carnb.kernel.render_tools import panel_tools_html, panel_tools_text

    progress = ProposalProgress()

    def event(
        pid: str, aid: str, result: dict[str, Any] | None = None, tool: str | None = None
    ) -> None:
        kind = "action_finished" if result else "action_started"
        progress.on_event(
            {
                "session_id": "c1",
                "proposal_id": pid,
                "kind": kind,
                "action_id": aid,
                "tool": tool,
                "action_type": "tool_call" if tool else "state_write",
                "attempt": 1,
                "result": result,
            }
        )

    for i in range(MAX_ACTIONS_KEPT + 5):
        event("big", f"a{i}")
    event("big", "a0", {"status": "failed", "duration_ms": 2.0, "error": "<boom>"})
    big = progress.of("c1")
    assert big is not None and big["running"] and big["dropped"] == 5
    assert big["counts"] == {"running": MAX_ACTIONS_KEPT - 1, "failed": 1}
    row = {"client_id": "c1", "tools": ["t"], "proposal": big}
    html = panel_tools_html([row])
    assert 'title="action a0: &lt;boom&gt;"' in html and "+5 more" in html
    assert "<boom>" not in html
    assert "state_write failed 2.0 ms" in panel_tools_text([row])
    event("next", "x", tool="fetch")  # a new proposal of the session replaces the old one
    event("next", "x", {"status": "succeeded", "duration_ms": 1.0, "error": None})
    assert progress.of("c1") == {
        "proposal_id": "next",
        "running": False,
        "counts": {"succeeded": 1},
        "dropped": 0,
        "actions": [
            {
                "action_id": "x",
                "name": "fetch",
                "status": "succeeded",
                "attempt": 1,
                "duration_ms": 1.0,
                "error": None,
            }
        ],
    }
    progress.forget_except(set())
    assert progress.of("c1") is None

"""Notebook tools: Python functions registered on the notebook's session (``@carnb.tool``,
``Runtime.register_tool``), run in worker threads, shared with chosen sessions."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from typing import Any, Literal

import pytest

import carnb
from carnb.errors import CarnbError
from carnb.runtime import set_current
from tests.conftest import REPO, Client, agent_auth
from tests.server.proposing import action, proposal, submit


def run(runtime, *actions: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Submit as the notebook; results by action id."""
    result = runtime.call("proposal.submit", {"proposal": proposal(*actions)})
    return {r["action_id"]: r for r in result["results"]}


def test_a_notebook_tool_runs_in_a_worker_thread(runtime) -> None:
    seen: list[str] = []

    def add(a: int, b: int = 1) -> int:
        """Add two numbers."""
        seen.append(threading.current_thread().name)
        return a + b

    schema = runtime.register_tool(add)
    assert schema.description == "Add two numbers."
    results = run(runtime, action("x", tool="add", parameters={"a": 2, "b": 3}))
    assert results["x"]["status"] == "succeeded" and results["x"]["output"] == 5
    assert seen and seen[0].startswith("carnb-tool")
    listed = runtime.call("tools.list")
    assert listed["tools"][0]["parameters"]["required"] == ["a"]


def test_verify_uses_the_schema_from_the_signature(runtime) -> None:
    def greet(name: str, style: Literal["warm", "cold"] = "warm") -> str:
        return f"hi {name}"

    runtime.register_tool(greet)
    result = runtime.call(
        "verify",
        {"proposal": proposal(action("g", tool="greet", parameters={"name": 3, "mood": "x"}))},
    )
    messages = " ".join(i["message"] for i in result["issues"])
    assert result["valid"] is False
    assert "wrong type" in messages and "unexpected parameter 'mood'" in messages


def test_a_tool_runs_while_the_calling_thread_is_busy(runtime) -> None:
    """A socket client's proposal calls a shared notebook tool while this (the "cell")
    thread spins in pure Python: the tool still answers, on its own thread."""
    runtime.register_tool(lambda: threading.current_thread().name, name="where", share=True)
    client = Client(runtime.url)
    client.call("session.auth", {"token": runtime.token})
    outcome: dict[str, Any] = {}

    def propose() -> None:
        outcome["served"] = submit(client, proposal(action("w", tool="where")))
        outcome["at"] = time.monotonic()

    thread = threading.Thread(target=propose)
    busy_until = time.monotonic() + 3
    thread.start()
    spins = 0
    while time.monotonic() < busy_until and "at" not in outcome:
        spins += 1  # a busy cell: never sleeps, never yields on purpose
    thread.join(10)
    client.close()
    assert "at" in outcome and outcome["at"] < busy_until
    result = outcome["served"].by_id("w")
    assert result["status"] == "succeeded" and result["output"].startswith("carnb-tool")


def test_the_notebooks_own_proposal_runs_its_tool_elsewhere(runtime) -> None:
    """The calling thread blocks in runtime.call while the tool waits for it to be blocked:
    only a tool running on another thread can finish."""
    caller = threading.current_thread()

    def not_on_the_caller() -> bool:
        return threading.current_thread() is not caller

    runtime.register_tool(not_on_the_caller)
    assert run(runtime, action("t", tool="not_on_the_caller"))["t"]["output"] is True


def test_sharing(runtime, connect_client) -> None:
    runtime.register_tool(lambda: "private", name="mine")
    runtime.register_tool(lambda: "everyone", name="public", share=True)
    runtime.register_tool(lambda: "alice only", name="for_alice", share=["alice"])
    operator = connect_client()
    alice = connect_client(auth=agent_auth(runtime, "alice"))
    bob = connect_client(auth=agent_auth(runtime, "bob"))

    def names(c: Client) -> list[str]:
        return [t["name"] for t in c.call("tools.list")["tools"]]

    assert names(operator) == ["public"]
    assert names(alice) == ["for_alice", "public"]
    assert names(bob) == ["public"]
    served = submit(alice, proposal(action("a", tool="for_alice"), action("b", tool="public")))
    assert served.by_id("a")["output"] == "alice only" and served.requests == []
    assert submit(bob, proposal(action("x", tool="for_alice"))).statuses() == {"x": "rejected"}


def test_a_session_s_own_tool_wins_over_a_shared_one(runtime, connect_client) -> None:
    runtime.register_tool(lambda: "notebook", name="echo", share=True)
    c = connect_client()
    c.call("tools.register", [{"name": "echo"}])
    served = submit(c, proposal(action("a")))
    assert len(served.requests) == 1 and served.by_id("a")["output"]["tool"] == "echo"


def test_a_tool_that_raises_or_returns_non_json_fails_its_action(runtime) -> None:
    def broken() -> None:
        raise ValueError("bad input")

    runtime.register_tool(broken)
    runtime.register_tool(lambda: {1, 2}, name="a_set")
    results = run(
        runtime, action("b", tool="broken", failure_behavior="skip"), action("s", tool="a_set")
    )
    assert results["b"]["status"] == "failed"
    assert "ValueError: bad input" in results["b"]["error"]
    assert results["s"]["status"] == "failed" and "not JSON" in results["s"]["error"]


def test_a_tool_that_hangs_times_out(runtime) -> None:
    release = threading.Event()
    runtime.register_tool(lambda: release.wait(30), name="hang", timeout=0.2)
    try:
        started = time.monotonic()
        results = run(runtime, action("h", tool="hang"))
        assert time.monotonic() - started < 5
        assert results["h"]["status"] == "failed" and "timed out" in results["h"]["error"]
        runtime.register_tool(lambda: release.wait(30), name="hang")  # no timeout of its own
        results = run(runtime, action("h", tool="hang", timeout_ms=100))
        assert "timed out" in results["h"]["error"]
    finally:
        release.set()


def test_bad_registrations_are_refused(runtime) -> None:
    with pytest.raises(CarnbError, match="parameters.type"):
        runtime.register_tool(lambda: 1, name="x", parameters={"type": "banana"})
    with pytest.raises(CarnbError, match="timeout"):
        runtime.register_tool(lambda: 1, name="y", timeout=0)
    with pytest.raises(CarnbError, match="agent ids"):
        runtime.register_tool(lambda: 1, name="z", share=[1])  # type: ignore[list-item]
    assert runtime.call("tools.list")["count"] == 0


def test_the_carnb_tool_decorator(runtime) -> None:
    set_current(runtime)
    try:

        @carnb.tool
        def shout(text: str) -> str:
            """Upper-case text.

            Args:
                text: what to shout
            """
            return text.upper()

        @carnb.tool(name="quiet", share=True)
        def whisper(text: str) -> str:
            return text.lower()

        assert shout("a") == "A"  # the function itself is unchanged
        tools = {t["name"]: t for t in runtime.call("tools.list")["tools"]}
        assert tools["shout"]["parameters"]["properties"]["text"] == {
            "type": "string",
            "description": "what to shout",
        }
        results = run(
            runtime,
            action("s", tool="shout", parameters={"text": "hey"}),
            action("q", tool="quiet", parameters={"text": "HEY"}),
        )
        assert results["s"]["output"] == "HEY" and results["q"]["output"] == "hey"
        assert runtime.unregister_tool("shout") == 1
    finally:
        set_current(None)
    with pytest.raises(CarnbError, match="load_ext"):
        carnb.tool(lambda: 1)


def test_a_hundred_no_op_tools_end_to_end(runtime) -> None:
    def noop(i: int) -> None:
        return None

    runtime.register_tool(noop)
    result = runtime.call(
        "proposal.submit",
        {
            "proposal": proposal(
                *[action(f"n{i}", tool="noop", parameters={"i": i}) for i in range(100)]
            )
        },
    )
    assert result["cost"]["tool_calls"] == 100


def test_a_tool_stuck_forever_does_not_keep_the_process_alive(home) -> None:
    script = f"""
import threading
from carnb.config import Settings
from carnb.runtime import Runtime
rt = Runtime(Settings(home={str(home)!r}, browser=False)).start()
rt.register_tool(lambda: threading.Event().wait(), name="stuck")
proposal = {{"actions": [{{"id": "s", "type": "tool_call", "tool": "stuck", "timeout_ms": 100}}]}}
result = rt.call("proposal.submit", {{"proposal": proposal}})
print(result["results"][0]["status"])
rt.close()
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "failed"


def test_watch_proposals_sees_every_action_start_and_finish(runtime, connect_client) -> None:
    events: list[dict[str, Any]] = []
    remove = runtime.watch_proposals(events.append)
    c = connect_client()
    c.call("tools.register", [{"name": "echo"}])
    submit(
        c,
        proposal(
            action("a"),
            {"id": "w", "type": "state_write", "parameters": {"key": "k", "value": 1}},
            pid="px",
        ),
    )
    remove()
    remove()  # idempotent
    submit(c, proposal(action("b"), pid="py"))
    kinds = [(e["action_id"], e["kind"]) for e in events]
    assert sorted(kinds) == sorted(
        [
            ("a", "action_started"),
            ("a", "action_finished"),
            ("w", "action_started"),
            ("w", "action_finished"),
        ]
    )
    finished = next(e for e in events if e["action_id"] == "a" and e["kind"] == "action_finished")
    assert finished["proposal_id"] == "px" and finished["result"]["status"] == "succeeded"
    assert finished["session_id"].startswith("c")
    assert (finished["tool"], finished["action_type"]) == ("echo", "tool_call")
    write = next(e for e in events if e["action_id"] == "w")
    assert (write["tool"], write["action_type"]) == (None, "state_write")

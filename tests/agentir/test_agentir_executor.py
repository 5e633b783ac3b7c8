"""The executor: levels and concurrency, retries, timeouts, failure_behavior, preconditions,
state, policies, cycles, cancellation and progress events."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from carnb.agentir import DictStateStore, PolicySet, ProgressEvent, ProposalResult, execute_proposal
from carnb.errors import InvalidParams, ToolError
from tests.agentir.helpers import ScriptedRunner, call, forever, proposal, registry, write

RESULT_KEYS = {
    "action_id",
    "status",
    "output",
    "error",
    "state_changes",
    "duration_ms",
    "timestamp",
}


def statuses(result: ProposalResult) -> dict[str, str]:
    return {r["action_id"]: r["status"] for r in result["results"]}


def by_id(result: ProposalResult, action_id: str) -> dict[str, Any]:
    return dict(next(r for r in result["results"] if r["action_id"] == action_id))


async def run(
    *actions: dict[str, Any],
    runner: ScriptedRunner | None = None,
    state: DictStateStore | None = None,
    **kw: Any,
) -> ProposalResult:
    return await execute_proposal(
        proposal(*actions),
        runner=runner or ScriptedRunner(),
        state=state or DictStateStore(),
        **kw,
    )


async def test_result_shape_and_cost() -> None:
    result = await run(call("a", parameters={"x": 1}), write("w", "k", 2))
    assert result["proposal_id"] == "p1"
    assert [r["action_id"] for r in result["results"]] == ["a", "w"]
    assert all(set(r) == RESULT_KEYS for r in result["results"])
    a = by_id(result, "a")
    assert a["status"] == "succeeded" and a["error"] is None
    assert a["output"] == {"tool": "fetch", "echo": {"x": 1}}
    assert a["timestamp"].endswith("Z") and a["duration_ms"] >= 0
    assert result["cost"] == {
        "tool_calls": 1,
        "actions_executed": 2,
        "actions_rejected": 0,
        "actions_skipped": 0,
        "total_duration_ms": pytest.approx(a["duration_ms"] + by_id(result, "w")["duration_ms"]),
        "retries": 0,
    }


async def test_independent_actions_of_a_level_run_concurrently() -> None:
    a_in, b_in = asyncio.Event(), asyncio.Event()

    async def meet(mine: asyncio.Event, other: asyncio.Event) -> str:
        mine.set()
        async with asyncio.timeout(5):  # deadlocks (and times out) if run one after another
            await other.wait()
        return "met"

    runner = ScriptedRunner(
        {"a": lambda p, n: meet(a_in, b_in), "b": lambda p, n: meet(b_in, a_in)}
    )
    result = await run(call("x", tool="a"), call("y", tool="b"), runner=runner)
    assert statuses(result) == {"x": "succeeded", "y": "succeeded"}
    assert by_id(result, "x")["output"] == "met"


async def test_dependent_level_starts_only_after_the_previous_level_finishes() -> None:
    log: list[str] = []
    release = asyncio.Event()

    async def slow(parameters: dict[str, Any], attempt: int) -> None:
        log.append("slow-start")
        await release.wait()
        log.append("slow-end")

    async def quick(parameters: dict[str, Any], attempt: int) -> None:
        log.append(f"quick-{parameters['n']}")
        if parameters["n"] == 1:
            release.set()

    runner = ScriptedRunner({"slow": slow, "quick": quick})
    state = DictStateStore({"k": 0, "j": 0})  # dependencies present at run time
    result = await run(
        call("first", tool="slow", expected_effects={"k": 1}),
        call("late", tool="quick", parameters={"n": 2}, state_dependencies=["k"]),
        call("sibling", tool="quick", parameters={"n": 1}, expected_effects={"j": 1}),
        runner=runner,
        state=state,
    )
    assert set(statuses(result).values()) == {"succeeded"}
    assert log == ["slow-start", "quick-1", "slow-end", "quick-2"]


async def test_state_write_then_dependent_reads_it() -> None:
    state = DictStateStore()
    runner = ScriptedRunner()
    result = await run(
        write("w", "artifact", {"path": "/x"}),
        {
            "id": "r",
            "type": "state_read",
            "parameters": {"key": "artifact"},
            "state_dependencies": ["artifact"],
        },
        call("use", state_dependencies=["artifact"]),
        runner=runner,
        state=state,
    )
    assert statuses(result) == {"r": "succeeded", "w": "succeeded", "use": "succeeded"}
    assert by_id(result, "w")["state_changes"] == {"artifact": {"path": "/x"}}
    assert by_id(result, "r")["output"] == {"path": "/x"}
    assert state.data == {"artifact": {"path": "/x"}}


async def test_missing_state_dependency_is_rejected_before_dispatch() -> None:
    runner = ScriptedRunner()
    result = await run(
        call("a", state_dependencies=["nope"], failure_behavior="skip"), runner=runner
    )
    assert by_id(result, "a")["status"] == "rejected"
    assert "state dependency 'nope' not found" in by_id(result, "a")["error"]
    assert runner.calls == [] and result["cost"]["actions_rejected"] == 1


async def test_retry_uses_one_based_attempts_until_success() -> None:
    async def flaky(parameters: dict[str, Any], attempt: int) -> dict[str, int]:
        if attempt < 3:
            raise ToolError(f"transient {attempt}")
        return {"attempt": attempt}

    runner = ScriptedRunner({"flaky": flaky})
    result = await run(
        call("a", tool="flaky", failure_behavior="retry", max_retries=5), runner=runner
    )
    assert [c.attempt for c in runner.calls] == [1, 2, 3]
    assert by_id(result, "a")["output"] == {"attempt": 3}
    assert result["cost"]["retries"] == 2 and result["cost"]["tool_calls"] == 1


async def test_each_actions_attempts_are_handed_back_beside_the_spec_result() -> None:
    async def flaky(parameters: dict[str, Any], attempt: int) -> str:
        if attempt < 3:
            raise ToolError(f"transient {attempt}")
        return "ok"

    async def broken(parameters: dict[str, Any], attempt: int) -> None:
        raise ToolError("down")

    attempts: dict[str, int] = {}
    result = await run(
        call("a", tool="flaky", failure_behavior="retry", max_retries=5),
        write("w", "k", 1),
        call("b", tool="broken", failure_behavior="retry", max_retries=1, depends_on=["a"]),
        call("c", depends_on=["b"]),
        runner=ScriptedRunner({"flaky": flaky, "broken": broken}),
        attempts=attempts,
    )
    assert statuses(result) == {"a": "succeeded", "w": "succeeded", "b": "failed", "c": "skipped"}
    assert attempts == {"a": 3, "w": 1, "b": 2, "c": 0}
    assert all(set(r) == RESULT_KEYS for r in result["results"])  # the wire shape is the spec's


async def test_retry_exhausted_fails_and_aborts_the_rest() -> None:
    async def broken(parameters: dict[str, Any], attempt: int) -> None:
        raise ToolError("service unavailable")

    runner = ScriptedRunner({"broken": broken})
    state = DictStateStore({"k": 1})
    result = await run(
        call(
            "a", tool="broken", failure_behavior="retry", max_retries=2, expected_effects={"k": 2}
        ),
        call("after", state_dependencies=["k"]),
        runner=runner,
        state=state,
    )
    assert [c.attempt for c in runner.calls] == [1, 2, 3]
    assert by_id(result, "a")["status"] == "failed"
    assert by_id(result, "a")["error"] == "service unavailable"
    assert by_id(result, "after")["status"] == "skipped"
    assert result["cost"] == {
        **result["cost"],
        "retries": 2,
        "actions_executed": 1,
        "actions_skipped": 1,
        "tool_calls": 0,
    }


async def test_abort_skips_later_levels_but_not_siblings() -> None:
    async def broken(parameters: dict[str, Any], attempt: int) -> None:
        raise RuntimeError("kaboom")

    runner = ScriptedRunner({"broken": broken})
    result = await run(
        call("bad", tool="broken", expected_effects={"k": 1}),
        call("sibling"),
        call("downstream", state_dependencies=["k"], parameters={"x": 1}),
        runner=runner,
        state=DictStateStore({"k": 0}),
    )
    assert statuses(result) == {"bad": "failed", "sibling": "succeeded", "downstream": "skipped"}
    assert by_id(result, "bad")["error"] == "tool 'broken' raised RuntimeError: kaboom"
    assert "'bad'" in by_id(result, "downstream")["error"]
    assert [c.action_id for c in runner.calls] == ["bad", "sibling"]


async def test_skip_continues_with_the_rest() -> None:
    async def broken(parameters: dict[str, Any], attempt: int) -> None:
        raise ToolError("nope")

    runner = ScriptedRunner({"broken": broken})
    result = await run(
        call(
            "bad", tool="broken", failure_behavior="skip", max_retries=9, expected_effects={"k": 1}
        ),
        call("downstream", state_dependencies=["k"]),
        runner=runner,
        state=DictStateStore({"k": 0}),
    )
    assert statuses(result) == {"bad": "failed", "downstream": "succeeded"}
    assert len(runner.calls) == 2  # max_retries only counts under "retry"


async def test_timeout_fails_the_attempt_and_cancels_the_call() -> None:
    cancelled: list[int] = []

    async def hang(parameters: dict[str, Any], attempt: int) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(attempt)
            raise

    runner = ScriptedRunner({"hang": hang})
    result = await run(
        call("a", tool="hang", timeout_ms=30, failure_behavior="retry", max_retries=1),
        runner=runner,
    )
    a = by_id(result, "a")
    assert a["status"] == "failed" and a["error"] == "tool 'hang' timed out after 30 ms"
    assert cancelled == [1, 2]
    assert [c.timeout_ms for c in runner.calls] == [30, 30]


async def test_preconditions_are_checked_against_session_state() -> None:
    runner = ScriptedRunner()
    pre = [
        {"key": "tests_passed", "operator": "eq", "value": True, "description": "CI must be green"}
    ]
    blocked = await run(
        call("deploy", preconditions=pre),
        call("other", parameters={"x": 1}),
        runner=runner,
        state=DictStateStore({"tests_passed": False}),
    )
    deploy = by_id(blocked, "deploy")
    assert deploy["status"] == "rejected" and "CI must be green" in deploy["error"]
    assert runner.order() == ["other"]  # a sibling in the same level still ran
    ok = await run(
        call("deploy", preconditions=pre),
        runner=ScriptedRunner(),
        state=DictStateStore({"tests_passed": True}),
    )
    assert by_id(ok, "deploy")["status"] == "succeeded"


async def test_precondition_sees_an_earlier_levels_write() -> None:
    result = await run(
        write("w", "n", 5),
        call(
            "go",
            preconditions=[{"key": "n", "operator": "gte", "value": 5}],
            state_dependencies=["n"],
        ),
    )
    assert statuses(result) == {"w": "succeeded", "go": "succeeded"}


async def test_assertion_fails_the_proposal() -> None:
    state = DictStateStore({"n": 1})
    result = await run(
        {
            "id": "check",
            "type": "assertion",
            "preconditions": [{"key": "n", "operator": "gt", "value": 3}],
            "expected_effects": {"checked": True},
        },
        write("after", "x", 1, state_dependencies=["checked"]),
        state=state,
    )
    assert by_id(result, "check")["status"] == "failed"
    assert by_id(result, "check")["error"].startswith("assertion failed")
    assert by_id(result, "after")["status"] == "skipped" and "x" not in state.data
    passed = await run(
        {"id": "check", "type": "assertion", "parameters": {"key": "n", "value": 1}},
        state=state,
    )
    assert by_id(passed, "check")["output"] == {"asserted": "n", "value": 1}


async def test_unknown_tool_and_bad_parameters_are_rejected_without_dispatch() -> None:
    runner = ScriptedRunner()
    tools = registry("echo", schemas={"echo": {"type": "object", "required": ["msg"]}})
    result = await run(
        call("unknown", tool="nope", failure_behavior="skip"),
        call("bad", tool="echo", failure_behavior="skip"),
        call("good", tool="echo", parameters={"msg": "hi"}),
        runner=runner,
        tools=tools,
    )
    assert statuses(result) == {"unknown": "rejected", "bad": "rejected", "good": "succeeded"}
    assert "'nope' is not registered" in by_id(result, "unknown")["error"]
    assert "missing required parameter 'msg'" in by_id(result, "bad")["error"]
    assert runner.order() == ["good"]


async def test_detached_invocation_is_rejected() -> None:
    result = await run(call("a", invocation_mode="streaming"))
    assert by_id(result, "a")["status"] == "rejected"


async def test_policy_denial_with_abort_runs_nothing() -> None:
    policies = PolicySet()
    policies.register({"name": "no_shell", "rule": "deny_tool", "target": "shell"})
    runner = ScriptedRunner()
    state = DictStateStore({"keep": 1})
    result = await run(
        write("w", "k", 1),
        call("sh", tool="shell", parameters={"command": "ls"}),
        call("later", state_dependencies=["k"]),
        runner=runner,
        state=state,
        policies=policies,
    )
    assert statuses(result) == {"w": "skipped", "sh": "rejected", "later": "skipped"}
    assert "no_shell" in by_id(result, "sh")["error"]
    assert runner.calls == [] and state.data == {"keep": 1}
    assert result["cost"]["actions_rejected"] == 1 and result["cost"]["actions_skipped"] == 2


async def test_policy_denial_with_retry_is_treated_as_abort() -> None:
    policies = PolicySet()
    policies.register({"name": "need_flag", "rule": "require_state", "key": "flag", "value": "on"})
    runner = ScriptedRunner()
    result = await run(call("a", failure_behavior="retry"), runner=runner, policies=policies)
    assert by_id(result, "a")["status"] == "rejected" and runner.calls == []
    assert "need_flag" in by_id(result, "a")["error"]


async def test_policy_denial_with_skip_lets_the_rest_run() -> None:
    policies = PolicySet()
    policies.register(
        {
            "name": "no_rm_rf",
            "rule": "deny_tool_param",
            "target": "shell",
            "key": "command",
            "pattern": "rm -rf",
        }
    )
    runner = ScriptedRunner()
    result = await run(
        call("rm", tool="shell", parameters={"command": "rm -rf /"}, failure_behavior="skip"),
        call("ls", tool="shell", parameters={"command": "ls"}),
        runner=runner,
        policies=policies,
    )
    assert statuses(result) == {"rm": "rejected", "ls": "succeeded"}
    assert runner.order() == ["ls"]


async def test_cycle_is_refused_before_anything_runs() -> None:
    runner = ScriptedRunner()
    state = DictStateStore()
    with pytest.raises(InvalidParams, match="dependency cycle"):
        await run(
            write("free", "z", 1),
            write("c1", "m", 1, depends_on=["c2"]),
            write("c2", "n", 1, depends_on=["c1"]),
            runner=runner,
            state=state,
        )
    assert runner.calls == [] and state.data == {}


async def test_cancelling_the_executor_cancels_in_flight_calls() -> None:
    started = asyncio.Event()
    cancelled: list[str] = []

    async def hang(parameters: dict[str, Any], attempt: int) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(parameters["n"])
            raise

    runner = ScriptedRunner({"hang": hang})
    task = asyncio.create_task(
        run(
            call("a", tool="hang", parameters={"n": "a"}),
            call("b", tool="hang", parameters={"n": "b"}),
            runner=runner,
        )
    )
    await started.wait()
    await asyncio.sleep(0)  # let the sibling start too
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(cancelled) == ["a", "b"]


async def test_progress_events_report_attempts_and_final_results() -> None:
    events: list[ProgressEvent] = []

    async def flaky(parameters: dict[str, Any], attempt: int) -> str:
        if attempt == 1:
            raise ToolError("once")
        return "ok"

    def on_progress(event: ProgressEvent) -> None:
        events.append(event)
        raise RuntimeError("a broken live view")  # must not break the run

    result = await run(
        call("a", tool="flaky", failure_behavior="retry"),
        runner=ScriptedRunner({"flaky": flaky}),
        on_progress=on_progress,
    )
    assert by_id(result, "a")["status"] == "succeeded"
    assert [(e.kind, e.attempt) for e in events] == [
        ("action_started", 1),
        ("action_started", 2),
        ("action_finished", 2),  # finished after two attempts
    ]
    assert events[-1].result == result["results"][0]


async def test_forever_tool_with_timeout_does_not_hang() -> None:
    result = await run(call("a", tool="f", timeout_ms=10), runner=ScriptedRunner({"f": forever}))
    assert by_id(result, "a")["status"] == "failed"


async def test_a_wide_level_runs_at_most_max_concurrency_actions_at_once() -> None:
    in_flight = peak = 0

    async def slow(parameters: dict[str, Any], attempt: int) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1

    result = await run(
        *[call(f"a{i}", tool="slow", parameters={"i": i}) for i in range(20)],
        runner=ScriptedRunner({"slow": slow}),
        max_concurrency=3,
    )
    assert result["cost"]["tool_calls"] == 20 and peak == 3


async def test_precomputed_denials_replace_the_policy_pass() -> None:
    runner = ScriptedRunner()
    result = await run(
        call("a"),
        call("b", parameters={"x": 1}, failure_behavior="skip"),
        runner=runner,
        denials=[{"policy_name": "p", "action_id": "b", "reason": "no"}],
    )
    assert statuses(result) == {"a": "succeeded", "b": "rejected"}
    assert runner.order() == ["a"]


async def test_a_state_write_into_a_full_store_fails_alone() -> None:
    """A store that refuses a write (the session's budget is spent) fails that action; nothing
    is stored and the actions after it still run."""
    from carnb.errors import StateFull

    class Full(DictStateStore):
        def set(self, key: str, value: Any) -> None:
            if key == "big":
                raise StateFull("value: the budget is 8388608 bytes per session")
            super().set(key, value)

    state = Full()
    result = await run(
        write("w1", "big", "x" * 100, failure_behavior="skip"), write("w2", "small", 1), state=state
    )
    first, second = result["results"]
    assert first["status"] == "failed" and "budget" in first["error"]
    assert second["status"] == "succeeded"
    assert state.data == {"small": 1}

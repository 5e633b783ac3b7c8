"""verify: every rule with its severity and tier, the simulated state and the evidence record."""

from __future__ import annotations

from typing import Any

import pytest

from carnb.agentir import VerificationResult, verify, verify_params
from carnb.errors import InvalidParams
from tests.agentir.helpers import call, proposal, registry, write

CHECKS = [
    "resource_bounds",
    "loop_detection",
    "preconditions",
    "state_dependencies",
    "tool_existence",
    "param_schema",
    "compensation_resolution",
    "write_conflicts",
    "dependency_cycles",
]


def issues(result: VerificationResult) -> list[tuple[str, str, str]]:
    return [(i["action_id"], i["severity"], i["tier"]) for i in result["issues"]]


def check(result: VerificationResult, name: str) -> dict[str, Any]:
    return dict(next(c for c in result["evidence"]["checks"] if c["name"] == name))


def test_clean_proposal_is_valid_with_full_result_shape() -> None:
    result = verify(
        proposal(
            write("w", "ready", True),
            call(
                "go", preconditions=[{"key": "ready", "value": True}], state_dependencies=["ready"]
            ),
        ),
        tools=registry("fetch"),
        initial_state={"x": 1},
    )
    assert set(result) == {
        "valid",
        "issues",
        "simulated_state",
        "execution_levels",
        "conflicts",
        "evidence",
    }
    assert result["valid"] is True and result["issues"] == []
    assert result["simulated_state"] == {"x": 1, "ready": True}
    assert result["execution_levels"] == [["w"], ["go"]]
    evidence = result["evidence"]
    assert [c["name"] for c in evidence["checks"]] == CHECKS
    assert all(c["ran"] and c["findings"] == 0 for c in evidence["checks"])
    assert all(c["verifies"] and c["cannot_verify"] for c in evidence["checks"])
    assert 0 < evidence["confidence"] <= 1
    assert evidence["untested_regions"] == ["run-time output of tool 'fetch' (action go)"]


def test_unknown_tool_is_an_error() -> None:
    result = verify(proposal(call("a", tool="nope")), tools=registry("fetch"))
    assert result["valid"] is False
    assert issues(result) == [("a", "error", "decision_procedure")]
    assert "'nope' is not registered" in result["issues"][0]["message"]


def test_schema_violations_name_the_parameter() -> None:
    schema = {
        "type": "object",
        "properties": {
            "msg": {"type": "string"},
            "env": {"enum": ["staging", "prod"]},
            "opts": {"type": "object", "properties": {"n": {"type": "integer"}}},
        },
        "required": ["msg", "n"],
    }
    tools = registry("echo", schemas={"echo": schema})
    result = verify(
        proposal(call("a", tool="echo", parameters={"msg": 3, "env": "dev", "opts": {"n": 1.5}})),
        tools=tools,
    )
    messages = sorted(i["message"] for i in result["issues"])
    assert messages == [
        "tool 'echo': missing required parameter 'n'",
        "tool 'echo': parameter 'env' is not one of the allowed values",
        "tool 'echo': parameter 'msg' has wrong type: expected string, got number",
        "tool 'echo': parameter 'opts.n' has wrong type: expected integer, got number",
    ]
    assert check(result, "param_schema")["findings"] == 4
    ok = verify(proposal(call("b", tool="echo", parameters={"msg": "hi", "n": 1})), tools=tools)
    assert ok["valid"] is True


def test_booleans_are_not_numbers_in_schemas() -> None:
    tools = registry("t", schemas={"t": {"properties": {"n": {"type": "integer"}}}})
    result = verify(proposal(call("a", tool="t", parameters={"n": True})), tools=tools)
    assert "expected integer, got boolean" in result["issues"][0]["message"]


def test_without_a_registry_tool_checks_are_skipped_not_passed() -> None:
    result = verify(proposal(call("a", tool="anything")))
    assert result["valid"] is True
    assert check(result, "tool_existence")["ran"] is False
    assert check(result, "param_schema")["ran"] is False
    full = verify(proposal(call("a", tool="fetch")), tools=registry("fetch"))
    assert result["evidence"]["confidence"] < full["evidence"]["confidence"]
    assert any("unchecked" in a for a in result["evidence"]["assumptions"])


def test_repeated_identical_call_is_a_heuristic_finding() -> None:
    twice = verify(proposal(call("a", parameters={"q": 1}), call("b", parameters={"q": 1})))
    assert twice["issues"] == []
    thrice = verify(
        proposal(
            call("a", parameters={"q": 1, "r": 2}),
            call("b", parameters={"r": 2, "q": 1}),  # same call, keys in another order
            call("c", parameters={"q": 1, "r": 2}),
            call("d", parameters={"q": 2, "r": 2}),
        )
    )
    assert issues(thrice) == [("proposal", "error", "heuristic")]
    assert "3 times" in thrice["issues"][0]["message"]
    assert check(thrice, "loop_detection")["tier"] == "heuristic"


def test_preconditions_walk_declared_effects() -> None:
    result = verify(
        proposal(
            write("w", "count", 5),
            call(
                "ok",
                preconditions=[{"key": "count", "operator": "gt", "value": 3}],
                state_dependencies=["count"],
            ),
            call(
                "bad",
                preconditions=[{"key": "count", "operator": "lt", "value": 3}],
                state_dependencies=["count"],
                parameters={"x": 1},
            ),
            call(
                "early", preconditions=[{"key": "count", "operator": "exists"}], parameters={"x": 2}
            ),
        )
    )
    assert sorted(issues(result)) == [
        ("bad", "error", "decision_procedure"),
        ("early", "error", "decision_procedure"),
    ]
    assert check(result, "preconditions")["findings"] == 2


def test_initial_state_satisfies_preconditions() -> None:
    pre = [{"key": "tests_passed", "operator": "eq", "value": True}]
    blocked = verify(proposal(call("deploy", preconditions=pre)), initial_state={"tests_passed": 1})
    assert blocked["valid"] is False  # 1 is not true in JSON
    assert (
        verify(proposal(call("deploy", preconditions=pre)), initial_state={"tests_passed": True})[
            "valid"
        ]
        is True
    )


def test_missing_state_dependency() -> None:
    result = verify(proposal(call("a", state_dependencies=["artifact"])))
    assert issues(result) == [("a", "error", "decision_procedure")]
    assert "'artifact'" in result["issues"][0]["message"]
    assert (
        verify(
            proposal(call("a", state_dependencies=["artifact"])), initial_state={"artifact": "x"}
        )["valid"]
        is True
    )


def test_blocked_action_effects_still_apply_so_findings_do_not_cascade() -> None:
    result = verify(
        proposal(
            call(
                "build",
                expected_effects={"artifact": 1},
                preconditions=[{"key": "never", "operator": "exists"}],
            ),
            call("deploy", state_dependencies=["artifact"]),
        )
    )
    assert [i["action_id"] for i in result["issues"]] == ["build"]
    assert result["simulated_state"] == {"artifact": 1}


def test_write_conflict_is_a_warning_and_keeps_valid() -> None:
    result = verify(
        proposal(
            call("a", expected_effects={"k": 1}),
            call("b", expected_effects={"k": 2}, parameters={"x": 1}),
        )
    )
    assert result["valid"] is True
    assert issues(result) == [("a", "warning", "decision_procedure")]
    assert result["conflicts"] == [("a", "b", "k")]
    assert any("write conflict" in r for r in result["evidence"]["residual_risks"])


def test_cycle_is_an_error_and_cycle_members_have_no_level() -> None:
    result = verify(
        proposal(
            write("c1", "m", 1, depends_on=["c2"]),
            write("c2", "n", 1, depends_on=["c1"]),
            call("free"),
        )
    )
    assert result["valid"] is False
    assert result["execution_levels"] == [["free"]]
    (issue,) = result["issues"]
    assert issue["severity"] == "error" and "dependency cycle" in issue["message"]
    assert "c1" in issue["message"] and "c2" in issue["message"]


def test_compensation_resolution() -> None:
    result = verify(
        proposal(
            call("a", reversibility="compensable"),
            call("b", compensation={"type": "tool", "tool": "undo"}, parameters={"x": 1}),
            call(
                "c", compensation={"type": "action_ref", "action_id": "ghost"}, parameters={"x": 2}
            ),
            call("d", compensation={"type": "action_ref", "action_id": "a"}, parameters={"x": 3}),
        ),
        tools=registry("fetch"),
    )
    assert issues(result) == [
        ("a", "warning", "decision_procedure"),
        ("b", "error", "decision_procedure"),
        ("c", "error", "decision_procedure"),
    ]


def test_resource_bound_warns() -> None:
    result = verify(proposal(call("a"), call("b", parameters={"x": 1})), max_actions=1)
    assert issues(result) == [("proposal", "warning", "decision_procedure")]


def test_verify_params_from_the_wire() -> None:
    raw = {
        "proposal": {"actions": [{"id": "a", "type": "tool_call", "tool": "fetch"}]},
        "initial_state": {"s": 1},
    }
    result = verify_params(raw, registry("fetch"))
    assert result["valid"] and result["simulated_state"] == {"s": 1}
    for bad, fragment in [
        ({}, "proposal is required"),
        ({"proposal": {"actions": [{"type": "x"}]}}, "actions[0].type"),
        ({"proposal": {"actions": []}, "initial_state": [1]}, "initial_state must be an object"),
        ({"proposal": {"actions": []}, "max_actions": 0}, "max_actions"),
    ]:
        with pytest.raises(InvalidParams, match=fragment.replace("[", r"\[").replace("]", r"\]")):
            verify_params(bad, None)


def test_empty_proposal_is_valid() -> None:
    result = verify(proposal())
    assert result["valid"] and result["execution_levels"] == [] and result["simulated_state"] == {}

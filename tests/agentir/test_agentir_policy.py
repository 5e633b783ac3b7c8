"""Built-in policies: registration (including bad rules) and what each one denies."""

from __future__ import annotations

import time
from typing import Any

import pytest

from carnb.agentir import PolicySet, ToolRegistry, parse_policy
from carnb.agentir.values import MISSING
from carnb.errors import InvalidParams
from tests.agentir.helpers import call, proposal, write


def lookup(state: dict[str, Any]) -> Any:
    return lambda key: state.get(key, MISSING)


def test_deny_tool() -> None:
    policies = PolicySet()
    policies.register({"name": "no_shell", "rule": "deny_tool", "target": "shell"})
    p = proposal(call("a", tool="shell"), call("b", tool="fetch"), write("c", "shell", 1))
    assert policies.violations(p.actions, lookup({})) == [
        {"policy_name": "no_shell", "action_id": "a", "reason": "tool 'shell' is denied"}
    ]


def test_deny_tool_param_is_a_substring_match_on_the_string_form() -> None:
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
    p = proposal(
        call("bad", tool="shell", parameters={"command": "sudo rm -rf /"}),
        call("fine", tool="shell", parameters={"command": "ls"}),
        call("absent", tool="shell", parameters={"other": "rm -rf"}),
        call("other_tool", tool="fetch", parameters={"command": "rm -rf"}),
        call("nested", tool="shell", parameters={"command": ["rm -rf", "/"]}),
    )
    denied = [v["action_id"] for v in policies.violations(p.actions, lookup({}))]
    assert denied == ["bad", "nested"]


def test_require_state_compares_json_values() -> None:
    policies = PolicySet()
    policies.register(
        {"name": "tests", "rule": "require_state", "key": "tests_passed", "value": True}
    )
    p = proposal(call("a"))
    assert policies.violations(p.actions, lookup({"tests_passed": True})) == []
    assert len(policies.violations(p.actions, lookup({"tests_passed": 1}))) == 1
    assert len(policies.violations(p.actions, lookup({}))) == 1


def test_require_state_accepts_the_ffi_value_json_spelling() -> None:
    policy = parse_policy({"name": "n", "rule": "require_state", "key": "k", "value_json": "true"})
    assert policy.value is True


def test_list_and_unregister() -> None:
    policies = PolicySet()
    policies.register({"name": "a", "rule": "deny_tool", "target": "x"})
    policies.register({"name": "a", "rule": "deny_tool", "target": "y"})
    policies.register({"name": "b", "rule": "require_state", "key": "k", "value": 1})
    assert [p["name"] for p in policies.describe()] == ["a", "a", "b"]
    assert all(p["description"] for p in policies.describe())
    assert policies.unregister("a") == 2 and policies.unregister("a") == 0
    assert [p["name"] for p in policies.describe()] == ["b"]


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"name": "x", "rule": "deny_everything"}, "rule must be one of"),
        ({"name": "x", "rule": "deny_tool_callback", "target": "t"}, "rule must be one of"),
        ({"name": "x", "rule": "deny_tool"}, "target is required for rule deny_tool"),
        (
            {"name": "x", "rule": "deny_tool_param", "target": "t", "key": "k"},
            "pattern is required",
        ),
        ({"name": "x", "rule": "require_state", "key": "k"}, "value is required"),
        ({"name": "x", "rule": "require_state", "key": "k", "value_json": "{"}, "not valid JSON"),
        ({"rule": "deny_tool", "target": "t"}, "name must be a non-empty string"),
        ("deny_tool", "policy must be an object"),
    ],
)
def test_bad_rule_is_refused_and_changes_nothing(raw: Any, fragment: str) -> None:
    policies = PolicySet()
    policies.register({"name": "keep", "rule": "deny_tool", "target": "t"})
    with pytest.raises(InvalidParams, match=fragment):
        policies.register(raw)
    assert [p["name"] for p in policies.describe()] == ["keep"]


def test_tool_registry_register_list_unregister() -> None:
    tools = ToolRegistry()
    assert tools.register([{"name": "zeta"}, {"name": "alpha", "description": "a"}]) == 2
    listing = tools.describe()
    assert listing["count"] == 2 and [t["name"] for t in listing["tools"]] == ["alpha", "zeta"]
    with pytest.raises(InvalidParams, match=r"tools\[1\].name"):
        tools.register([{"name": "beta"}, {"description": "no name"}])
    assert "beta" not in tools  # all-or-nothing
    with pytest.raises(InvalidParams, match="must be an array"):
        tools.register({"name": "x"})
    assert tools.unregister("zeta") == 1 and tools.unregister("zeta") == 0


def test_violations_keep_order_are_capped_and_linear() -> None:
    policies = PolicySet()
    policies.register({"name": "gate", "rule": "require_state", "key": "ok", "value": True})
    policies.register({"name": "no_fetch", "rule": "deny_tool", "target": "fetch"})
    for i in range(20):
        policies.register({"name": f"g{i}", "rule": "require_state", "key": "ok", "value": 1})
    found = policies.violations(proposal(call("a"), call("b", tool="other")).actions, lookup({}))
    names_a = [v["policy_name"] for v in found if v["action_id"] == "a"]
    assert names_a == ["gate", "no_fetch", "g0", "g1", "g2", "g3", "g4", "g5"]
    assert len([v for v in found if v["action_id"] == "b"]) == 8
    many = proposal(*[call(f"x{i}", parameters={"i": i}) for i in range(10_000)])
    started = time.perf_counter()
    assert len(policies.violations(many.actions, lookup({}))) == 80_000
    assert time.perf_counter() - started < 2.0

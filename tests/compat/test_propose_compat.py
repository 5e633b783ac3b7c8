"""The official client's tools, policies, verify and proposals against
`python -m carnb serve` (the client is a black box; these are its public methods)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.compat.conftest import car_runtime

pytestmark = pytest.mark.compat


@pytest.fixture
def rt(served, car_client) -> Any:
    return car_client(CAR_DAEMON_URL=served.url, CAR_AUTH_TOKEN=served.info["token"])


def proposal(*actions: dict[str, Any]) -> str:
    return json.dumps({"id": "p1", "actions": list(actions)})


def call(action_id: str, tool: str, **fields: Any) -> dict[str, Any]:
    return {"id": action_id, "type": "tool_call", "tool": tool, **fields}


def test_register_and_list_tools(rt) -> None:
    rt.register_tool("search")
    rt.register_tool_schema(
        json.dumps(
            {
                "name": "add",
                "description": "add two numbers",
                "parameters": {"type": "object", "required": ["a"]},
            }
        )
    )
    tools = json.loads(rt.list_tools())
    assert [t["name"] for t in tools] == ["add", "search"]
    assert tools[0]["description"] == "add two numbers"
    assert rt.unregister_tool("search") == 1
    assert rt.unregister_tool("search") == 0


def test_register_and_list_policies(rt) -> None:
    rt.register_policy("no-rm", "deny_tool", target="rm")
    rt.register_policy("no-secrets", "deny_tool_param", target="http", key="url", pattern="secret")
    rt.register_policy("gate", "require_state", key="ready", value_json="true")
    policies = json.loads(rt.list_policies())
    assert [p["name"] for p in policies] == ["no-rm", "no-secrets", "gate"]
    with pytest.raises(RuntimeError, match="rule must be one of"):
        rt.register_policy("bad", "deny_everything")
    assert len(json.loads(rt.list_policies())) == 3
    assert rt.unregister_policy("no-rm") == 1


def test_verify_proposal(rt) -> None:
    rt.register_tool_schema(
        json.dumps({"name": "add", "parameters": {"type": "object", "required": ["a"]}})
    )
    result = json.loads(
        rt.verify_proposal(proposal(call("x", "add", parameters={}), call("y", "nope")))
    )
    assert result["valid"] is False
    messages = [i["message"] for i in result["issues"]]
    assert any("'a'" in m for m in messages) and any("'nope'" in m for m in messages)
    ok = json.loads(rt.verify_proposal(proposal(call("x", "add", parameters={"a": 1}))))
    assert ok["valid"] is True and ok["execution_levels"] == [["x"]]


def test_execute_proposal_calls_the_python_function(rt) -> None:
    rt.register_tool("add")
    seen: list[dict[str, Any]] = []

    def tool_fn(call_json: str) -> str:
        request = json.loads(call_json)
        seen.append(request)
        return json.dumps(request["params"]["a"] + request["params"]["b"])

    result = json.loads(
        rt.execute_proposal(
            proposal(
                call("one", "add", parameters={"a": 1, "b": 2}, timeout_ms=5000),
                {"id": "w", "type": "state_write", "parameters": {"key": "k", "value": 1}},
            ),
            tool_fn,
        )
    )
    statuses = {r["action_id"]: r["status"] for r in result["results"]}
    assert statuses == {"one": "succeeded", "w": "succeeded"}
    assert result["results"][0]["output"] == 3
    assert seen[0]["action_id"] == "one" and seen[0]["timeout_ms"] == 5000
    assert seen[0]["attempt"] == 1 and seen[0]["request_id"]
    assert json.loads(rt.state_get("k")) == 1


def test_a_python_tool_that_raises_fails_its_action(rt) -> None:
    rt.register_tool("boom")

    def tool_fn(call_json: str) -> str:
        raise ValueError("exploded")

    result = json.loads(rt.execute_proposal(proposal(call("b", "boom")), tool_fn))
    (only,) = result["results"]
    assert only["status"] == "failed" and only["error"]


def test_a_malformed_proposal_is_refused(rt) -> None:
    with pytest.raises(RuntimeError, match="ids must be unique"):
        rt.execute_proposal(proposal(call("a", "t"), call("a", "t")), lambda c: "null")
    with pytest.raises(RuntimeError, match="dependency cycle"):
        rt.execute_proposal(proposal(call("a", "t", depends_on=["a"])), lambda c: "null")


def test_submit_proposal_uses_the_registered_handler(rt) -> None:
    rt.register_tool("echo")
    car_runtime.register_tool_handler(lambda call_json: json.dumps(json.loads(call_json)["params"]))
    try:
        result = json.loads(rt.submit_proposal(proposal(call("e", "echo", parameters={"x": 1}))))
    finally:
        car_runtime.unregister_tool_handler()
    assert result["results"][0]["output"] == {"x": 1}

"""Parsing proposals, actions and tool schemas: defaults, and errors that name the field."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from carnb.agentir import (
    MAX_ACTIONS,
    ActionType,
    FailureBehavior,
    parse_proposal,
    parse_tool_schema,
)
from carnb.agentir.model import InvocationMode, Reversibility
from carnb.errors import INVALID_PARAMS, InvalidParams


def test_defaults_follow_the_spec() -> None:
    p = parse_proposal({"actions": [{"type": "tool_call", "tool": "deploy"}]})
    assert re.fullmatch(r"[0-9a-f]{12}", p.id)
    assert p.source == "unknown" and p.context == {} and p.timestamp.endswith("Z")
    a = p.actions[0]
    assert re.fullmatch(r"[0-9a-f]{12}", a.id)
    assert a.type is ActionType.TOOL_CALL and a.parameters == {} and a.preconditions == ()
    assert a.max_retries == 3 and a.failure_behavior is FailureBehavior.ABORT
    assert a.reversibility is Reversibility.IRREVERSIBLE
    assert a.invocation_mode is InvocationMode.ONE_SHOT
    assert a.timeout_ms is None and a.idempotent is False and a.compensation is None


def test_full_action_round_trips_fields() -> None:
    raw = {
        "id": "p",
        "source": "model-x",
        "timestamp": "2026-05-02T12:00:00Z",
        "context": {"why": 1},
        "actions": [
            {
                "id": "a1",
                "type": "tool_call",
                "tool": "deploy",
                "parameters": {"env": "staging"},
                "preconditions": [{"key": "tests_passed", "value": True}],
                "expected_effects": {"deployed": True},
                "state_dependencies": ["artifact"],
                "reversibility": "compensable",
                "compensation": {"type": "tool", "tool": "rollback"},
                "max_retries": 5,
                "failure_behavior": "retry",
                "timeout_ms": 30000,
                "some_future_field": "ignored",
            }
        ],
    }
    before = copy.deepcopy(raw)
    p = parse_proposal(raw)
    assert raw == before  # parsing never mutates its input
    a = p.actions[0]
    assert (p.id, p.source, p.context) == ("p", "model-x", {"why": 1})
    assert a.preconditions[0].operator == "eq" and a.preconditions[0].value is True
    assert a.writes() == {"deployed"} and a.state_dependencies == ("artifact",)
    assert a.compensation is not None and a.compensation.tool == "rollback"
    assert a.attempts() == 6 and a.timeout_ms == 30000


def test_state_write_key_counts_as_a_write() -> None:
    p = parse_proposal({"actions": [{"type": "state_write", "parameters": {"key": "k"}}]})
    assert p.actions[0].writes() == {"k"}


BAD: list[tuple[Any, str]] = [
    ({"actions": "x"}, "proposal.actions must be an array"),
    ({}, "proposal.actions is required"),
    ([], "proposal must be an object"),
    ({"actions": [3]}, "actions[0] must be an object"),
    ({"actions": [{"id": "a", "tool": "t"}]}, 'actions[0] (id "a").type must be one of'),
    ({"actions": [{"id": "a", "type": "jump"}]}, "got 'jump'"),
    ({"actions": [{"type": "tool_call"}]}, "actions[0].tool must be a non-empty string"),
    (
        {
            "actions": [
                {"type": "state_write"},
                {"id": "fetch", "type": "tool_call", "tool": "t", "parameters": []},
            ]
        },
        "actions[0].parameters.key must be a non-empty string",
    ),
    (
        {
            "actions": [
                {"id": "x", "type": "tool_call", "tool": "t"},
                {"id": "fetch", "type": "tool_call", "tool": "t", "parameters": []},
            ]
        },
        'actions[1] (id "fetch").parameters must be an object',
    ),
    (
        {"actions": [{"id": "a", "type": "tool_call", "tool": "t", "max_retries": -1}]},
        'actions[0] (id "a").max_retries must be an integer',
    ),
    (
        {"actions": [{"id": "a", "type": "tool_call", "tool": "t", "max_retries": True}]},
        ".max_retries must be an integer",
    ),
    (
        {"actions": [{"id": "a", "type": "tool_call", "tool": "t", "timeout_ms": 0}]},
        ".timeout_ms must be an integer between 1",
    ),
    (
        {"actions": [{"id": "a", "type": "tool_call", "tool": "t", "failure_behavior": "retyr"}]},
        ".failure_behavior must be one of abort, retry, skip",
    ),
    (
        {"actions": [{"id": "a", "type": "tool_call", "tool": "t", "preconditions": [{}]}]},
        'actions[0] (id "a").preconditions[0].key must be a non-empty string',
    ),
    (
        {"actions": [{"id": "a", "type": "tool_call", "tool": "t", "state_dependencies": [1]}]},
        ".state_dependencies must be an array of strings",
    ),
    (
        {
            "actions": [
                {"id": "a", "type": "tool_call", "tool": "t", "compensation": {"type": "undo"}}
            ]
        },
        ".compensation.type must be one of tool, action_ref",
    ),
    (
        {
            "actions": [
                {"id": "a", "type": "tool_call", "tool": "t"},
                {"id": "a", "type": "tool_call", "tool": "t"},
            ]
        },
        'actions[1] (id "a").id duplicates actions[0]',
    ),
    ({"id": 7, "actions": []}, "proposal.id must be a non-empty string"),
]


@pytest.mark.parametrize(("raw", "fragment"), BAD)
def test_malformed_input_names_the_field(raw: Any, fragment: str) -> None:
    with pytest.raises(InvalidParams) as info:
        parse_proposal(raw)
    assert info.value.code == INVALID_PARAMS
    assert info.value.message.startswith("invalid params: ")
    assert fragment in info.value.message


def test_too_many_actions_is_refused_before_parsing_them() -> None:
    raw = {"actions": [None] * (MAX_ACTIONS + 1)}  # would fail per action if parsed
    with pytest.raises(InvalidParams, match=f"at most {MAX_ACTIONS}"):
        parse_proposal(raw)


def test_tool_schema_defaults_and_wire_shape() -> None:
    schema = parse_tool_schema({"name": "deploy"})
    assert schema.to_wire() == {
        "name": "deploy",
        "description": "",
        "parameters": {},
        "idempotent": False,
    }
    full = parse_tool_schema(
        {
            "name": "deploy",
            "parameters": {"type": "object", "properties": {"env": {"type": "string"}}},
            "returns": {"type": "object"},
            "cache_ttl_secs": 60,
            "rate_limit": {"max_calls": 5, "interval_secs": 60},
        }
    ).to_wire()
    assert full["rate_limit"] == {"max_calls": 5, "interval_secs": 60.0}
    assert full["cache_ttl_secs"] == 60 and full["returns"] == {"type": "object"}


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"description": "x"}, "tool.name must be a non-empty string"),
        ({"name": "t", "parameters": []}, "tool.parameters must be an object"),
        ({"name": "t", "parameters": {"type": "strnig"}}, "tool.parameters.type must be one of"),
        (
            {"name": "t", "parameters": {"properties": {"a": {"required": "x"}}}},
            "tool.parameters.properties.a.required must be an array of strings",
        ),
        ({"name": "t", "rate_limit": {"max_calls": 1, "interval_secs": 0}}, "interval_secs"),
    ],
)
def test_bad_tool_schema_is_refused(raw: Any, fragment: str) -> None:
    with pytest.raises(InvalidParams, match=re.escape(fragment)):
        parse_tool_schema(raw)

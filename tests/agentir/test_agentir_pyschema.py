"""Tool schemas from Python signatures and docstrings (what ``@carnb.tool`` registers)."""

from __future__ import annotations

from typing import Any, Literal

import pytest

from carnb.agentir import verify
from carnb.agentir.pyschema import schema_of_function
from carnb.errors import InvalidParams
from tests.agentir.helpers import call, proposal


def search(
    query: str,
    limit: int = 10,
    ratio: float | None = None,
    tags: list[str] | None = None,
    mode: Literal["fast", "deep"] = "fast",
    strict: bool = False,
    extra: dict[str, Any] | None = None,
) -> list[str]:
    """Search the index.

    Longer text that is not the description.

    Args:
        query: what to look for
        limit (int): how many hits
    """
    return []


def test_types_required_and_descriptions() -> None:
    schema = schema_of_function(search)
    assert schema.name == "search" and schema.description == "Search the index."
    params = schema.parameters
    assert params["required"] == ["query"] and params["additionalProperties"] is False
    props = params["properties"]
    assert props["query"] == {"type": "string", "description": "what to look for"}
    assert props["limit"] == {"type": "integer", "description": "how many hits"}
    assert props["ratio"] == {"type": ["number", "null"]}
    assert props["mode"] == {"enum": ["fast", "deep"]}
    assert props["strict"] == {"type": "boolean"}
    assert props["tags"] == {}  # list[str] | None: a union beyond plain types is left open


def test_sphinx_params_kwargs_and_explicit_overrides() -> None:
    def fetch(url, **options):  # type: ignore[no-untyped-def]
        """:param url: the address"""

    schema = schema_of_function(fetch, name="get", description="Fetch a page")
    assert schema.name == "get" and schema.description == "Fetch a page"
    assert schema.parameters["properties"]["url"] == {"description": "the address"}
    assert "additionalProperties" not in schema.parameters
    explicit = schema_of_function(fetch, parameters={"type": "object", "required": ["url"]})
    assert explicit.parameters == {"type": "object", "required": ["url"]}


def test_verify_catches_what_the_function_would_refuse() -> None:
    from carnb.agentir import ToolRegistry

    tools = ToolRegistry()
    tools.add(schema_of_function(search))
    result = verify(
        proposal(call("a", tool="search", parameters={"limit": "ten", "nope": 1})), tools=tools
    )
    messages = " ".join(i["message"] for i in result["issues"])
    assert "missing required parameter 'query'" in messages
    assert "wrong type" in messages and "unexpected parameter 'nope'" in messages


def test_bad_input_is_refused() -> None:
    with pytest.raises(InvalidParams, match="callable"):
        schema_of_function(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidParams, match="parameters.type"):
        schema_of_function(search, parameters={"type": "banana"})
    with pytest.raises(InvalidParams, match="name"):
        schema_of_function(lambda: 1, name="")
    with pytest.raises(InvalidParams, match="lambda has no name"):
        schema_of_function(lambda: 1)

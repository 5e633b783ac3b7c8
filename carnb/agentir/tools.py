"""The session's tool registry (``tools.register`` / ``tools.list`` / ``tools.unregister``)."""

from __future__ import annotations

from typing import Any

from carnb.errors import InvalidParams

from .model import ToolSchema
from .parse import parse_tool_schema


class ToolRegistry:
    def __init__(self) -> None:
        self._tools: dict[str, ToolSchema] = {}

    def register(self, raw: Any) -> int:
        """Register ``ToolDefinition[]``; all are validated before any is added."""
        if not isinstance(raw, list):
            raise InvalidParams("tools must be an array of tool definitions")
        schemas = [parse_tool_schema(t, f"tools[{i}]") for i, t in enumerate(raw)]
        for schema in schemas:
            self._tools[schema.name] = schema
        return len(schemas)

    def add(self, schema: ToolSchema) -> None:
        """Add (or replace) one already-parsed schema."""
        self._tools[schema.name] = schema

    def names(self) -> list[str]:
        return sorted(self._tools)

    def unregister(self, name: str) -> int:
        return 1 if self._tools.pop(name, None) is not None else 0

    def get(self, name: str) -> ToolSchema | None:
        return self._tools.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def describe(self) -> dict[str, Any]:
        """``{tools, count}`` sorted by name, so two listings of one toolset are identical."""
        tools = [self._tools[name].to_wire() for name in sorted(self._tools)]
        return {"tools": tools, "count": len(tools)}

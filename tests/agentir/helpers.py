"""Builders for agent IR tests: proposals from short specs and a scriptable tool runner."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from carnb.agentir import ActionProposal, ToolRegistry, parse_proposal


def call(action_id: str, tool: str = "fetch", **fields: Any) -> dict[str, Any]:
    return {"id": action_id, "type": "tool_call", "tool": tool, **fields}


def write(action_id: str, key: str, value: Any, **fields: Any) -> dict[str, Any]:
    return {
        "id": action_id,
        "type": "state_write",
        "parameters": {"key": key, "value": value},
        **fields,
    }


def proposal(*actions: dict[str, Any], **fields: Any) -> ActionProposal:
    return parse_proposal({"id": "p1", "actions": list(actions), **fields})


def registry(*names: str, schemas: dict[str, dict[str, Any]] | None = None) -> ToolRegistry:
    tools = ToolRegistry()
    tools.register(
        [{"name": n, "parameters": (schemas or {}).get(n, {"type": "object"})} for n in names]
    )
    return tools


Handler = Callable[[dict[str, Any], int], Awaitable[Any]]


@dataclass
class Call:
    tool: str
    parameters: dict[str, Any]
    action_id: str
    attempt: int
    timeout_ms: int | None


@dataclass
class ScriptedRunner:
    """A ToolRunner whose tools are coroutines ``(parameters, attempt) -> result``; every call
    is recorded in order of dispatch."""

    handlers: dict[str, Handler] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)

    async def call(
        self,
        tool: str,
        parameters: dict[str, Any],
        *,
        action_id: str,
        attempt: int,
        timeout_ms: int | None,
    ) -> Any:
        self.calls.append(Call(tool, parameters, action_id, attempt, timeout_ms))
        handler = self.handlers.get(tool)
        if handler is None:
            return {"tool": tool, "echo": parameters}
        return await handler(parameters, attempt)

    def order(self) -> list[str]:
        return [c.action_id for c in self.calls]


async def forever(parameters: dict[str, Any], attempt: int) -> Any:
    await asyncio.Event().wait()

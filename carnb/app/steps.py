"""A run's trace as the steps of an agent loop (pure): model turns, each with what carnb recorded
of its inference and the tool executions that followed it.

Model turns are numbered from 1 in trace order, as ``%car run trace`` shows them. A model turn's
request is put back together from the ``inference`` records (``messages_kept`` refers to the
previous recorded request of the run, :mod:`carnb.app.recording`); a turn without one (the agent
called its own provider, or the run was recorded before carnb kept requests) has none, and
:func:`rebuilt_request` makes one from the recorded turns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from carnb.agentir.values import MISSING
from carnb.errors import NothingToReplay

# How a request carnb builds gives a tool result: its role and the key naming the call it
# answers, as the CAR agent loop writes them; the agent loop's own, when a recorded request
# shows one, is used instead.
TOOL_RESULT_STYLE = ("tool_result", "tool_use_id")
ID_KEYS = ("tool_use_id", "tool_call_id")


@dataclass
class ToolStep:
    """One recorded tool execution (a turn with a ``tool``)."""

    tool: str
    parameters: dict[str, Any]
    status: str
    output: Any
    error: str | None
    action_id: str | None
    turn: dict[str, Any]  # the turn as recorded

    @property
    def succeeded(self) -> bool:
        return self.error is None and self.status not in ("failed", "rejected", "skipped")


@dataclass
class ModelStep:
    number: int  # 1, 2, ...
    record: dict[str, Any]  # the model_turn record
    request: dict[str, Any] | None  # the whole request carnb served, when it has one
    inference: dict[str, Any] | None  # as recorded (bounded)
    tools: list[ToolStep] = field(default_factory=list)

    @property
    def reply(self) -> dict[str, Any]:
        """The model's answer: the reply carnb served, else what the agent recorded."""
        if self.inference is not None and self.inference.get("reply"):
            reply: dict[str, Any] = self.inference["reply"]
            return reply
        return {
            "text": self.record.get("assistant_text") or "",
            "tool_calls": self.record.get("requested_tool_calls") or [],
            "usage": self.record.get("token_usage"),
        }

    @property
    def context(self) -> str | None:
        return None if self.inference is None else self.inference.get("context")


def tool_step(turn: dict[str, Any]) -> ToolStep | None:
    tool = turn.get("tool")
    if not isinstance(tool, str):
        return None
    params = turn.get("parameters")
    error = turn.get("error")
    return ToolStep(
        tool=tool,
        parameters=params if isinstance(params, dict) else {},
        status=str(turn.get("status") or ("failed" if error else "succeeded")),
        output=turn.get("output"),
        error=error if isinstance(error, str) else None,
        action_id=turn.get("action_id") if isinstance(turn.get("action_id"), str) else None,
        turn=turn,
    )


def model_steps(records: list[dict[str, Any]]) -> list[ModelStep]:
    """The model turns of a trace, in order, each with its tool executions."""
    steps: list[ModelStep] = []
    previous: dict[str, Any] | None = None  # the previous recorded request, whole
    for record in records:
        kind = record.get("record")
        if kind == "model_turn":
            inference = record.get("inference")
            request = None
            if isinstance(inference, dict) and isinstance(inference.get("request"), dict):
                request = _whole(inference["request"], previous)
                previous = request
            steps.append(
                ModelStep(
                    len(steps) + 1,
                    record,
                    request,
                    inference if isinstance(inference, dict) else None,
                )
            )
        elif kind == "turn" and steps:
            step = tool_step(record.get("turn") or {})
            if step is not None:
                steps[-1].tools.append(step)
    return steps


def _whole(asked: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any] | None:
    """A recorded request put back together with the previous one it refers to (None: it
    cannot be, its messages were omitted or it refers to a request that is not there)."""
    if "messages" not in asked:
        return None
    before = previous or {}
    kept = int(asked.get("messages_kept") or 0)
    unchanged = list(asked.get("unchanged") or [])
    if kept > len(before.get("messages") or []) or any(k not in before for k in unchanged):
        return None
    request = {k: v for k, v in asked.items() if k not in ("messages_kept", "unchanged")}
    for key in unchanged:
        request[key] = before[key]
    request["messages"] = list(before.get("messages") or [])[:kept] + list(asked["messages"])
    return request


STATE_WRITE = "state_write"  # the ``tool`` of a recorded state action (the action's type)
STATE_READ = "state_read"
STATE_ACTIONS = frozenset({STATE_WRITE, STATE_READ, "assertion"})


class RecordedState:
    """The proposal state a recorded run had, as far as its recorded state actions show it:
    each key's last succeeded ``state_write`` value, and a key only read (its value from before
    the run) as that read returned it. A read that returned null is not taken as a value (a
    missing key reads as null too); a key no action touched is unknown and absent."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self._written: set[str] = set()

    def after(self, step: ModelStep) -> RecordedState:
        """Advance past the tool steps of ``step``; returns self."""
        for tool in step.tools:
            key = tool.parameters.get("key")
            if not isinstance(key, str) or not tool.succeeded:
                continue
            if tool.tool == STATE_WRITE and "value" in tool.parameters:
                self.values[key] = tool.parameters["value"]
                self._written.add(key)
            elif tool.tool == STATE_READ and key not in self._written and tool.output is not None:
                self.values.setdefault(key, tool.output)
        return self

    def lookup(self, key: str) -> Any:
        return self.values.get(key, MISSING)


def state_at(before: list[ModelStep]) -> dict[str, Any]:
    """The recorded state after the tool steps of ``before`` (:class:`RecordedState`)."""
    state = RecordedState()
    for step in before:
        state.after(step)
    return dict(state.values)


def require_steps(run_id: str, steps: list[ModelStep]) -> None:
    if not steps:
        raise NothingToReplay(
            f"run {run_id} has no model turn to replay or fork: it holds no "
            "runs.record_model_turn record (it was traced with turns only, or by an agent that "
            "does not record its model turns)"
        )


def tool_result_style(requests: list[dict[str, Any] | None]) -> tuple[str, str]:
    """``(role, id key)`` of the tool results the agent loop sends, as its recorded requests
    show them."""
    for request in requests:
        for m in (request or {}).get("messages") or []:
            role = m.get("role") if isinstance(m, dict) else None
            if role in ("tool", "tool_result"):
                key = next((k for k in ID_KEYS if k in m), TOOL_RESULT_STYLE[1])
                return str(role), key
    return TOOL_RESULT_STYLE


def as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def assistant_message(reply: dict[str, Any]) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": reply.get("text") or "",
        "tool_calls": list(reply.get("tool_calls") or []),
    }


def result_message(style: tuple[str, str], call_id: str | None, value: Any) -> dict[str, Any]:
    role, key = style
    message: dict[str, Any] = {"role": role, "content": as_text(value)}
    if call_id is not None:
        message[key] = call_id
    return message


def rebuilt_request(intent: str, before: list[ModelStep], model: str | None) -> dict[str, Any]:
    """A request for the model turn after ``before``, made from the recorded turns: the intent
    as the user's message, then each turn's answer and its tool results."""
    style = tool_result_style([s.request for s in before])
    messages: list[dict[str, Any]] = [{"role": "user", "content": intent}]
    for step in before:
        reply = step.reply
        messages.append(assistant_message(reply))
        calls = list(reply.get("tool_calls") or [])
        for i, tool in enumerate(step.tools):
            call_id = calls[i].get("id") if i < len(calls) else tool.action_id
            value = tool.output if tool.error is None else {"error": tool.error}
            messages.append(result_message(style, call_id, value))
    request: dict[str, Any] = {"messages": messages}
    if model is not None:
        request["model"] = model
    return request

"""What span each meter event becomes: name, OpenInference kind and attributes (pure).

Attributes follow the OpenTelemetry GenAI conventions (``gen_ai.*``) and OpenInference's
(``openinference.span.kind``, ``llm.*``, ``tool.name``, ``input.value``/``output.value``), so
Phoenix, Langfuse and other GenAI viewers show runs, model calls and tools as such. Content
(messages, outputs, tool parameters, a run's intent) is only added with ``content=True``; ids,
counts, names and cost always are. Nothing a span carries comes from credentials.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

AttrValue = str | bool | int | float
Attrs = dict[str, AttrValue]

AGENT, LLM, TOOL = "AGENT", "LLM", "TOOL"
_CONTENT_CHARS = 64 * 1024  # one attribute of content at most (the rest is cut with a mark)


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= _CONTENT_CHARS else text[:_CONTENT_CHARS] + "…[truncated]"


def _put(attrs: Attrs, key: str, value: Any) -> None:
    if isinstance(value, bool | int | float | str):
        attrs[key] = value


def run_span(data: Mapping[str, Any], content: Mapping[str, Any] | None) -> tuple[str, Attrs]:
    """The root span of a run's trace."""
    agent = data.get("agent") or "agent"
    attrs: Attrs = {
        "openinference.span.kind": AGENT,
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": str(agent),
        "carnb.run_id": str(data["run_id"]),
        "session.id": str(data["run_id"]),
    }
    if content and isinstance(content.get("intent"), str):
        attrs["input.value"] = _text(content["intent"])
    return f"run {agent}", attrs


def run_end_attrs(data: Mapping[str, Any], content: Mapping[str, Any] | None) -> Attrs:
    attrs: Attrs = {}
    _put(attrs, "carnb.run.status", data.get("status"))
    if content and content.get("outcome") is not None:
        attrs["output.value"] = _text(content["outcome"])
    return attrs


def llm_span(data: Mapping[str, Any], content: Mapping[str, Any] | None) -> tuple[str, Attrs]:
    model = data.get("model")
    tokens_in, tokens_out = int(data.get("tokens_in") or 0), int(data.get("tokens_out") or 0)
    attrs: Attrs = {
        "openinference.span.kind": LLM,
        "gen_ai.operation.name": "chat",
        "gen_ai.usage.input_tokens": tokens_in,
        "gen_ai.usage.output_tokens": tokens_out,
        "llm.token_count.prompt": tokens_in,
        "llm.token_count.completion": tokens_out,
        "llm.token_count.total": tokens_in + tokens_out,
        "carnb.source": str(data.get("source")),
    }
    if isinstance(model, str):
        attrs["gen_ai.request.model"] = model
        attrs["gen_ai.response.model"] = model
        attrs["llm.model_name"] = model
    _put(attrs, "gen_ai.agent.name", data.get("agent"))
    _put(attrs, "carnb.run_id", data.get("run_id"))
    _put(attrs, "carnb.turn_index", data.get("turn_index"))
    _put(attrs, "carnb.cost_usd", data.get("cost_usd"))
    if content:
        if content.get("messages"):
            attrs["input.value"] = _text(content["messages"])
            attrs["input.mime_type"] = "application/json"
        if content.get("output") is not None:
            attrs["output.value"] = _text(content["output"])
        if content.get("tool_calls"):
            attrs["carnb.tool_calls"] = _text(content["tool_calls"])
    return f"chat {model}" if model else "chat", attrs


def tool_span(
    kind: str, data: Mapping[str, Any], content: Mapping[str, Any] | None
) -> tuple[str, Attrs, bool]:
    """A tool action: name, attributes, and whether it failed."""
    tool = str(data.get("tool"))
    attrs: Attrs = {
        "openinference.span.kind": TOOL,
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": tool,
        "tool.name": tool,
        "carnb.event": kind,
    }
    _put(attrs, "carnb.run_id", data.get("run_id"))
    _put(attrs, "gen_ai.agent.name", data.get("agent"))
    _put(attrs, "carnb.action.status", data.get("status"))
    _put(attrs, "error.type", data.get("error_class"))
    if content:
        if content.get("parameters") is not None:
            attrs["input.value"] = _text(content["parameters"])
        if content.get("output") is not None:
            attrs["output.value"] = _text(content["output"])
    return f"execute_tool {tool}", attrs, "error_class" in data

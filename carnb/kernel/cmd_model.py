"""``%car model list|default NAME`` and ``%%car infer``: the models of this kernel's server
(``carnb.model``, runner clients) seen and tried from the notebook."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from carnb.kernel.calls import CarCommandError
from carnb.kernel.cellrun import Cell
from carnb.kernel.render import KeyValues, Message, Pre, Renderable, Sections, Table

if TYPE_CHECKING:
    from carnb.kernel.engine import NotebookEngine

INFER_TIMEOUT = 600.0  # the model's own timeout answers first; this only bounds the wait


class ModelList(Table):
    """The registered models; ``.models`` is the raw list, ``.default`` the default's name."""

    def __init__(self, described: dict[str, Any]) -> None:
        self.models: list[dict[str, Any]] = described.get("models") or []
        self.default: str | None = described.get("default")
        super().__init__(
            ["name", "kind", "default", "embed", "timeout"],
            [
                [
                    m["name"],
                    m["kind"],
                    "✓" if m["default"] else "",
                    "✓" if m["embed"] else "",
                    f"{m['timeout_s']:g} s",
                ]
                for m in self.models
            ],
            title=f"{len(self.models)} model(s)",
            empty="(none: register one with carnb.model(fn))",
        )


def list_models(nb: NotebookEngine, args: argparse.Namespace) -> ModelList:
    return ModelList(nb.calls.call("models.list", what="%car model list"))


def default(nb: NotebookEngine, args: argparse.Namespace) -> Message:
    nb.calls.call("models.set_default", {"name": args.name}, what="%car model default")
    return Message(f"default model: {args.name}")


class InferResult(Sections):
    """A reply of ``infer`` with the context that was injected. ``.reply`` is the raw reply,
    ``.request`` what the model received, ``.context`` the injected context (or None)."""

    def __init__(self, reply: dict[str, Any], request: dict[str, Any]) -> None:
        self.reply = reply
        self.request = request
        self.context: str | None = request.get("context")
        parts: list[Renderable | None] = [
            Pre(reply.get("text") or "(no text)", title=f"model {reply.get('model_used')}"),
        ]
        calls = reply.get("tool_calls") or []
        if calls:
            parts.append(
                Table(
                    ["id", "tool", "arguments"],
                    [[c.get("id"), c.get("name"), json.dumps(c.get("arguments"))] for c in calls],
                    title="tool calls",
                )
            )
        usage = reply.get("usage") or {}
        parts.append(
            KeyValues(
                {
                    "tokens": f"{usage.get('input_tokens', '?')} in / "
                    f"{usage.get('output_tokens', '?')} out"
                    if usage
                    else "not reported",
                    "latency": f"{reply.get('latency_ms', 0)} ms",
                    "stop_reason": reply.get("stop_reason"),
                }
            )
        )
        if self.context is not None:
            parts.append(Pre(self.context, title="context injected"))
        super().__init__(*parts)


def infer(nb: NotebookEngine, args: argparse.Namespace, cell: Cell) -> InferResult:
    """``%%car infer [--model M] [--context QUERY] [--system TEXT]``: the cell is the prompt."""
    prompt = cell.source.strip()
    if not prompt:
        raise CarCommandError("%%car infer: the cell is empty; write the prompt in it")
    params: dict[str, Any] = {"messages": [{"role": "user", "content": prompt}]}
    if args.system:
        params["messages"].insert(0, {"role": "system", "content": args.system})
    if args.model:
        params["model"] = args.model
    if args.context:
        params["context_query"] = args.context
    rt = nb.calls.runtime
    done = nb.calls.guard(lambda: rt.infer(params, timeout=INFER_TIMEOUT), what="%%car infer")
    return InferResult(done["reply"], done["request"])

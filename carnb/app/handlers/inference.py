"""``infer``, ``embed``, ``models.*`` and the ``inference.*`` runner methods: the model bridge
(:mod:`carnb.app.models`, :mod:`carnb.app.modelrunner`); ``agents.chat`` and
``agent.chat.event``, chat turns relayed to an attached agent (:mod:`carnb.app.chat`)."""

from __future__ import annotations

import time
from typing import Any

from carnb.app.handlers.runs import keep_unattached
from carnb.app.methods import Method, Params
from carnb.app.modelrunner import Runners
from carnb.app.models import ContextSource
from carnb.app.params import req_str
from carnb.app.schedule import in_thread, in_turn
from carnb.app.services import Services
from carnb.protocol.session import ClientSession


def attach(svc: Services) -> None:
    """A runner's models go (and its pending calls fail) when its connection ends."""
    svc.sessions.on_close(_runners(svc).drop)
    svc.sessions.on_close(svc.chats.drop)
    # the recorder lets a closing session go after its run's last inference is written
    # (carnb.app.handlers.runs)


def _runners(svc: Services) -> Runners:
    return Runners(svc.models)


def context_source(svc: Services, s: ClientSession) -> ContextSource:
    """Render ``memory.build_context`` of the session's effective graph: in a worker thread, in
    turn with the graph's other calls (its gate), as ``memory.build_context`` itself runs."""

    async def render(query: str) -> str:
        graph = s.effective_memgine if svc.memory is not None else None
        if graph is None:
            return ""
        text: str = await in_turn(graph, graph.build_context, query)
        return text

    return render


async def record_served(
    svc: Services, s: ClientSession, request: dict[str, Any], reply: dict[str, Any]
) -> None:
    """Keep an inference served to ``s`` for its current run (replay and fork), if it has one;
    the one it displaces, which no model turn took, becomes a model turn of its own."""
    if svc.runs is None or s.current_run_id is None:
        return
    secrets = (svc.credentials.token, svc.credentials.host_token)
    displaced = svc.recordings.remember(s, request, reply, secrets)
    if displaced is not None:
        await in_thread(keep_unattached, svc, s, displaced)


async def infer(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    started = time.time()
    reply, request = await svc.models.infer(p, context_source(svc, s))
    await record_served(svc, s, request, reply)
    content = {
        "messages": input_messages(request),
        "output": reply.get("text"),
        "tool_calls": reply.get("tool_calls"),
    }
    svc.meter.inferred(s, reply, content, started)
    return reply


async def embed(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    return await svc.models.embed(p)


def input_messages(request: dict[str, Any]) -> list[dict[str, Any]]:
    """What the model was asked, as chat messages (system, then messages or the prompt)."""
    out: list[dict[str, Any]] = []
    if isinstance(request.get("system"), str):
        out.append({"role": "system", "content": request["system"]})
    out.extend(request.get("messages") or [])
    if isinstance(request.get("prompt"), str):
        out.append({"role": "user", "content": request["prompt"]})
    return out


def models_list(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    return svc.models.describe()


def models_set_default(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    svc.models.set_default(req_str(p, "name"))
    return {"default": svc.models.default}


def models_unregister(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    name = req_str(p, "id")
    if not svc.models.remove(name):
        raise svc.models.unknown(name)
    return {"id": name, "unregistered": True, "default": svc.models.default}


def register_runner(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    names = _runners(svc).register(s, p.get("models"), p.get("default"))
    return {"registered": True, "models": names}


def runner_event(s: ClientSession, p: Params, svc: Services) -> dict[str, bool]:
    _runners(svc).event(s, p.get("call_id"), p.get("event"))
    return {"emitted": True}


def runner_complete(s: ClientSession, p: Params, svc: Services) -> dict[str, bool]:
    _runners(svc).complete(s, p.get("call_id"), p.get("result"))
    return {"completed": True}


def runner_fail(s: ClientSession, p: Params, svc: Services) -> dict[str, bool]:
    _runners(svc).fail(s, p.get("call_id"), p.get("error"))
    return {"failed": True}


async def agents_chat(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    agent_id = p.get("agent_id")
    targets = [
        t
        for t in svc.sessions
        if isinstance(agent_id, str) and t.agent_id == agent_id and t is not s
    ]
    return await svc.chats.start(s, targets, p)


def agent_chat_event(s: ClientSession, p: Params, svc: Services) -> dict[str, bool]:
    return {"relayed": svc.chats.event(s, p)}


_GENERATE = {
    "model": "string? (default: the server's default model)",
    "messages": "[{role, content, tool_calls?}]?",
    "prompt": "string?",
    "system": "string?",
    "tools": "ToolDef[]?",
    "context_query": "string? (memory context of this query is injected)",
    "timeout_ms": "integer? (bounds this call; capped by the model's timeout)",
}

METHODS = (
    Method(
        "agents.chat",
        agents_chat,
        mode="task",
        role="host",
        summary="Send a chat turn to an attached agent (agent.chat); its reply streams back as "
        "agents.chat.event notifications",
        params={
            "agent_id": "string",
            "prompt": "string",
            "session_id": "string? (the chat's id; default: a new one)",
            "model": "string?",
            "attachments": "any? (passed on to the agent)",
            "goal": "any? (passed on to the agent)",
            "context": "any? (passed on to the agent)",
        },
        result="{accepted: true, session_id}",
    ),
    Method(
        "agent.chat.event",
        agent_chat_event,
        summary="(agent side, a notification) one event of a chat turn this session serves",
        params={"session_id": "string", "kind": "string", "delta": "any?"},
        result="{relayed}",
    ),
    Method(
        "infer",
        infer,
        mode="task",
        summary="Run a model of this server (the notebook's carnb.model or a runner)",
        params=_GENERATE,
        result="{text, tool_calls, usage, model_used, trace_id, latency_ms, "
        "time_to_first_token_ms, stop_reason}",
    ),
    Method(
        "embed",
        embed,
        mode="task",
        summary="Embed texts with a model that has an embed callable",
        params={"texts": "string[]", "model": "string?"},
        result="{embeddings: number[][], model_used}",
    ),
    Method(
        "models.list",
        models_list,
        summary="The models infer can reach, and the default",
        result="{default, models: [{name, kind, default, embed, timeout_s}]}",
    ),
    Method(
        "models.set_default",
        models_set_default,
        role="host",
        summary="Make a registered model the default of infer",
        params={"name": "string"},
        result="{default}",
    ),
    Method(
        "models.unregister",
        models_unregister,
        role="host",
        summary="Remove a model of this server (a runner's too); takes effect at once",
        params={"id": "string"},
        result="{id, unregistered: true, default}",
    ),
    Method(
        "inference.register_runner",
        register_runner,
        summary="Serve models from this client: infer calls arrive as inference.runner.invoke",
        params={
            "models": 'string[]? (["runner"])',
            "default": "boolean? (host only: make the first name the default model)",
        },
        result="{registered: true, models}",
    ),
    Method(
        "inference.runner.event",
        runner_event,
        summary="Stream one event of a pending runner call",
        params={"call_id": "string", "event": "{type, ...}"},
        result="{emitted: true}",
    ),
    Method(
        "inference.runner.complete",
        runner_complete,
        summary="Answer a pending runner call",
        params={"call_id": "string", "result": "{text, tool_calls}"},
        result="{completed: true}",
    ),
    Method(
        "inference.runner.fail",
        runner_fail,
        summary="Fail a pending runner call",
        params={"call_id": "string", "error": "string"},
        result="{failed: true}",
    ),
)

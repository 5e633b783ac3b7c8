"""The notebook's own methods (role ``notebook``): what only the notebook's socketless session
may call, because their params are Python objects no socket can send (a tool's callable, a
model's function, a supervisor's judge). They make the notebook's session API
(:mod:`carnb.app.notebook`) one path through the dispatcher like every other call; a socket
session never sees them (``capabilities.list`` and ``server.schema`` leave them out for it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from carnb.app.methods import Area, Method, Params
from carnb.app.models import PythonModel
from carnb.app.services import Services
from carnb.app.supervision import Filter, function_supervisor
from carnb.app.toolhub import LocalTool
from carnb.errors import InvalidParams
from carnb.protocol.session import ClientSession


def add_tool(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    tool = p.get("tool")
    if not isinstance(tool, LocalTool):
        raise InvalidParams("tool must be a LocalTool")
    svc.tools.add_local(s, tool)
    return {"name": tool.schema.name}


def add_model(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    name, fn, embed = p.get("name"), p.get("fn"), p.get("embed")
    if not isinstance(name, str) or not callable(fn):
        raise InvalidParams("a model needs a name and a callable")
    if embed is not None and not callable(embed):
        raise InvalidParams("embed must be callable (texts -> list of vectors)")
    timeout = p.get("timeout")
    backend = PythonModel(fn, svc.models.pool, embed_fn=embed, timeout=timeout)
    svc.models.add(name, backend, default=bool(p.get("default")))
    return {"name": name}


def remove_model(s: ClientSession, p: Params, svc: Services) -> dict[str, bool]:
    return {"removed": svc.models.remove(str(p.get("name")))}


def add_supervisor(s: ClientSession, p: Params, svc: Services) -> dict[str, str]:
    key, judge, flt = p.get("key"), p.get("judge"), p.get("filter")
    if not isinstance(key, str) or not callable(judge) or not isinstance(flt, Filter):
        raise InvalidParams("a supervisor needs a key, a callable judge and a Filter")
    timeout = p.get("timeout")
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not timeout > 0:
        raise InvalidParams(f"timeout must be a positive number of seconds, got {timeout!r}")
    judge_fn: Callable[[dict[str, Any]], Any] = judge
    svc.supervision.add(key, flt, function_supervisor(svc.supervision, key, judge_fn, timeout))
    return {"key": key}


def remove_supervisor(s: ClientSession, p: Params, svc: Services) -> dict[str, bool]:
    return {"removed": svc.supervision.unsubscribe(str(p.get("key")))}


async def chat_events(s: ClientSession, p: Params, svc: Services) -> list[dict[str, Any]]:
    chat_id, timeout = p.get("chat_id"), p.get("timeout")
    if not isinstance(chat_id, str) or not isinstance(timeout, int | float):
        raise InvalidParams("chat_id (a string) and timeout (seconds) are required")
    return await svc.chats.wait(chat_id, timeout)


AREA = Area(
    "notebook",
    methods=(
        Method(
            "notebook.tools.add",
            add_tool,
            role="notebook",
            summary="Add (or replace) a Python tool of the notebook's session",
            params={"tool": "LocalTool"},
            result="{name}",
        ),
        Method(
            "notebook.models.add",
            add_model,
            role="notebook",
            summary="Add (or replace) a Python model of this server",
            params={
                "name": "string",
                "fn": "callable (request -> reply)",
                "embed": "callable? (texts -> vectors)",
                "timeout": "number? (seconds)",
                "default": "boolean?",
            },
            result="{name}",
        ),
        Method(
            "notebook.models.remove",
            remove_model,
            role="notebook",
            summary="Remove a model by name",
            params={"name": "string"},
            result="{removed}",
        ),
        Method(
            "notebook.supervisors.add",
            add_supervisor,
            role="notebook",
            summary="Make a Python function a supervisor of every session's proposals",
            params={
                "key": "string",
                "judge": "callable (intent -> decision)",
                "filter": "Filter",
                "timeout": "number (seconds)",
            },
            result="{key}",
        ),
        Method(
            "notebook.supervisors.remove",
            remove_supervisor,
            role="notebook",
            summary="Stop a supervisor notebook.supervisors.add made",
            params={"key": "string"},
            result="{removed}",
        ),
        Method(
            "notebook.chat.events",
            chat_events,
            mode="task",
            role="notebook",
            summary="Wait for an agents.chat turn the notebook started to end; its events",
            params={"chat_id": "string", "timeout": "number (seconds)"},
            result="[{kind, delta, session_id, agent_id, ...}]",
        ),
    ),
)

"""Models served by another process: a WebSocket client registered as an inference runner.

Theory of operation (the real daemon's ``inference.*`` runner protocol). A client calls
``inference.register_runner {models?}``; each named model (default ``"runner"``) is then a
:class:`RunnerModel` of the hub. An ``infer`` for it sends the runner an
``inference.runner.invoke {call_id, request}`` notification and waits, bounded by the model's
timeout, for the runner to answer with ``inference.runner.complete {call_id, result: {text,
tool_calls}}`` or ``inference.runner.fail {call_id, error}``; it may stream
``inference.runner.event {call_id, event}`` first (text, tool_start, tool_delta, usage, done,
error), and then the streamed text and tool calls are the answer, ``result`` filling in only what
the stream lacked. Only the runner a call was sent to can answer it. When the runner's
connection ends, its models go and its pending calls fail at once (never a hang).

Limits: everything a runner sends for one call (streamed text, tool names and argument deltas,
the text and tool calls of ``done`` and ``complete``) counts against one budget of
:data:`~carnb.config.MAX_RUNNER_CALL_CHARS`, checked as each piece arrives; past it the call
fails and the runner's event is refused. Nothing here parses what a runner sent: the hub checks
and parses the reply (tool arguments are JSON text) in a worker thread. A runner serves only
the names it registered, and becomes the default model only when the host asks (``default:
true`` with the host role); the host may remove any runner's model (``models.unregister``).

Everything here runs on the server loop.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from carnb.app.models import ModelHub, check_name
from carnb.app.pending import Pending
from carnb.config import MAX_RUNNER_CALL_CHARS
from carnb.errors import (
    Forbidden,
    InvalidParams,
    ModelFailed,
    ModelTimeout,
    NotFound,
    RunnerGone,
    RunnerTooLarge,
)
from carnb.protocol.session import ClientSession

DEFAULT_RUNNER_MODEL = "runner"


@dataclass
class _Call:
    future: asyncio.Future[Any]
    text: list[str] = field(default_factory=list)
    chars: int = 0
    tools: dict[int, dict[str, Any]] = field(default_factory=dict)
    usage: dict[str, Any] | None = None
    streamed: bool = False

    def take(self, *pieces: object) -> None:
        """Count ``pieces`` (strings, or the text and tool calls of a result) against the
        call's budget; past it the call fails and :class:`RunnerTooLarge` tells the runner."""
        self.chars += json_size(pieces, MAX_RUNNER_CALL_CHARS - self.chars)
        if self.chars > MAX_RUNNER_CALL_CHARS:
            why = f"runner sent more than {MAX_RUNNER_CALL_CHARS} characters of JSON for one call"
            if not self.future.done():
                self.future.set_exception(ModelFailed(why))
            raise RunnerTooLarge(why)


def json_size(value: object, limit: int) -> int:
    """About how many characters ``value`` takes as JSON (at least 2 for every element), counted
    without serialising it and stopping as soon as the count passes ``limit``: a big value costs
    no more to measure than a value just over the limit."""
    size = 0
    stack = [value]
    while stack and size <= limit:
        item = stack.pop()
        if isinstance(item, str):
            size += len(item) + 2
        elif isinstance(item, dict):
            size += 2
            for key, child in item.items():
                size += len(key) + 3 if isinstance(key, str) else 3
                stack.append(child)
        elif isinstance(item, list | tuple):
            size += 2
            if 2 * len(item) > limit - size:  # its elements alone pass the limit
                return limit + 1
            stack.extend(item)
        else:
            size += 2
    return size


class RunnerModel:
    """One model name served by a runner session."""

    kind = "runner"

    def __init__(self, session: ClientSession, timeout: float | None = None) -> None:
        self.session = session
        self.timeout = timeout
        self.calls: Pending[_Call] = Pending()

    def can_embed(self) -> bool:
        return False

    async def embed(self, texts: list[str], timeout: float) -> Any:
        raise ModelFailed("runner models do not embed")

    async def generate(self, request: dict[str, Any], timeout: float) -> Any:
        notify = self.session.notifier
        if notify is None or self.session.closed:
            raise RunnerGone(f"runner session {self.session.client_id} has disconnected")
        call_id = uuid.uuid4().hex
        self.calls.open(call_id, _Call)
        try:
            notify("inference.runner.invoke", {"call_id": call_id, "request": request})
            return await self.calls.wait(call_id, timeout)
        except TimeoutError:
            raise ModelTimeout(f"runner did not answer within {timeout:g} s") from None
        finally:
            self.calls.discard(call_id)

    def fail_all(self, why: str) -> None:
        self.calls.fail_all(lambda: RunnerGone(why))


class Runners:
    """The runner side of the hub: registration, the three answer methods, disconnects."""

    def __init__(self, hub: ModelHub) -> None:
        self.hub = hub

    def register(self, session: ClientSession, models: object, default: object) -> list[str]:
        if session.notifier is None:
            raise InvalidParams("only a WebSocket client can be an inference runner")
        names = [DEFAULT_RUNNER_MODEL] if models is None else models
        if not isinstance(names, list) or not names:
            raise InvalidParams("models must be a non-empty array of model names")
        for name in names:
            check_name(name)
        if default is not None and not isinstance(default, bool):
            raise InvalidParams("default must be a boolean")
        if default and not session.is_host:
            raise Forbidden(
                "forbidden: only the host decides which model answers an infer that names "
                "none; register without default (requests naming your models reach you), and "
                "the host may make one the default with models.set_default",
                data={"reason": "forbidden"},
            )
        for name in names:
            self.hub.add(
                name,
                RunnerModel(session),
                default=bool(default) and name == names[0],
                owner=session.client_id,
            )
        return list(names)

    def _call(self, session: ClientSession, call_id: object) -> _Call:
        if not isinstance(call_id, str) or not call_id:
            raise InvalidParams("call_id is required and must be a string")
        for name in self.hub.names():
            backend = self.hub.get(name)
            if isinstance(backend, RunnerModel) and backend.session is session:
                call = backend.calls.get(call_id)
                if call is not None:
                    return call
        raise NotFound(f"no pending inference call {call_id} for this runner")

    def event(self, session: ClientSession, call_id: object, event: object) -> None:
        call = self._call(session, call_id)
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise InvalidParams("unrecognised runner event shape: event must be {type, ...}")
        kind = event["type"]
        call.streamed = True
        if kind == "text" and isinstance(event.get("data"), str):
            call.take(event["data"])
            call.text.append(event["data"])
        elif (
            kind == "tool_start"
            and isinstance(event.get("name"), str)
            and _is_int(event.get("index"))
        ):
            call.take(event["name"], event.get("id"))
            call.tools[event["index"]] = {"id": event.get("id"), "name": event["name"], "args": []}
        elif (
            kind == "tool_delta"
            and _is_int(event.get("index"))
            and isinstance(event.get("data"), str)
        ):
            tool = call.tools.get(event["index"])
            if tool is None:
                raise InvalidParams(f"tool_delta for index {event['index']} before its tool_start")
            call.take(event["data"])
            tool["args"].append(event["data"])
        elif (
            kind == "usage"
            and _is_int(event.get("input_tokens"))
            and _is_int(event.get("output_tokens"))
        ):
            call.usage = {
                "input_tokens": event["input_tokens"],
                "output_tokens": event["output_tokens"],
            }
        elif kind == "done" and isinstance(event.get("text"), str):
            call.take(event["text"], event.get("tool_calls"))
            call.future.set_result(
                {
                    "text": event["text"],
                    "tool_calls": event.get("tool_calls") or [],
                    "usage": call.usage,
                }
            )
        elif kind == "error" and isinstance(event.get("message"), str):
            call.future.set_exception(ModelFailed(f"runner failed: {event['message']}"))
        elif kind == "provider_output_item" and isinstance(event.get("item"), dict):
            pass  # opaque continuity items: nothing carnb keeps
        else:
            raise InvalidParams(f"unrecognised runner event shape: {json.dumps(event)[:200]}")

    def complete(self, session: ClientSession, call_id: object, result: object) -> None:
        call = self._call(session, call_id)
        if not isinstance(result, dict):
            raise InvalidParams("result must be an object {text, tool_calls}")
        call.take(result.get("text"), result.get("tool_calls"))
        if not call.streamed:
            call.future.set_result(result)
            return
        tools = [
            {"id": t["id"], "name": t["name"], "arguments": "".join(t["args"]) or "{}"}
            for _, t in sorted(call.tools.items())
        ]
        call.future.set_result(
            {
                "text": "".join(call.text) if call.text else result.get("text", ""),
                "tool_calls": tools or result.get("tool_calls") or [],
                "usage": call.usage if call.usage is not None else result.get("usage"),
            }
        )

    def fail(self, session: ClientSession, call_id: object, error: object) -> None:
        call = self._call(session, call_id)
        if not isinstance(error, str):
            raise InvalidParams("error must be a string")
        call.future.set_exception(ModelFailed(f"runner failed: {error}"))

    def drop(self, session: ClientSession) -> None:
        """The runner's connection ended: fail its pending calls, remove its models."""
        for name in self.hub.names():
            backend = self.hub.get(name)
            if isinstance(backend, RunnerModel) and backend.session is session:
                backend.fail_all(
                    f"runner session {session.client_id} disconnected before it answered"
                )
        self.hub.remove_owned_by(session.client_id)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)

"""The model bridge: named models of this server, and how ``infer`` and ``embed`` reach them.

Theory of operation. carnb has no model of its own; the notebook does (any Python callable that
talks to a provider, or a local model). :class:`ModelHub` keeps this server's models by name:

* a :class:`PythonModel` is a callable ``fn(request) -> reply`` (sync or ``async def``) given by
  ``carnb.model(...)`` in the notebook or ``--model module:callable`` for ``serve``. Each call
  runs in a worker thread of the hub's own pool (an ``async def`` one gets its own event loop
  there), bounded by the model's timeout: the server loop and a busy cell are never held; a call
  past its timeout is abandoned (Python threads cannot be killed) and answered with an error.
* a runner model lives in another process: a WebSocket client that called
  ``inference.register_runner`` (:mod:`carnb.app.modelrunner`).

``infer`` picks the request's ``model``, else the default. Only the host decides the default:
the first notebook (or ``serve --model``) model is the default unless another is made so, and
a runner's model becomes the default only when the host says so (``models.set_default``, or
``inference.register_runner {default: true}`` with the host token); an ``infer`` that names no
model on a server without a default fails at once. ``timeout_ms`` bounds one call, capped by the
model's own timeout. With ``context_query`` the session's effective memory graph renders a
context for that query (in a worker thread), which the callable receives as ``request
["context"]`` and appended to the system prompt, as the real daemon injects it. A reply is a
string (the text) or a mapping ``{text?, tool_calls?, usage?, stop_reason?}``; anything else is a
malformed reply. The answer has the daemon's shape: ``{text, tool_calls, usage, model_used,
trace_id, latency_ms, time_to_first_token_ms, stop_reason}``.

Errors: an unknown model lists the registered ones; a callable that raises gives its message
(-32603), one that raises :class:`~carnb.errors.ContentRefused` a content refusal (-32007).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from carnb.app.schedule import in_thread
from carnb.app.workers import WorkerPool
from carnb.config import MAX_MODEL_TEXT_CHARS, MAX_MODELS, MODEL_TIMEOUT_S, MODEL_WORKERS
from carnb.errors import (
    CarnbError,
    ContentRefused,
    InvalidParams,
    ModelFailed,
    ModelNotFound,
    ModelTimeout,
    PoolClosed,
)

log = logging.getLogger("carnb.app.models")


Reply = dict[str, Any]
ContextSource = Callable[[str], Awaitable[str]]


class ModelBackend(Protocol):
    """Where one named model's calls go."""

    kind: str  # "python" or "runner"
    timeout: float | None

    async def generate(self, request: dict[str, Any], timeout: float) -> Any: ...
    async def embed(self, texts: list[str], timeout: float) -> Any: ...
    def can_embed(self) -> bool: ...


@dataclass
class PythonModel:
    """A notebook callable serving one model (and ``embed`` when given)."""

    fn: Callable[..., Any]
    pool: WorkerPool
    embed_fn: Callable[..., Any] | None = None
    timeout: float | None = None
    kind: str = "python"

    async def generate(self, request: dict[str, Any], timeout: float) -> Any:
        return await self._run(self.fn, request, timeout)

    async def embed(self, texts: list[str], timeout: float) -> Any:
        if self.embed_fn is None:
            raise ModelFailed("this model has no embed callable")
        return await self._run(self.embed_fn, texts, timeout)

    def can_embed(self) -> bool:
        return self.embed_fn is not None

    async def _run(self, fn: Callable[..., Any], arg: Any, timeout: float) -> Any:
        try:
            future = self.pool.submit(_call, fn, arg)
        except PoolClosed:
            raise ModelFailed("the model runner is closed") from None
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.wrap_future(future)
        except TimeoutError:
            future.cancel()
            raise ModelTimeout(
                f"did not answer within {timeout:g} s (its thread is abandoned, not stopped)"
            ) from None


def _call(fn: Callable[..., Any], arg: Any) -> Any:
    """In a worker thread: call ``fn``; an ``async def`` gets an event loop of its own."""
    result = fn(arg)
    if inspect.isawaitable(result):
        return asyncio.run(_awaited(result))
    return result


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


class ModelHub:
    """This server's models by name, the default, and the worker pool Python models run in."""

    def __init__(
        self, *, default_timeout: float = MODEL_TIMEOUT_S, workers: int = MODEL_WORKERS
    ) -> None:
        self.default_timeout = default_timeout
        self.pool = WorkerPool(workers, "carnb-model")
        self._models: dict[str, ModelBackend] = {}
        self._owners: dict[str, str] = {}  # model name -> client_id of the runner serving it
        self.default: str | None = None
        self._traces = itertools.count(1)

    # -- the registry (server loop) ----------------------------------------------------------
    def names(self) -> list[str]:
        return list(self._models)

    def get(self, name: str) -> ModelBackend | None:
        return self._models.get(name)

    def add(
        self, name: str, backend: ModelBackend, *, default: bool = False, owner: str = ""
    ) -> None:
        """Register ``backend`` as ``name`` (replacing a model of the same owner). ``owner`` is
        the runner session's id; a model without one (the notebook's) becomes the default when
        there is none, a runner's only with ``default=True`` (the caller checked the role)."""
        check_name(name)
        held_by = self._owners.get(name, "")
        if name in self._models and held_by != owner:
            raise InvalidParams(
                f"model {name!r} is already served by "
                + (f"runner session {held_by}" if held_by else "the notebook")
                + "; pick another name"
            )
        if name not in self._models and len(self._models) >= MAX_MODELS:
            raise InvalidParams(f"this server already has {MAX_MODELS} models")
        self._models[name] = backend
        if owner:
            self._owners[name] = owner
        if default or (self.default is None and not owner):
            self.default = name

    def remove(self, name: str) -> bool:
        """Remove ``name``; when it was the default, the first remaining notebook model (never a
        runner's) takes its place."""
        if self._models.pop(name, None) is None:
            return False
        self._owners.pop(name, None)
        if self.default == name:
            self.default = next((n for n in self._models if n not in self._owners), None)
        return True

    def remove_owned_by(self, owner: str) -> list[str]:
        gone = [n for n, o in self._owners.items() if o == owner]
        for name in gone:
            self.remove(name)
        return gone

    def set_default(self, name: str) -> None:
        if name not in self._models:
            raise self.unknown(name)
        self.default = name

    def describe(self) -> dict[str, Any]:
        return {
            "default": self.default,
            "models": [
                {
                    "name": name,
                    "kind": m.kind,
                    "default": name == self.default,
                    "embed": m.can_embed(),
                    "timeout_s": m.timeout if m.timeout is not None else self.default_timeout,
                }
                for name, m in self._models.items()
            ],
        }

    def resolve(self, requested: object) -> tuple[str, ModelBackend]:
        if requested is not None and not isinstance(requested, str):
            raise InvalidParams("model must be a string")
        name = requested or self.default
        if name is None and self._models:
            raise ModelNotFound(
                "this server has no default model: name one in `model` ("
                + ", ".join(self._models)
                + "), or let the host make one the default with models.set_default"
            )
        if name is None:
            raise ModelNotFound(
                "no model is registered on this server: register one with carnb.model(fn) "
                "in the notebook, `python -m carnb serve --model module:callable`, or a "
                "client's inference.register_runner (then name it in `model`)"
            )
        backend = self._models.get(name)
        if backend is None:
            raise self.unknown(name)
        return name, backend

    def unknown(self, name: str) -> ModelNotFound:
        known = ", ".join(self._models) or "none"
        return ModelNotFound(f"unknown model {name!r}; registered models: {known}")

    # -- calls (server loop) -------------------------------------------------------------------
    async def infer(
        self, params: Mapping[str, Any], context: ContextSource | None = None
    ) -> tuple[Reply, dict[str, Any]]:
        """Answer one ``infer``: the reply, and the request the model was given."""
        name, backend = self.resolve(params.get("model"))
        timeout = self.timeout_of(backend, params.get("timeout_ms"))
        request = await build_request(params, name, context)
        started = time.perf_counter()
        try:
            raw = await backend.generate(request, timeout)
        except ContentRefused:
            raise
        except ModelFailed as exc:
            raise type(exc)(f"model {name!r}: {exc.message}", data=exc.data) from None
        except CarnbError:
            raise
        except Exception as exc:
            raise ModelFailed(f"model {name!r} raised {type(exc).__name__}: {exc}") from exc
        latency = (time.perf_counter() - started) * 1000
        # A runner's reply is another peer's data (tool arguments arrive as JSON text): it is
        # checked and parsed in a worker thread, never on the loop.
        reply = await in_thread(normalize_reply, raw, name)
        reply["trace_id"] = f"carnb-{next(self._traces)}-{uuid.uuid4().hex[:8]}"
        reply["latency_ms"] = round(latency)  # an integer, as the daemon (and its client) use
        return reply, request

    def timeout_of(self, backend: ModelBackend, timeout_ms: object) -> float:
        """Seconds one call may take: the model's timeout (or the server's), or the caller's
        ``timeout_ms`` when that is shorter."""
        limit = backend.timeout if backend.timeout is not None else self.default_timeout
        if timeout_ms is None:
            return limit
        if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms <= 0:
            raise InvalidParams("timeout_ms must be a positive integer (milliseconds)")
        return min(limit, timeout_ms / 1000)

    async def embed(self, params: Mapping[str, Any]) -> dict[str, Any]:
        texts = params.get("texts")
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise InvalidParams("texts is required and must be an array of strings")
        model = params.get("model")
        if model is None:
            model = next((n for n, m in self._models.items() if m.can_embed()), None)
            if model is None:
                raise ModelNotFound("no registered model can embed (carnb.model(fn, embed=...))")
        name, backend = self.resolve(model)
        if not backend.can_embed():
            raise ModelNotFound(f"model {name!r} has no embed callable")
        timeout = backend.timeout if backend.timeout is not None else self.default_timeout
        try:
            raw = await backend.embed(texts, timeout)
        except ModelFailed as exc:
            raise ModelFailed(f"model {name!r}: {exc.message}") from None
        except Exception as exc:
            raise ModelFailed(f"model {name!r} embed raised {type(exc).__name__}: {exc}") from exc
        return {"embeddings": check_embeddings(raw, len(texts), name), "model_used": name}

    def close(self) -> None:
        self.pool.close()


def check_name(name: object) -> str:
    if not isinstance(name, str) or not name or len(name) > 200 or not name.isprintable():
        raise InvalidParams("a model name must be 1..200 printable characters")
    return name


# -- requests ----------------------------------------------------------------------------------
async def build_request(
    params: Mapping[str, Any], name: str, context: ContextSource | None
) -> dict[str, Any]:
    """The request the model receives: the caller's params, the model's name, and the memory
    context of ``context_query`` (as ``context`` and in the system prompt)."""
    messages = params.get("messages")
    if messages is not None and (
        not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages)
    ):
        raise InvalidParams("messages must be an array of {role, content} objects")
    prompt = params.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise InvalidParams("prompt must be a string")
    query = params.get("context_query")
    if query is not None and not isinstance(query, str):
        raise InvalidParams("context_query must be a string")
    request = dict(params)
    request["model"] = name
    if query and context is not None:
        text = await context(query)
        if text:
            request["context"] = text
            _inject(request, text)
    return request


def _inject(request: dict[str, Any], context: str) -> None:
    system = request.get("system")
    if isinstance(system, str):
        request["system"] = f"{system}\n\n{context}" if system else context
        return
    messages = list(request.get("messages") or [])
    if messages and messages[0].get("role") == "system":
        first = dict(messages[0])
        content = first.get("content")
        first["content"] = f"{content}\n\n{context}" if isinstance(content, str) else context
        messages[0] = first
    else:
        messages.insert(0, {"role": "system", "content": context})
    request["messages"] = messages


# -- replies -----------------------------------------------------------------------------------
def normalize_reply(raw: Any, name: str) -> Reply:
    """A model's reply in the daemon's ``infer`` shape, or :class:`ModelFailed` saying what is
    wrong with it."""

    def bad(why: str) -> ModelFailed:
        return ModelFailed(
            f"model {name!r} returned a malformed reply: {why}; return a string or "
            "{text, tool_calls: [{name, arguments}], usage?, stop_reason?}"
        )

    if isinstance(raw, str):
        raw = {"text": raw}
    if not isinstance(raw, Mapping):
        raise bad(f"a {type(raw).__name__}")
    text = raw.get("text", "")
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise bad(f"text is a {type(text).__name__}")
    if len(text) > MAX_MODEL_TEXT_CHARS:
        raise bad(f"text has {len(text)} characters (at most {MAX_MODEL_TEXT_CHARS})")
    calls = raw.get("tool_calls") or []
    if not isinstance(calls, list):
        raise bad("tool_calls is not an array")
    tool_calls = [_tool_call(c, i, bad) for i, c in enumerate(calls)]
    usage = raw.get("usage")
    if usage is not None:
        if not isinstance(usage, Mapping):
            raise bad("usage is not an object")
        usage = {
            "input_tokens": _count(usage, "input_tokens", "prompt_tokens", bad),
            "output_tokens": _count(usage, "output_tokens", "completion_tokens", bad),
        }
    stop = raw.get("stop_reason")
    if stop is not None and not isinstance(stop, str):
        raise bad("stop_reason is not a string")
    if stop is None:
        stop = "tool_use" if tool_calls else "end_turn"
    try:
        json.dumps(tool_calls, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise bad(f"tool call arguments are not JSON ({exc})") from None
    return {
        "text": text,
        "tool_calls": tool_calls,
        "usage": usage,
        "model_used": name,
        "time_to_first_token_ms": None,
        "stop_reason": stop,
    }


def _tool_call(call: Any, i: int, bad: Callable[[str], ModelFailed]) -> dict[str, Any]:
    if not isinstance(call, Mapping):
        raise bad(f"tool_calls[{i}] is not an object")
    name = call.get("name")
    if not isinstance(name, str) or not name:
        raise bad(f"tool_calls[{i}].name is missing")
    args = call.get("arguments", {})
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError:
            raise bad(f"tool_calls[{i}].arguments is a string that is not JSON") from None
    if not isinstance(args, Mapping):
        raise bad(f"tool_calls[{i}].arguments is not an object")
    call_id = call.get("id")
    if call_id is not None and not isinstance(call_id, str):
        raise bad(f"tool_calls[{i}].id is not a string")
    return {
        "id": call_id or f"call_{i}_{uuid.uuid4().hex[:8]}",
        "name": name,
        "arguments": dict(args),
    }


def _count(
    usage: Mapping[str, Any], key: str, alias: str, bad: Callable[[str], ModelFailed]
) -> int:
    value = usage.get(key, usage.get(alias, 0))
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise bad(f"usage.{key} is not a count")
    return value


def check_embeddings(raw: Any, count: int, name: str) -> list[list[float]]:
    if isinstance(raw, Mapping):
        raw = raw.get("embeddings")
    if not isinstance(raw, list) or len(raw) != count:
        raise ModelFailed(f"model {name!r} embed returned no list of {count} vectors")
    out: list[list[float]] = []
    for vec in raw:
        if not isinstance(vec, list | tuple) or not all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in vec
        ):
            raise ModelFailed(f"model {name!r} embed returned a vector that is not numbers")
        out.append([float(x) for x in vec])
    return out

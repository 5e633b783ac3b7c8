"""The notebook's session: the Python API a notebook (``carnb.tool``, ``carnb.model``,
``carnb.supervisor``, ``%car``) calls on its runtime.

Every action is one call of the notebook's socketless session through the dispatcher
(:meth:`NotebookSession.call` → ``Dispatcher.invoke``), so it passes the same gate, handlers and
scheduling as a socket's call; what needs a Python object (a tool's callable, a model's
function, a supervisor's judge) goes through the notebook-only methods of
:mod:`carnb.app.handlers.notebook`. :class:`NotebookSession` is a base of
:class:`carnb.runtime.Runtime`, which provides the two hooks: :meth:`_invoke` (a call as the
notebook's session) and :meth:`run_on_loop` (run a coroutine on the server loop and wait).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from carnb.agentir import ToolSchema
from carnb.agentir.pyschema import schema_of_function
from carnb.app.handlers.inference import requests_served
from carnb.app.supervision import Filter
from carnb.app.toolhub import LocalTool
from carnb.config import SUPERVISOR_FN_TIMEOUT_S
from carnb.errors import CallerFault


class NotebookSession:
    # -- the hooks the runtime provides ------------------------------------------------------
    def _invoke(self, method: str, params: Any) -> Coroutine[Any, Any, Any]:
        raise NotImplementedError

    def run_on_loop(self, coro: Coroutine[Any, Any, Any], timeout: float | None = 120) -> Any:
        raise NotImplementedError

    # -- calls -------------------------------------------------------------------------------
    def call(self, method: str, params: Any = None, *, timeout: float | None = 120) -> Any:
        """Call a method as the notebook's session, from any thread but the loop thread."""
        return self.run_on_loop(self._invoke(method, params), timeout=timeout)

    # -- tools -------------------------------------------------------------------------------
    def register_tool(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        parameters: dict[str, Any] | None = None,
        share: bool | Iterable[str] = False,
        timeout: float | None = None,
        approve: bool = False,
    ) -> ToolSchema:
        """Make ``fn`` a tool of the notebook's session (what ``@carnb.tool`` does).

        The schema comes from ``fn``'s signature and docstring unless ``parameters`` (a JSON
        Schema object) is given. ``share=True`` offers it to every session, a list of agent ids
        to the sessions bound to those agents; by default only the notebook's own proposals
        see it. Calls run in a worker thread, each bounded by its action's ``timeout_ms``, else
        ``timeout`` seconds, else ``Settings.tool_timeout``. Registering a name again replaces
        the tool. ``approve=True``: every proposal calling it waits for a supervisor's
        decision, or the approval ledger's when nobody supervises. Returns the schema
        registered."""
        _check_timeout(timeout)
        schema = schema_of_function(fn, name=name, description=description, parameters=parameters)
        if isinstance(share, bool):
            shared: bool | frozenset[str] = share
        elif isinstance(share, str):
            shared = frozenset([share])
        else:
            shared = frozenset(share)
            if not all(isinstance(a, str) for a in shared):
                raise CallerFault("share must be True, False or a list of agent ids")
        tool = LocalTool(schema, fn, timeout=timeout, share=shared, approve=bool(approve))
        self.call("notebook.tools.add", {"tool": tool}, timeout=30)
        return schema

    def unregister_tool(self, name: str) -> int:
        """Remove a notebook tool; returns how many were removed (0 or 1)."""
        removed: int = self.call("tools.unregister", {"name": name})["removed"]
        return removed

    # -- supervision -------------------------------------------------------------------------
    def add_supervisor(
        self,
        fn: Callable[[dict[str, Any]], Any],
        *,
        name: str | None = None,
        tools: Iterable[str] | None = None,
        sessions: Iterable[str] | None = None,
        min_reversibility: str | None = None,
        timeout: float = SUPERVISOR_FN_TIMEOUT_S,
    ) -> str:
        """Make ``fn(intent) -> decision`` a supervisor of every session's proposals (what
        ``carnb.supervisor`` does); returns its key. ``intent`` holds the full parameters;
        ``fn`` returns ``"allow"``, ``("deny", reason)``, ``{"kind": "escalate", "reason":
        ...}``; it runs in a worker thread, and an exception or no answer within ``timeout``
        seconds is a deny. The same name again replaces it."""
        wanted = (
            ("tools", None if tools is None else list(tools)),
            ("sessions", None if sessions is None else list(sessions)),
            ("min_reversibility", min_reversibility),
        )
        flt = Filter.parse({k: v for k, v in wanted if v is not None})
        if isinstance(timeout, bool) or not timeout > 0:
            raise CallerFault(f"timeout must be a positive number of seconds, got {timeout!r}")
        key = f"python:{name or getattr(fn, '__name__', 'supervisor')}"
        params = {"key": key, "judge": fn, "filter": flt, "timeout": timeout}
        self.call("notebook.supervisors.add", params, timeout=30)
        return key

    def remove_supervisor(self, key: str) -> bool:
        """Stop a supervisor ``add_supervisor`` made; what it left parked fails closed."""
        return bool(self.call("notebook.supervisors.remove", {"key": key}, timeout=30)["removed"])

    # -- models ------------------------------------------------------------------------------
    def register_model(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        default: bool = False,
        timeout: float | None = None,
        embed: Callable[..., Any] | None = None,
    ) -> str:
        """Make ``fn(request) -> reply`` (sync or ``async def``) a model of this server, so
        ``infer`` reaches it (what ``carnb.model`` does). ``name`` defaults to the function's
        name; the first model registered (or one with ``default=True``) answers requests that
        name no model. ``embed(texts) -> vectors`` serves ``embed``. Each call runs in a worker
        thread, bounded by ``timeout`` seconds (else ``Settings.model_timeout``). Registering
        a name again replaces the model. Returns the name."""
        if not callable(fn):
            raise CallerFault(f"a model must be callable, got {type(fn).__name__}")
        _check_timeout(timeout)
        if embed is not None and not callable(embed):
            raise CallerFault("embed must be callable (texts -> list of vectors)")
        model_name = name or getattr(fn, "__name__", None) or "model"
        params = {"name": model_name, "fn": fn, "embed": embed, "timeout": timeout}
        self.call("notebook.models.add", {**params, "default": default}, timeout=30)
        return model_name

    def unregister_model(self, name: str) -> bool:
        """Remove a model; ``False`` if there was none of that name."""
        return bool(self.call("notebook.models.remove", {"name": name}, timeout=30)["removed"])

    def models(self) -> dict[str, Any]:
        """``{default, models: [{name, kind, default, embed, timeout_s}]}``."""
        described: dict[str, Any] = self.call("models.list")
        return described

    def set_default_model(self, name: str) -> None:
        self.call("models.set_default", {"name": name})

    def infer(self, params: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        """``infer`` as the notebook's session, also returning the request the model was given
        (``{"reply": ..., "request": ...}``: its ``context`` is what ``context_query`` added)."""

        async def run() -> dict[str, Any]:
            with requests_served() as served:
                reply = await self._invoke("infer", params)
            return {"reply": reply, "request": served[-1] if served else None}

        result: dict[str, Any] = self.run_on_loop(run(), timeout=timeout)
        return result

    def chat(
        self, agent_id: str, prompt: str, *, timeout: float = 300, **extra: Any
    ) -> list[dict[str, Any]]:
        """``agents.chat`` as the notebook's session: send ``prompt`` to the attached agent and
        return its events (``{kind, delta, ...}``) once it says ``done`` or ``error``."""

        async def run() -> list[dict[str, Any]]:
            params = {"agent_id": agent_id, "prompt": prompt, **extra}
            ack = await self._invoke("agents.chat", params)
            wait = {"chat_id": ack["session_id"], "timeout": timeout}
            events: list[dict[str, Any]] = await self._invoke("notebook.chat.events", wait)
            return events

        events: list[dict[str, Any]] = self.run_on_loop(run(), timeout=timeout + 5)
        return events


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and (isinstance(timeout, bool) or not timeout > 0):
        raise CallerFault(f"timeout must be a positive number of seconds, got {timeout!r}")

"""carnb: host CAR (Common Agent Runtime) sessions inside a Jupyter kernel.

``%load_ext carnb`` starts the session server in the kernel; ``carnb.current()`` returns the
running :class:`carnb.runtime.Runtime`. Heavy imports happen only when the extension loads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from carnb._version import __version__
from carnb.errors import ContentRefused

if TYPE_CHECKING:
    from carnb.runtime import Runtime

__all__ = [
    "ContentRefused",
    "__version__",
    "current",
    "load_ipython_extension",
    "model",
    "supervisor",
    "tool",
    "unload_ipython_extension",
]

F = TypeVar("F", bound=Callable[..., Any])


def current() -> Runtime:
    """The runtime ``%load_ext carnb`` started in this kernel (raises if not loaded)."""
    from carnb.runtime import current as _current

    return _current()


@overload
def tool(fn: F, /) -> F: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: dict[str, Any] | None = None,
    share: bool | Iterable[str] = False,
    timeout: float | None = None,
    approve: bool = False,
) -> Callable[[F], F]: ...


def tool(
    fn: Any = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: dict[str, Any] | None = None,
    share: bool | Iterable[str] = False,
    timeout: float | None = None,
    approve: bool = False,
) -> Any:
    """Make a function a tool of the notebook's CAR session (``@carnb.tool`` or
    ``@carnb.tool(share=True, timeout=10)``); the function itself is returned unchanged.

    The schema comes from the signature and docstring (or ``parameters``, a JSON Schema
    object). ``share=True`` lets every session's proposals call it, a list of agent ids only
    the sessions bound to those agents. It runs in a worker thread, so it answers while a
    cell is busy. ``approve=True``: every call waits for a decision (a supervisor's, else the
    approval ledger's). Needs ``%load_ext carnb`` (or a started runtime) first.
    """

    def register(f: F) -> F:
        current().register_tool(
            f,
            name=name,
            description=description,
            parameters=parameters,
            share=share,
            timeout=timeout,
            approve=approve,
        )
        return f

    return register(fn) if fn is not None else register


def supervisor(
    fn: Any = None,
    /,
    *,
    name: str | None = None,
    tools: Iterable[str] | None = None,
    sessions: Iterable[str] | None = None,
    min_reversibility: str | None = None,
    timeout: float | None = None,
) -> Any:
    """Make a function decide over every session's proposals (``carnb.supervisor(fn,
    tools=["rm"])`` or ``@carnb.supervisor(min_reversibility="irreversible")``).

    ``fn(intent)`` gets the parked proposal (session, agent, actions with their full
    parameters) and returns ``"allow"``, ``("deny", reason)`` or ``("escalate", reason)`` (or
    ``{"kind": ..., "reason": ...}``). It runs in a worker thread; an exception or no answer
    within ``timeout`` seconds (default 10) is a deny. Returns ``fn`` unchanged.
    """

    def register(f: F) -> F:
        extra = {} if timeout is None else {"timeout": timeout}
        current().add_supervisor(
            f,
            name=name,
            tools=tools,
            sessions=sessions,
            min_reversibility=min_reversibility,
            **extra,
        )
        return f

    return register(fn) if fn is not None else register


@overload
def model(fn: F, /) -> F: ...


@overload
def model(
    *,
    name: str | None = None,
    default: bool = False,
    timeout: float | None = None,
    embed: Callable[..., Any] | None = None,
) -> Callable[[F], F]: ...


def model(
    fn: Any = None,
    /,
    *,
    name: str | None = None,
    default: bool = False,
    timeout: float | None = None,
    embed: Callable[..., Any] | None = None,
) -> Any:
    """Make a callable a model of this kernel's CAR server (``@carnb.model`` or
    ``carnb.model(fn, name="gpt", timeout=60)``); ``infer`` from any client reaches it.

    ``fn(request) -> reply`` (sync or ``async def``) receives the ``infer`` params (``messages``,
    ``tools``, ``system``, ``model``, and ``context``: the memory context ``context_query``
    rendered, also appended to the system prompt) and returns a string or ``{text, tool_calls:
    [{id?, name, arguments}], usage?: {input_tokens, output_tokens}, stop_reason?}``. Raise
    ``carnb.ContentRefused`` for a content refusal. It runs in a worker thread, bounded by
    ``timeout`` seconds. The function itself is returned unchanged.
    """

    def register(f: F) -> F:
        current().register_model(f, name=name, default=default, timeout=timeout, embed=embed)
        return f

    return register(fn) if fn is not None else register


def prices(table: dict[str, dict[str, float]]) -> None:
    """Set the price table costs are computed with: ``{model: {"input_per_mtok": 3.0,
    "output_per_mtok": 15.0}}`` in USD per million tokens; ``"*"`` prices any other model."""
    current().call("prices.set", {"prices": table})


def model_turns(*run_ids: str) -> Any:
    """The model turns of ``run_ids`` as a pandas DataFrame, one row per turn: input messages,
    output, tool calls, the run's outcome, tokens and cost (for evaluation)."""
    from carnb.kernel.cmd_observe import TURN_COLUMNS, model_turns
    from carnb.kernel.traceview import to_dataframe

    rt = current()
    return to_dataframe(model_turns(rt.call, run_ids), TURN_COLUMNS)


def load_ipython_extension(ipython: Any) -> None:
    from carnb.kernel.extension import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from carnb.kernel.extension import unload

    unload(ipython)

"""The declarative method table: what each method is called, who may call it, its params
schema, and whether it is answered inline or as a task.

Theory of operation. A handler is a top-level function ``(session, params, services)``:
- ``inline``: a plain function run at once by the connection reader, in frame order
  (microseconds: state, auth, fast memory calls). One that must wait (its graph is busy)
  returns a :class:`~carnb.app.schedule.Later` instead, and is answered when that coroutine
  ends.
- ``task``: a coroutine function, run as its own task so it never blocks other requests
  (it moves slow synchronous work to a worker thread itself).
``large_reply`` marks methods whose answer may be megabytes (traces, query results,
snapshots): the dispatcher serialises those replies on the bulk thread
(:mod:`carnb.app.bulk`). Every reply is held to the dispatcher's reply cap
(``ReplyTooLarge``, -32602, when over it).
Methods come in :class:`Area` objects, one per handler module, which also carry the area's
set-up. ``needs`` names the service (``memory``, ``runs``, ``browser``) a method depends on: a
method whose service the runtime did not provide is not offered, so ``capabilities.list`` and
``server.schema`` (both generated from the table) only list methods that work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from carnb.app.schedule import SessionQueues
from carnb.protocol.session import ClientSession

if TYPE_CHECKING:
    from carnb.app.services import Services

Role = Literal["operator", "agent", "owner", "host", "notebook"]
Mode = Literal["inline", "task"]
Params = dict[str, Any]
Handler = Callable[[ClientSession, Params, "Services"], Any]
ROLES: tuple[Role, ...] = ("operator", "agent", "owner", "host", "notebook")
MODES: tuple[Mode, ...] = ("inline", "task")


@dataclass(frozen=True, eq=False)
class Method:
    name: str
    fn: Handler
    mode: Mode = "inline"
    # who can call it: host-only methods need is_host; notebook ones the notebook's session
    role: Role = "operator"
    needs_handshake: bool = False
    needs: str | None = None  # the service it depends on; None: always offered
    # Its reply may be megabytes: it is serialised in a worker thread, not on the loop.
    large_reply: bool = False
    summary: str = ""
    params: Mapping[str, str] = field(default_factory=dict)  # name -> type and meaning
    result: str = ""
    # Params sent as a JSON array reach the handler as ``{array_params: [...]}`` (the real
    # daemon's ``tools.register`` takes a bare array); None: arrays are refused.
    array_params: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"bad mode {self.mode!r} for {self.name}")
        if self.role not in ROLES:
            raise ValueError(f"bad role {self.role!r} for {self.name}")
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))

    def describe(self) -> dict[str, Any]:
        """This method's entry in ``server.schema``."""
        return {
            "method": self.name,
            "role": self.role,
            "summary": self.summary,
            "params": dict(self.params),
            "result": self.result,
            "needs_handshake": self.needs_handshake,
        }

    def visible_to(self, session: ClientSession) -> bool:
        if self.role == "notebook":
            return session.kind == "notebook"
        return self.role != "host" or session.is_host


@dataclass(frozen=True, eq=False)
class Area:
    """One area of the application (memory, runs, browser, ...): its methods and its set-up,
    what it hooks into the services before the first call (listeners, session-close
    cleanup). The catalog lists the areas; nothing else registers a method or a hook."""

    name: str
    methods: tuple[Method, ...]
    setup: Callable[[Services], None] | None = None


class MethodTable:
    """The methods one server offers, by name."""

    def __init__(self, methods: Iterable[Method] = ()) -> None:
        self._methods: dict[str, Method] = {}
        for method in methods:
            self.add(method)

    def add(self, method: Method) -> None:
        if method.name in self._methods:
            raise ValueError(f"method {method.name} is declared twice")
        self._methods[method.name] = method

    def get(self, name: str) -> Method | None:
        return self._methods.get(name)

    def __iter__(self) -> Iterator[Method]:
        return iter(sorted(self._methods.values(), key=lambda m: m.name))

    def __contains__(self, name: object) -> bool:
        return name in self._methods


def off_loop(methods: Iterable[Method], needs: str) -> list[Method]:
    """``methods`` with every inline handler of the ``needs`` service run in a worker thread,
    each session's calls one after the other (:class:`~carnb.app.schedule.SessionQueues`)."""
    queues = SessionQueues()
    out = []
    for method in methods:
        if method.needs == needs and method.mode == "inline":
            method = replace(method, fn=queues.threaded(method.fn), mode="task")
        out.append(method)
    return out

"""``ClientSession``: the state of one connection (or of the notebook's socketless session).

Every field docs/protocol.md names lives here. Changes go through :meth:`ClientSession.update`
(or the narrow helpers), which notifies listeners with a snapshot, so the notebook panel can
show each change live. The session holds the server layer's resources (graphs, browser slot)
as opaque objects: this module imports nothing but the standard library.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from carnb.errors import StateFull
from carnb.protocol.jsonrpc import encoded_size

log = logging.getLogger("carnb.protocol.session")

_ids = itertools.count(1)

MAX_STATE_KEYS = 10_000
# Per session: its state values, as compact UTF-8 JSON, take at most this many bytes, whichever
# path writes them (state.set, a proposal's state_write, the notebook).
STATE_BUDGET_BYTES = 8 * 1024 * 1024

Listener = Callable[["ClientSession", dict[str, Any]], None]

# Fields whose change is an event for the panel.
WATCHED = (
    "authenticated",
    "is_host",
    "agent_id",
    "memory_namespace",
    "current_run_id",
    "protocol_version",
    "browser_state",
    "browser_url",
    "fact_count",
    "run_turns",
)


def new_client_id(prefix: str = "s") -> str:
    return f"{prefix}{next(_ids)}"


@dataclass(eq=False)
class ClientSession:
    client_id: str = field(default_factory=new_client_id)
    kind: str = "socket"  # "socket" or "notebook"
    peer: str = ""
    authenticated: bool = False
    is_host: bool = False
    agent_id: str | None = None
    # False when agent_id was bound with the host token rather than the agent's own token.
    agent_proven: bool = True
    memory_namespace: str | None = None
    current_run_id: str | None = None
    run_turns: int = 0  # turns recorded in the current run
    fact_count: int | None = None  # facts in the effective graph (None until first known)
    protocol_version: int | None = None
    capabilities: list[str] = field(default_factory=list)
    client_version: str | None = None
    connected_at: float = field(default_factory=time.time)
    # Opaque resources owned by the server layer.
    memgine: Any = None  # the session's own ephemeral graph (created lazily)
    bound_memgine: Any = None  # agent or namespace graph, when bound
    browser: Any = None  # the lazy browser slot
    browser_state: str = "not launched"
    browser_url: str | None = None
    # Per-session key/value state: (tenant or "", key) -> JSON value, and each value's size in
    # bytes of JSON (the server keeps their sum under a budget).
    state: dict[tuple[str, str], Any] = field(default_factory=dict)
    state_sizes: dict[tuple[str, str], int] = field(default_factory=dict)
    # memory.update_status: the proactive memory agent's private status, by tenant ("global"
    # without one); never a graph fact, so no retrieval can return it.
    memory_status: dict[str, str] = field(default_factory=dict)
    # How to push a notification to this session's peer (set by the server).
    notifier: Callable[[str, Any], None] | None = None
    # The server's request channel to this session's peer (tools.execute; set by the server).
    callbacks: Any = None
    closed: bool = False
    _listeners: list[Listener] = field(default_factory=list, repr=False)

    # -- derived -------------------------------------------------------------------------
    @property
    def handshaken(self) -> bool:
        return self.protocol_version is not None

    @property
    def role(self) -> str:
        """The caller role used for method filtering: host, agent or operator."""
        if self.is_host:
            return "host"
        if self.agent_id is not None:
            return "agent"
        return "operator"

    @property
    def effective_memgine(self) -> Any:
        """Namespace or agent graph if bound, else the session's own ephemeral graph."""
        return self.bound_memgine if self.bound_memgine is not None else self.memgine

    # -- change notification -------------------------------------------------------------
    def add_listener(self, fn: Listener) -> Callable[[], None]:
        self._listeners.append(fn)

        def remove() -> None:
            if fn in self._listeners:
                self._listeners.remove(fn)

        return remove

    def update(self, **changes: Any) -> bool:
        """Set fields; notify listeners once if any watched field changed."""
        changed = False
        for name, value in changes.items():
            if not hasattr(self, name) or name.startswith("_"):
                raise AttributeError(f"ClientSession has no field {name!r}")
            if getattr(self, name) != value:
                setattr(self, name, value)
                changed = changed or name in WATCHED
        if changed:
            self.emit()
        return changed

    def emit(self) -> None:
        if not self._listeners:  # nobody watching (e.g. `serve`): skip building a snapshot
            return
        snap = self.snapshot()
        for fn in list(self._listeners):
            try:
                fn(self, snap)
            except Exception:  # a broken view must not break the session
                log.exception("session listener failed")

    def snapshot(self) -> dict[str, Any]:
        """Plain data for views: never contains a token."""
        graph = self.effective_memgine
        return {
            "client_id": self.client_id,
            "kind": self.kind,
            "peer": self.peer,
            "authenticated": self.authenticated,
            "is_host": self.is_host,
            "role": self.role,
            "agent_id": self.agent_id,
            "memory_namespace": self.memory_namespace,
            "graph": _graph_label(self),
            "graph_persistent": bool(getattr(graph, "persistent", False)),
            "current_run_id": self.current_run_id,
            "run_turns": self.run_turns,
            "fact_count": self.fact_count,
            "protocol_version": self.protocol_version,
            "client_version": self.client_version,
            "browser_state": self.browser_state,
            "browser_url": self.browser_url,
            "connected_at": self.connected_at,
            "closed": self.closed,
        }

    # -- state.* -------------------------------------------------------------------------
    def state_set(self, key: str, value: Any, tenant: str | None = None) -> None:
        """Store ``value`` under ``(tenant, key)``, or raise :class:`StateFull` and store
        nothing when it would take the session past :data:`MAX_STATE_KEYS` keys or
        :data:`STATE_BUDGET_BYTES` bytes of JSON. The one way state is written."""
        slot = (tenant or "", key)
        if slot not in self.state and len(self.state) >= MAX_STATE_KEYS:
            raise StateFull(
                f"key: this session already holds {MAX_STATE_KEYS} keys; reuse keys or "
                "open a new session"
            )
        size = encoded_size(value)
        used = self.state_bytes(excluding=(tenant, key))
        if used + size > STATE_BUDGET_BYTES:
            raise StateFull(
                f"value: {size} bytes of JSON would bring this session's state to {used + size} "
                f"bytes; the budget is {STATE_BUDGET_BYTES} bytes per session (overwrite or drop "
                "keys, or keep big data in memory.* or a file)",
                data={"bytes": size, "used": used, "budget": STATE_BUDGET_BYTES},
            )
        self.state[slot] = value
        self.state_sizes[slot] = size

    def state_bytes(self, excluding: tuple[str | None, str] | None = None) -> int:
        """Bytes of JSON the session's values take (minus one ``(tenant, key)``'s share)."""
        total = sum(self.state_sizes.values())
        if excluding is not None:
            tenant, key = excluding
            total -= self.state_sizes.get((tenant or "", key), 0)
        return total

    def state_get(self, key: str, tenant: str | None = None) -> Any:
        return self.state.get((tenant or "", key))

    def state_exists(self, key: str, tenant: str | None = None) -> bool:
        return (tenant or "", key) in self.state

    def state_keys(self, tenant: str | None = None) -> list[str]:
        t = tenant or ""
        return [k for (tn, k) in self.state if tn == t]

    def state_snapshot(self, tenant: str | None = None) -> dict[str, Any]:
        t = tenant or ""
        return {k: v for (tn, k), v in self.state.items() if tn == t}


def _graph_label(session: ClientSession) -> str:
    if session.memory_namespace is not None and session.bound_memgine is not None:
        return f"namespace:{session.memory_namespace}"
    if session.agent_id is not None and session.bound_memgine is not None:
        return f"agent:{session.agent_id}"
    return "ephemeral"

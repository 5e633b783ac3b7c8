"""What the application needs from the engines it is given (docs/architecture.md).

The application never imports memgine, runs or browser: the composition root
(``carnb.runtime``) hands it objects that satisfy these protocols, and the handlers are typed
against them. Each lists only the methods the application calls.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from carnb.protocol.session import ClientSession

Record = dict[str, Any]


class Graph(Protocol):
    """One memory graph (a memgine engine): the calls behind ``memory.*``."""

    def add_fact(
        self,
        subject: str,
        body: str,
        kind: str | None = ...,
        *,
        fact_id: str | None = ...,
        tags: list[str] | None = ...,
        source: str | None = ...,
        confidence: float | None = ...,
        supersedes: list[str] | None = ...,
        provenance: Record | None = ...,
    ) -> int: ...
    def query(self, query: str, k: int = ..., *, explain: bool = ...) -> list[Record]: ...
    def history(self, subject: str | None = ..., fact_id: str | None = ...) -> list[Record]: ...
    def fact_count(self) -> int: ...
    def fact_count_if_idle(self) -> int | None: ...
    def delete(self, fact_id: str) -> Record: ...
    def build_context(self, query: str, model_context_window: int | None = ...) -> str: ...
    def build_context_fast(self, query: str, model_context_window: int | None = ...) -> str: ...
    def persist(self, path: Path) -> int: ...
    def load(self, path: Path, provenance: Record | None = ...) -> int: ...
    def consolidate(self) -> Record: ...
    def intervene(self, request: Record) -> Record: ...
    def evaluate(self, cases: Any) -> Record: ...
    def close(self) -> None: ...


class MemoryProvider(Protocol):
    """Where graphs come from: per agent, per namespace, or a session's own."""

    memory_dir: Path

    @property
    def remote(self) -> bool:
        """Whether agent and namespace graphs live in a database server (every read of one is
        a network round trip, so the loop never makes one)."""
        ...

    def agent_graph(self, agent_id: str) -> Graph: ...
    def namespace_graph(self, namespace: str) -> Graph: ...
    def ephemeral(self) -> Graph: ...
    def resolve_user_path(
        self, path: str, *, method: str, session: ClientSession | None = None
    ) -> Path: ...


RunListener = Callable[[Record], None]


class RunCaller(Protocol):
    """Who asks the run store: a session, or a narrower view of one (see ``runs.writer``)."""

    @property
    def client_id(self) -> str: ...
    @property
    def agent_id(self) -> str | None: ...
    @property
    def is_host(self) -> bool: ...


class RunLog(Protocol):
    """The durable run store behind ``runs.*``; a session is the caller it authorises."""

    def add_listener(self, fn: RunListener) -> Callable[[], None]: ...
    def start(
        self,
        caller: ClientSession,
        *,
        intent: object,
        agent_id: object = ...,
        agent_name: object = ...,
        idempotency_key: object = ...,
    ) -> Record: ...
    def record_turns(self, caller: RunCaller, run_id: str, turns: list[Any]) -> Record: ...
    def record_model_turn(self, caller: RunCaller, run_id: str, turn: Record) -> Record: ...
    def complete(self, caller: RunCaller, run_id: str, outcome: Record) -> Record: ...
    def cancel(self, caller: ClientSession, run_id: str, reason: str = ...) -> Record: ...
    def end_session_runs(self, session_id: str) -> list[str]: ...
    def authorize(self, caller: ClientSession, run_id: str, action: str) -> Record | None: ...
    def get_trace(
        self,
        caller: ClientSession,
        run_id: str,
        *,
        after: int | None = ...,
        limit: int | None = ...,
    ) -> Record: ...
    def list_runs(
        self, caller: ClientSession, agent_id: str, *, limit: int | None = ...
    ) -> Record: ...


class BrowserSlot(Protocol):
    """One session's lazy browser context."""

    def add_listener(self, fn: Callable[[Record], Any]) -> None: ...
    async def run(self, script: object, *, width: object = ..., height: object = ...) -> Record: ...
    async def close(self) -> dict[str, bool]: ...


class BrowserPool(Protocol):
    """Hands out browser slots; one Chromium for all of them."""

    def slot(self, owner: str = ...) -> BrowserSlot: ...
    async def close(self) -> None: ...

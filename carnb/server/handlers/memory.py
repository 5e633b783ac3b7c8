"""``memory.*`` handlers: validate params, pick the session's effective graph, call memgine.

Theory of operation. Fast calls (add, query, count, delete: about a millisecond) run inline on
the host loop, in frame order. Calls that may take tens of milliseconds to seconds (context
assembly, persist, load, consolidate) run in a worker thread. The engine has its own lock, so a
fast call on the loop would *block the loop* while a slow call holds that graph; to prevent
that, every graph also has an asyncio lock that slow calls hold on the loop for their whole
duration. A fast call whose graph is busy does not run inline: it returns a
:class:`~carnb.server.dispatch.Later` and waits for the lock as a task, so other sessions and
other graphs carry on.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any

from carnb.protocol.session import ClientSession
from carnb.server.dispatch import Later, MethodTable
from carnb.server.params import (
    opt_int,
    opt_number,
    opt_str,
    opt_str_list,
    req_str,
)
from carnb.server.services import Services

MAX_K = 1000

_busy: weakref.WeakKeyDictionary[Any, asyncio.Lock] = weakref.WeakKeyDictionary()


def graph_lock(g: Any) -> asyncio.Lock:
    lock = _busy.get(g)
    if lock is None:
        lock = _busy[g] = asyncio.Lock()
    return lock


def fast(g: Any, work: Callable[[], Any]) -> Any:
    """Run ``work`` now if the graph is free, else once the slow call holding it ends."""
    lock = graph_lock(g)
    if not lock.locked():
        return work()

    async def wait() -> Any:
        async with lock:
            return work()

    return Later(wait())


async def slow(g: Any, work: Callable[..., Any], *args: Any) -> Any:
    """Run ``work(*args)`` in a worker thread while holding the graph's loop-side lock."""
    async with graph_lock(g):
        return await asyncio.to_thread(work, *args)


def graph(s: ClientSession, svc: Services) -> Any:
    """The graph every memory method acts on (docs/protocol.md, "Session state")."""
    if s.bound_memgine is not None:
        return s.bound_memgine
    return svc.sessions.ensure_ephemeral(s)


def publish_count(s: ClientSession, svc: Services, g: Any, count: int) -> None:
    """Tell every session on this graph (and so the panel) its new fact count."""
    if s.effective_memgine is g:
        s.update(fact_count=count)
    if g is s.memgine:
        return  # an ephemeral graph has one session
    for other in svc.sessions:
        if other is not s and other.effective_memgine is g:
            other.update(fact_count=count)


def register(table: MethodTable, services: Services) -> None:
    if services.memory is None:
        return
    m = table.method

    @m(
        "memory.add_fact",
        summary="Add a fact to the session's graph",
        params={
            "subject": "string",
            "body": "string",
            "kind": "string? (pattern)",
            "fact_id": "string?",
            "tags": "string[]?",
            "source": "string? (user)",
            "confidence": "number?",
        },
        result="integer: valid fact count after the write",
    )
    def add_fact(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
        g = graph(s, svc)
        args = (
            req_str(p, "subject"),
            req_str(p, "body", allow_empty=True),
            opt_str(p, "kind", "pattern") or "pattern",
        )
        kw = {
            "fact_id": opt_str(p, "fact_id"),
            "tags": opt_str_list(p, "tags"),
            "source": opt_str(p, "source", "user") or "user",
            "confidence": opt_number(p, "confidence"),
        }

        def work() -> int:
            count = g.add_fact(*args, **kw)
            publish_count(s, svc, g, count)
            return count

        return fast(g, work)

    @m(
        "memory.query",
        summary="Facts relevant to a query, best first",
        params={"query": "string", "k": "integer? (5)"},
        result="[{fact_id, subject, body, kind, confidence, tags, source}]",
    )
    def query(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
        text = req_str(p, "query", allow_empty=True)
        k = opt_int(p, "k", 5, maximum=MAX_K)
        assert k is not None
        if k <= 0:
            return []
        g = graph(s, svc)
        return fast(g, lambda: g.query(text, k))

    @m("memory.fact_count", summary="Valid facts in the session's graph", result="integer")
    def fact_count(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
        g = graph(s, svc)

        def work() -> int:
            count = g.fact_count()
            if s.fact_count != count:
                s.update(fact_count=count)
            return count

        return fast(g, work)

    def _context(unranked: bool) -> Any:
        async def handler(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
            text = req_str(p, "query", allow_empty=True)
            window = opt_int(p, "model_context_window", None, minimum=0)
            g = graph(s, svc)
            build = g.build_context_fast if unranked else g.build_context
            return await slow(g, build, text, window)

        return handler

    table.method(
        "memory.build_context",
        mode="async",
        summary="Relevant facts rendered as a prompt section within a token budget",
        params={"query": "string", "model_context_window": "integer?"},
        result="string",
    )(_context(False))
    table.method(
        "memory.build_context_fast",
        mode="async",
        summary="Context sections without ranking (creation order)",
        params={"query": "string", "model_context_window": "integer?"},
        result="string",
    )(_context(True))

    @m(
        "memory.persist",
        mode="async",
        summary="Write the graph as JSON under <home>/memory/",
        params={"path": "string (relative to <home>/memory/)"},
        result="integer: facts written",
    )
    async def persist(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
        assert svc.memory is not None
        path = svc.memory.resolve_user_path(req_str(p, "path"), method="memory.persist")
        g = graph(s, svc)
        return await slow(g, g.persist, path)

    @m(
        "memory.load",
        mode="async",
        summary="Replace the graph with a JSON file under <home>/memory/",
        params={"path": "string (relative to <home>/memory/)"},
        result="integer: facts loaded",
    )
    async def load(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
        assert svc.memory is not None
        path = svc.memory.resolve_user_path(req_str(p, "path"), method="memory.load")
        g = graph(s, svc)
        count = await slow(g, g.load, path)
        publish_count(s, svc, g, g.fact_count())  # back on the host loop
        return count

    @m(
        "memory.delete",
        summary="Delete a fact, its edges and index entries",
        params={"id": "string"},
        result="{id, deleted, kind, fact_count}",
    )
    def delete(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
        g = graph(s, svc)
        fact_id = req_str(p, "id")

        def work() -> Any:
            result = g.delete(fact_id)
            publish_count(s, svc, g, result["fact_count"])
            return result

        return fast(g, work)

    @m(
        "memory.consolidate",
        mode="async",
        summary="Merge exact duplicates and report same-subject contradictions",
        result="{duplicates_merged, contradictions_found, fact_count}",
    )
    async def consolidate(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
        g = graph(s, svc)
        report = await slow(g, g.consolidate)
        publish_count(s, svc, g, report["fact_count"])
        return report

"""``memory.*`` handlers: validate params, pick the session's effective graph, call memgine.

Theory of operation. Fast calls (add, query, count, delete: about a millisecond) run inline on
the host loop, in frame order. Calls that may take tens of milliseconds to seconds (context
assembly, persist, load, consolidate) run in a worker thread. The engine has its own lock, so a
fast call on the loop would *block the loop* while a slow call holds that graph; to prevent
that, every graph also has an asyncio lock that slow calls hold on the loop for their whole
duration. A fast call whose graph is busy does not run inline: it returns a
:class:`~carnb.server.methods.Later` and waits for the lock as a task, so other sessions and
other graphs carry on.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from carnb.protocol.session import ClientSession
from carnb.server.methods import Later, Method, Params
from carnb.server.params import (
    opt_int,
    opt_number,
    opt_str,
    opt_str_list,
    req_str,
)
from carnb.server.ports import Graph, Record
from carnb.server.services import Services

T = TypeVar("T")

MAX_K = 100  # memory.query: facts may be 1 MiB each; replies are capped too
QUERY_INLINE_K = 5  # a query for more facts than this runs in a worker thread

_busy: weakref.WeakKeyDictionary[Graph, asyncio.Lock] = weakref.WeakKeyDictionary()


def graph_lock(g: Graph) -> asyncio.Lock:
    lock = _busy.get(g)
    if lock is None:
        lock = _busy[g] = asyncio.Lock()
    return lock


def fast(g: Graph, work: Callable[[], T]) -> T | Later:
    """Run ``work`` now if the graph is free, else once the slow call holding it ends."""
    lock = graph_lock(g)
    if not lock.locked():
        return work()

    async def wait() -> T:
        async with lock:
            return work()

    return Later(wait())


async def slow(g: Graph, work: Callable[..., T], *args: Any) -> T:
    """Run ``work(*args)`` in a worker thread while holding the graph's loop-side lock."""
    async with graph_lock(g):
        return await asyncio.to_thread(work, *args)


def graph(s: ClientSession, svc: Services) -> Graph:
    """The graph every memory method acts on (docs/protocol.md, "Session state")."""
    bound: Graph | None = s.bound_memgine
    if bound is not None:
        return bound
    own = svc.sessions.ensure_ephemeral(s)
    assert own is not None  # the table offers memory.* only with a memory service
    return own


def publish_count(s: ClientSession, svc: Services, g: Graph, count: int) -> None:
    """Tell every session on this graph (and so the panel) its new fact count."""
    if s.effective_memgine is g:
        s.update(fact_count=count)
    if g is s.memgine:
        return  # an ephemeral graph has one session
    for other in svc.sessions:
        if other is not s and other.effective_memgine is g:
            other.update(fact_count=count)


def add_fact(s: ClientSession, p: Params, svc: Services) -> int | Later:
    g = graph(s, svc)
    subject = req_str(p, "subject")
    body = req_str(p, "body", allow_empty=True)
    kind = opt_str(p, "kind", "pattern") or "pattern"
    fact_id = opt_str(p, "fact_id")
    tags = opt_str_list(p, "tags")
    source = opt_str(p, "source", "user") or "user"
    confidence = opt_number(p, "confidence")

    def work() -> int:
        count = g.add_fact(
            subject,
            body,
            kind,
            fact_id=fact_id,
            tags=tags,
            source=source,
            confidence=confidence,
        )
        publish_count(s, svc, g, count)
        return count

    return fast(g, work)


def query(s: ClientSession, p: Params, svc: Services) -> list[Record] | Later:
    text = req_str(p, "query", allow_empty=True)
    k = opt_int(p, "k", 5, maximum=MAX_K)
    assert k is not None
    if k <= 0:
        return []
    g = graph(s, svc)
    if k > QUERY_INLINE_K:  # up to 100 facts of up to 1 MiB: read them in a worker thread
        return Later(slow(g, g.query, text, k))
    return fast(g, lambda: g.query(text, k))


def fact_count(s: ClientSession, p: Params, svc: Services) -> int | Later:
    g = graph(s, svc)

    def work() -> int:
        count = g.fact_count()
        if s.fact_count != count:
            s.update(fact_count=count)
        return count

    return fast(g, work)


async def build_context(s: ClientSession, p: Params, svc: Services) -> str:
    text = req_str(p, "query", allow_empty=True)
    window = opt_int(p, "model_context_window", None, minimum=0)
    g = graph(s, svc)
    return await slow(g, g.build_context, text, window)


async def build_context_fast(s: ClientSession, p: Params, svc: Services) -> str:
    text = req_str(p, "query", allow_empty=True)
    window = opt_int(p, "model_context_window", None, minimum=0)
    g = graph(s, svc)
    return await slow(g, g.build_context_fast, text, window)


async def persist(s: ClientSession, p: Params, svc: Services) -> int:
    assert svc.memory is not None
    path = svc.memory.resolve_user_path(req_str(p, "path"), method="memory.persist", session=s)
    g = graph(s, svc)
    return await slow(g, g.persist, path)


async def load(s: ClientSession, p: Params, svc: Services) -> int:
    assert svc.memory is not None
    path = svc.memory.resolve_user_path(req_str(p, "path"), method="memory.load", session=s)
    g = graph(s, svc)
    count = await slow(g, g.load, path)
    publish_count(s, svc, g, g.fact_count())  # back on the host loop
    return count


def delete(s: ClientSession, p: Params, svc: Services) -> Record | Later:
    g = graph(s, svc)
    fact_id = req_str(p, "id")

    def work() -> Record:
        result = g.delete(fact_id)
        publish_count(s, svc, g, result["fact_count"])
        return result

    return fast(g, work)


async def consolidate(s: ClientSession, p: Params, svc: Services) -> Record:
    g = graph(s, svc)
    report = await slow(g, g.consolidate)
    publish_count(s, svc, g, report["fact_count"])
    return report


_CONTEXT_PARAMS = {"query": "string", "model_context_window": "integer?"}
_PATH_PARAMS = {"path": "string (relative to <home>/memory/)"}

METHODS = (
    Method(
        "memory.add_fact",
        add_fact,
        needs="memory",
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
    ),
    Method(
        "memory.query",
        query,
        needs="memory",
        large_reply=True,
        summary="Facts relevant to a query, best first",
        params={"query": "string", "k": "integer? (5)"},
        result="[{fact_id, subject, body, kind, confidence, tags, source}]",
    ),
    Method(
        "memory.fact_count",
        fact_count,
        needs="memory",
        summary="Valid facts in the session's graph",
        result="integer",
    ),
    Method(
        "memory.build_context",
        build_context,
        mode="task",
        needs="memory",
        large_reply=True,
        summary="Relevant facts rendered as a prompt section within a token budget",
        params=_CONTEXT_PARAMS,
        result="string",
    ),
    Method(
        "memory.build_context_fast",
        build_context_fast,
        mode="task",
        needs="memory",
        large_reply=True,
        summary="Context sections without ranking (creation order)",
        params=_CONTEXT_PARAMS,
        result="string",
    ),
    Method(
        "memory.persist",
        persist,
        mode="task",
        needs="memory",
        summary="Write the graph as JSON under <home>/memory/",
        params=_PATH_PARAMS,
        result="integer: facts written",
    ),
    Method(
        "memory.load",
        load,
        mode="task",
        needs="memory",
        summary="Replace the graph with a JSON file under <home>/memory/",
        params=_PATH_PARAMS,
        result="integer: facts loaded",
    ),
    Method(
        "memory.delete",
        delete,
        needs="memory",
        summary="Delete a fact, its edges and index entries",
        params={"id": "string"},
        result="{id, deleted, kind, fact_count}",
    ),
    Method(
        "memory.consolidate",
        consolidate,
        mode="task",
        needs="memory",
        summary="Merge exact duplicates and report same-subject contradictions",
        result="{duplicates_merged, contradictions_found, fact_count}",
    ),
)

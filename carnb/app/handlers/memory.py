"""``memory.*`` handlers: validate params, pick the session's effective graph, call memgine.

Theory of operation. The server loop never waits for a graph's database: a persistent graph's
file may be locked by another process (another kernel on the same data directory) and any call
may touch a big fact or load a graph's vocabulary. So every call on an agent or namespace graph,
every query and delete, and every large write runs in a worker thread. Only cheap calls on a
session's own in-memory graph (small writes, the count) run inline on the loop.

Each graph has a :class:`~carnb.app.schedule.Gate`: its calls run one at a time in arrival
order, whether inline or in a thread, so a reply is sent only once its write is committed and
every later call sees it. A call that has to wait (its graph is busy, or it goes to a thread)
is a :class:`~carnb.app.schedule.Later`; the work starts at once as a task, so frame order is kept
even before the reader awaits the reply, and a caller that leaves does not cut a write short.
"""

from __future__ import annotations

import secrets

from carnb.app.metering import Query
from carnb.app.methods import Method, Params
from carnb.app.params import (
    opt_bool,
    opt_int,
    opt_number,
    opt_str,
    opt_str_list,
    req_list,
    req_str,
)
from carnb.app.ports import Graph, Record
from carnb.app.schedule import Later, in_turn, on_graph, then
from carnb.app.services import Services
from carnb.config import INLINE_WRITE_CHARS, MAX_QUERY_K, MAX_STATUS_CHARS
from carnb.errors import InvalidParams
from carnb.memgine.maintain import DEFAULT_RECENT, MAX_RECENT, mine
from carnb.protocol.session import ClientSession

# The action a provenance names for an edit made in the notebook.
NOTEBOOK_EDIT = "edited in the notebook"


def own_graph(s: ClientSession) -> bool:
    """Whether the session works on its own in-memory graph (no other process shares it)."""
    return s.bound_memgine is None


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


def written_by(s: ClientSession, action: str = "add") -> Record:
    """Who a session's write comes from, as the server knows it (never a client field): the
    session's kind and id, its role, its agent, its current run and turn, and what it did
    (``add``, ``edit``, ``load``, ``save_knowledge``...; a notebook's edit is "edited in the
    notebook")."""
    if action == "edit" and s.kind == "notebook":
        action = NOTEBOOK_EDIT
    out: Record = {
        "session_kind": s.kind, "session_id": s.client_id, "role": s.role, "action": action,
    }  # fmt: skip
    if s.agent_id is not None:
        out["agent_id"] = s.agent_id
    if s.current_run_id is not None:
        out["run_id"] = s.current_run_id
        out["turn"] = s.run_turns
    return out


def add_fact(s: ClientSession, p: Params, svc: Services) -> int | Later:
    g = graph(s, svc)
    subject = req_str(p, "subject")
    body = req_str(p, "body", allow_empty=True)
    kind = opt_str(p, "kind", "pattern") or "pattern"
    fact_id = opt_str(p, "fact_id")
    tags = opt_str_list(p, "tags")
    source = opt_str(p, "source", "user") or "user"
    confidence = opt_number(p, "confidence")
    supersedes = opt_str_list(p, "supersedes")
    provenance = written_by(s)

    def work() -> int:
        return g.add_fact(
            subject,
            body,
            kind,
            fact_id=fact_id,
            tags=tags,
            source=source,
            confidence=confidence,
            supersedes=supersedes,
            provenance=provenance,
        )

    def publish(count: int) -> int:
        publish_count(s, svc, g, count)
        return count

    small = len(subject) + len(body) <= INLINE_WRITE_CHARS
    return then(on_graph(g, work, thread=not (own_graph(s) and small)), publish)


def query(s: ClientSession, p: Params, svc: Services) -> list[Record] | Later:
    text = req_str(p, "query", allow_empty=True)
    k = opt_int(p, "k", 5, maximum=MAX_QUERY_K)
    assert k is not None
    explain = opt_bool(p, "explain", False)
    if k <= 0:
        return []
    g = graph(s, svc)
    return on_graph(g, lambda: g.query(text, k, explain=explain))


def history(s: ClientSession, p: Params, svc: Services) -> list[Record] | Later:
    subject = opt_str(p, "subject")
    fact_id = opt_str(p, "fact_id")
    if (subject is None) == (fact_id is None):
        raise InvalidParams("memory.history takes exactly one of subject and fact_id")
    g = graph(s, svc)
    return on_graph(g, lambda: g.history(subject=subject, fact_id=fact_id))


def fact_count(s: ClientSession, p: Params, svc: Services) -> int | Later:
    g = graph(s, svc)

    def publish(count: int) -> int:
        if s.fact_count != count:
            s.update(fact_count=count)
        return count

    return then(on_graph(g, g.fact_count, thread=not own_graph(s)), publish)


async def build_context(s: ClientSession, p: Params, svc: Services) -> str:
    text = req_str(p, "query", allow_empty=True)
    window = opt_int(p, "model_context_window", None, minimum=0)
    g = graph(s, svc)
    return await in_turn(g, g.build_context, text, window)


async def build_context_fast(s: ClientSession, p: Params, svc: Services) -> str:
    text = req_str(p, "query", allow_empty=True)
    window = opt_int(p, "model_context_window", None, minimum=0)
    g = graph(s, svc)
    return await in_turn(g, g.build_context_fast, text, window)


async def persist(s: ClientSession, p: Params, svc: Services) -> int:
    assert svc.memory is not None
    path = svc.memory.resolve_user_path(req_str(p, "path"), method="memory.persist", session=s)
    g = graph(s, svc)
    return await in_turn(g, g.persist, path)


async def load(s: ClientSession, p: Params, svc: Services) -> int:
    assert svc.memory is not None
    path = svc.memory.resolve_user_path(req_str(p, "path"), method="memory.load", session=s)
    g = graph(s, svc)
    count = await in_turn(g, g.load, path, written_by(s, "load"))
    publish_count(s, svc, g, await in_turn(g, g.fact_count))  # others may have written meanwhile
    return count


def delete(s: ClientSession, p: Params, svc: Services) -> Record | Later:
    g = graph(s, svc)
    fact_id = req_str(p, "id")
    if fact_id.startswith(STATUS_PREFIX):
        gone = s.memory_status.pop(fact_id[len(STATUS_PREFIX) :], None) is not None
        return {"id": fact_id, "deleted": gone, "kind": "status", "fact_count": s.fact_count}

    def publish(result: Record) -> Record:
        publish_count(s, svc, g, result["fact_count"])
        return result

    provenance = written_by(s, "delete")
    return then(on_graph(g, lambda: g.delete(fact_id, provenance)), publish)


def restore(s: ClientSession, p: Params, svc: Services) -> Record | Later:
    g = graph(s, svc)
    fact_id = req_str(p, "id")
    provenance = written_by(s, "restore")

    def publish(result: Record) -> Record:
        publish_count(s, svc, g, result["fact_count"])
        return result

    return then(on_graph(g, lambda: g.restore(fact_id, provenance)), publish)


def diff(s: ClientSession, p: Params, svc: Services) -> Record | Later:
    since = opt_number(p, "since")
    if since is None:
        raise InvalidParams("memory.diff needs since (seconds since the epoch)")
    g = graph(s, svc)
    return on_graph(g, lambda: g.diff(since))


def edit(s: ClientSession, p: Params, svc: Services) -> Record | Later:
    g = graph(s, svc)
    fact_id = req_str(p, "id")
    body = req_str(p, "body", allow_empty=True)
    subject = opt_str(p, "subject")
    provenance = written_by(s, "edit")

    def publish(result: Record) -> Record:
        publish_count(s, svc, g, result["fact_count"])
        return result

    return then(on_graph(g, lambda: g.edit(fact_id, body, subject, provenance)), publish)


def pin(s: ClientSession, p: Params, svc: Services) -> Record | Later:
    g = graph(s, svc)
    fact_id = req_str(p, "id")
    pinned = opt_bool(p, "pinned", True)
    return on_graph(g, lambda: g.pin(fact_id, pinned))


def utility_get(s: ClientSession, p: Params, svc: Services) -> Record | Later:
    g = graph(s, svc)
    return on_graph(g, g.utility_get)


def utility_set(s: ClientSession, p: Params, svc: Services) -> Record | Later:
    g = graph(s, svc)
    changes = {
        "utility_weight": p.get("utility_weight"),
        "utility_exploration": p.get("utility_exploration"),
    }
    return on_graph(g, lambda: g.utility_set(changes))


async def consolidate(s: ClientSession, p: Params, svc: Services) -> Record:
    g = graph(s, svc)
    report = await in_turn(g, g.consolidate)
    publish_count(s, svc, g, report["fact_count"])
    return report


# -- proactive memory (the reference daemon's shapes) --------------------------------------

STATUS_PREFIX = "proactive-status:"
# memory.save_*'s confidence may be a label; stored as this number.
CONFIDENCE_LABELS = {"high": 0.9, "medium": 0.6, "low": 0.3}
TENANT_TAG = "tenant:"


def save_knowledge(s: ClientSession, p: Params, svc: Services) -> Record | Later:
    return _save(s, p, svc, "knowledge")


def save_procedural(s: ClientSession, p: Params, svc: Services) -> Record | Later:
    return _save(s, p, svc, "procedural")


def _save(s: ClientSession, p: Params, svc: Services, entry: str) -> Record | Later:
    """A knowledge or procedural entry: a graph fact of that kind (``constraint`` when
    ``is_constraint``), tagged with its entry kind and tenant, under a stable id."""
    g = graph(s, svc)
    subject = req_str(p, "subject")
    body = req_str(p, "body", allow_empty=True)
    fact_id = opt_str(p, "id") or f"{entry}-{secrets.token_hex(6)}"
    tags = list(opt_str_list(p, "tags") or [])
    confidence = _confidence(p.get("confidence"))
    tenant = opt_str(p, "tenant_id")
    constraint = opt_bool(p, "is_constraint", False)
    tags = [entry, *tags] + ([TENANT_TAG + tenant] if tenant is not None else [])
    kind = "constraint" if constraint else entry
    provenance = written_by(s, f"save_{entry}")

    def work() -> Record:
        count = g.add_fact(
            subject, body, kind, fact_id=fact_id, tags=tags, source=entry,
            confidence=confidence, provenance=provenance,
        )  # fmt: skip
        return {"id": fact_id, "kind": entry, "fact_count": count}

    def publish(result: Record) -> Record:
        publish_count(s, svc, g, result["fact_count"])
        return result

    small = len(subject) + len(body) <= INLINE_WRITE_CHARS
    return then(on_graph(g, work, thread=not (own_graph(s) and small)), publish)


def _confidence(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        if value.lower() in CONFIDENCE_LABELS:
            return CONFIDENCE_LABELS[value.lower()]
        try:
            value = float(value)
        except ValueError:
            raise InvalidParams(
                "confidence must be high, medium, low or a number from 0 to 1"
            ) from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise InvalidParams("confidence must be high, medium, low or a number from 0 to 1")
    return float(value)


def maintain(s: ClientSession, p: Params, svc: Services) -> Record | Later:
    """The session's recent events mined into entries (:mod:`carnb.memgine.maintain`)."""
    g = graph(s, svc)
    recent = opt_int(p, "max_recent", DEFAULT_RECENT, minimum=1) or DEFAULT_RECENT
    if recent > MAX_RECENT:
        raise InvalidParams(f"max_recent must be at most {MAX_RECENT}")
    tenant = opt_str(p, "tenant_id")
    events = svc.meter.query(s, Query(limit=recent))["events"]
    entries, trigger = mine(events)
    provenance = written_by(s, "maintain")
    extra = [TENANT_TAG + tenant] if tenant is not None else []
    counted: list[int] = []

    def work() -> Record:
        saved = skipped = 0
        for e in entries:
            if g.history(fact_id=e.fact_id):
                skipped += 1
                continue
            g.add_fact(
                e.subject, e.body, e.entry, fact_id=e.fact_id, tags=[e.entry, "event", *extra],
                source=e.entry, provenance=provenance,
            )  # fmt: skip
            saved += 1
        counted.append(g.fact_count())
        out: Record = {"trigger": trigger, "saved": saved, "skipped_existing": skipped}
        if entries:
            out["status"] = (
                f"{trigger['repeated_failures']} failure(s) of one tool at most, "
                f"{len(entries)} event(s) worth remembering in the last {len(events)}"
            )
        return out

    def publish(result: Record) -> Record:
        if result["saved"] and counted:
            publish_count(s, svc, g, counted[-1])
        return result

    return then(on_graph(g, work), publish)


def update_status(s: ClientSession, p: Params, svc: Services) -> Record:
    body = req_str(p, "body", allow_empty=True)
    tenant = opt_str(p, "tenant_id")
    if len(body) > MAX_STATUS_CHARS:
        raise InvalidParams(f"body holds at most {MAX_STATUS_CHARS} characters")
    slot = tenant if tenant is not None else "global"
    s.memory_status[slot] = body
    out: Record = {"id": STATUS_PREFIX + slot, "body": body}
    if tenant is not None:
        out["tenant_id"] = tenant
    return out


def intervene(s: ClientSession, p: Params, svc: Services) -> Record | Later:
    request = {
        "query": p.get("query"),
        "recent": p.get("recent"),
        "trigger": p.get("trigger"),
        "force": p.get("force"),
        "max_candidates": p.get("max_candidates"),
        "tenant_id": p.get("tenant_id"),
    }
    g = graph(s, svc)
    return on_graph(g, lambda: g.intervene({k: v for k, v in request.items() if v is not None}))


def evaluate(s: ClientSession, p: Params, svc: Services) -> Record | Later:
    cases = req_list(p, "cases")
    g = graph(s, svc)
    return on_graph(g, lambda: g.evaluate(cases))


_SAVE_PARAMS = {
    "id": "string? (a stable id; default <kind>-<12 hex>)",
    "subject": "string",
    "body": "string",
    "tags": "string[]?",
    "confidence": "string? (high, medium, low or a number from 0 to 1)",
    "tenant_id": "string?",
    "is_constraint": "boolean? (false)",
}
_INTERVENE_PARAMS = {
    "query": "string?",
    "recent": "string[]? (at most 32)",
    "trigger": "object? {repeated_failures, tool_error, explicit_uncertainty, "
    "high_risk_action, context_shift}",
    "force": "boolean? (false)",
    "max_candidates": "integer? (8, at most 64)",
    "tenant_id": "string?",
}

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
            "supersedes": "string[]? (fact ids or subjects this fact replaces)",
        },
        result="integer: valid fact count after the write",
    ),
    Method(
        "memory.history",
        history,
        needs="memory",
        summary="Supersession chain of a subject or a fact, newest first",
        params={"subject": "string? (one of subject, fact_id)", "fact_id": "string?"},
        result="[{fact_id, subject, body, kind, tags, source, provenance, confidence, "
        "created_at, superseded_by}]",
    ),
    Method(
        "memory.query",
        query,
        needs="memory",
        large_reply=True,
        summary="Facts relevant to a query, best first",
        params={
            "query": "string",
            "k": "integer? (5)",
            "explain": "boolean? (false): each row also says why it ranked",
        },
        result="[{fact_id, subject, body, kind, confidence, tags, source, provenance, "
        "explain?: {words, "
        "keyword_score, activation, relevance, recency, newer_facts, constraint, in_context, "
        "superseded_by, supersedes}}]",
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
        "memory.restore",
        restore,
        needs="memory",
        summary="Store a deleted fact again as it was, supersession links included (carnb's own)",
        params={"id": "string"},
        result="{id, restored, superseded_by, supersedes, fact_count}",
    ),
    Method(
        "memory.consolidate",
        consolidate,
        mode="task",
        needs="memory",
        summary="Merge exact duplicates and report same-subject contradictions",
        result="{duplicates_merged, contradictions_found, fact_count}",
    ),
    Method(
        "memory.diff",
        diff,
        needs="memory",
        large_reply=True,
        summary="Facts added, superseded and deleted since a time (carnb's own)",
        params={"since": "number (seconds since the epoch)"},
        result="{since, added: [fact], superseded: [fact], deleted: [{fact_id, subject, body, "
        "kind, deleted_at, provenance}]}",
    ),
    Method(
        "memory.edit",
        edit,
        needs="memory",
        summary="Replace a fact by an edited copy that supersedes it (carnb's own)",
        params={"id": "string", "body": "string", "subject": "string? (kept)"},
        result="{id (the new fact), replaces, fact_count}",
    ),
    Method(
        "memory.pin",
        pin,
        needs="memory",
        summary="Pin a fact (every context shows it) or unpin it (carnb's own)",
        params={"id": "string", "pinned": "boolean? (true)"},
        result="{id, pinned, changed}",
    ),
    Method(
        "memory.utility_get",
        utility_get,
        needs="memory",
        summary="The graph's utility-aware retrieval blend",
        result="{utility_weight, utility_exploration}",
    ),
    Method(
        "memory.utility_set",
        utility_set,
        needs="memory",
        summary="Change the graph's utility-aware retrieval blend (an omitted field is kept)",
        params={
            "utility_weight": "number? (clamped to [0, 1])",
            "utility_exploration": "number? (clamped to [0, 4])",
        },
        result="{utility_weight, utility_exploration} as applied",
    ),
    Method(
        "memory.save_knowledge",
        save_knowledge,
        needs="memory",
        summary="Save durable execution-state knowledge (a graph fact of kind knowledge)",
        params=_SAVE_PARAMS,
        result='{id, kind: "knowledge", fact_count}',
    ),
    Method(
        "memory.save_procedural",
        save_procedural,
        needs="memory",
        summary="Save procedural evidence: attempts, fixes, diagnostics (kind procedural)",
        params=_SAVE_PARAMS,
        result='{id, kind: "procedural", fact_count}',
    ),
    Method(
        "memory.update_status",
        update_status,
        needs="memory",
        summary="Set the proactive memory agent's private status (session-local, not a fact)",
        params={"body": "string", "tenant_id": "string?"},
        result="{id, body, tenant_id?}",
    ),
    Method(
        "memory.maintain",
        maintain,
        needs="memory",
        summary="Mine the recent event log into proactive memory entries and a trigger",
        params={
            "max_recent": f"integer? ({DEFAULT_RECENT}, at most {MAX_RECENT})",
            "tenant_id": "string?",
        },  # fmt: skip
        result="{trigger, saved, skipped_existing, status?}",
    ),
    Method(
        "memory.intervene",
        intervene,
        needs="memory",
        summary="At most one grounded reminder for the next action, or an explicit silence",
        params=_INTERVENE_PARAMS,
        result='{decision: "inject", reminder, selected, candidates, bank} | '
        '{decision: "silent", reason, candidates, bank}',
    ),
    Method(
        "memory.evaluate",
        evaluate,
        needs="memory",
        summary="Precision and recall of the intervention selector and its baselines",
        params={
            "cases": "[{id, request: memory.intervene params, relevant_fact_ids?: string[]}] "
            "(at most 1000)"
        },
        result="{cases, selective, always_inject, passive_retrieval, no_memory}",
    ),
)

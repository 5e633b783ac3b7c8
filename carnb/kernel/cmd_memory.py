"""``%car memory add|query|count|context|history|persist|load|delete|explore`` (the
``memory.*`` methods on the notebook's session, i.e. on its effective graph)."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import TYPE_CHECKING, Any

from carnb.kernel.calls import CarCommandError
from carnb.kernel.explore import COLUMNS, provenance_text, result_cells
from carnb.kernel.render import Message, Pre, Table
from carnb.kernel.traceview import to_dataframe

if TYPE_CHECKING:
    from carnb.kernel.engine import NotebookEngine
    from carnb.kernel.explore import MemoryExplorer


class Value(Message):
    """A one-line result that also carries the method's result as ``.value``."""

    def __init__(self, text: str, value: Any) -> None:
        super().__init__(text)
        self.value = value


def _graph(nb: NotebookEngine) -> str:
    snap = nb.notebook()
    return str(snap.get("graph")) if snap else "?"


def add(nb: NotebookEngine, args: argparse.Namespace) -> Value:
    params: dict[str, Any] = {"subject": args.subject, "body": args.body}
    for name in ("kind", "fact_id", "tags", "source", "confidence", "supersedes"):
        value = getattr(args, name)
        if value is not None:
            params[name] = value
    n = nb.calls.call("memory.add_fact", params, what="%car memory add")
    return Value(f"fact added to {_graph(nb)}; {n} facts", n)


EMPTY_GRAPH = (
    "{graph} is empty: `%car memory add SUBJECT BODY` adds a fact, `%car auth --agent NAME` "
    "binds to an agent's graph, `%car memory load PATH` loads a file"
)


class QueryResult(Table):
    def __init__(
        self, rows: list[dict[str, Any]], query: str, empty: str = "no fact matches"
    ) -> None:
        self.facts = rows
        super().__init__(
            list(COLUMNS),
            [result_cells(r) for r in rows],
            title=f"{len(rows)} fact(s) for {query!r}",
            empty=empty,
        )

    def to_dataframe(self) -> Any:
        """One row per fact, best first (needs pandas)."""
        columns = list(dict.fromkeys(k for r in self.facts for k in r))
        return to_dataframe(self.facts, columns)


def query(nb: NotebookEngine, args: argparse.Namespace) -> QueryResult:
    q = " ".join(args.query)
    params = {"query": q, "k": args.k, "explain": True}
    rows = nb.calls.call("memory.query", params, what="%car memory query")
    if rows:
        return QueryResult(list(rows), q)
    n = nb.calls.call("memory.fact_count", {}, what="%car memory query")
    return QueryResult([], q, EMPTY_GRAPH.format(graph=_graph(nb)) if n == 0 else "no fact matches")


def count(nb: NotebookEngine, args: argparse.Namespace) -> Value:
    n = nb.calls.call("memory.fact_count", {}, what="%car memory count")
    return Value(f"{n} facts in {_graph(nb)}", n)


class Context(Pre):
    def __init__(self, body: str, title: str) -> None:
        super().__init__(body, title)
        self.value = body


def context(nb: NotebookEngine, args: argparse.Namespace) -> Context:
    q = " ".join(args.query)
    params: dict[str, Any] = {"query": q}
    if args.window is not None:
        params["model_context_window"] = args.window
    method = "memory.build_context_fast" if args.fast else "memory.build_context"
    text = nb.calls.call(method, params, what="%car memory context")
    return Context(str(text), f"context for {q!r} ({len(str(text))} characters)")


def persist(nb: NotebookEngine, args: argparse.Namespace) -> Value:
    n = nb.calls.call("memory.persist", {"path": args.path}, what="%car memory persist")
    return Value(f"{n} facts written to memory/{args.path}", n)


def load(nb: NotebookEngine, args: argparse.Namespace) -> Value:
    n = nb.calls.call("memory.load", {"path": args.path}, what="%car memory load")
    return Value(f"{n} facts loaded from memory/{args.path} into {_graph(nb)}", n)


def delete(nb: NotebookEngine, args: argparse.Namespace) -> Value:
    reply = nb.calls.call("memory.delete", {"id": args.fact_id}, what="%car memory delete")
    if isinstance(reply, dict) and not reply.get("deleted"):
        return Value(f"no fact {args.fact_id!r}; nothing deleted", reply)
    left = reply.get("fact_count") if isinstance(reply, dict) else None
    return Value(f"deleted {args.fact_id}; {left} facts left", reply)


class History(Table):
    """A supersession chain, newest first; ``.facts`` holds the rows."""

    def __init__(self, rows: list[dict[str, Any]], what: str) -> None:
        self.facts = rows
        super().__init__(
            ["fact_id", "subject", "body", "kind", "superseded_by"],
            [
                [r.get("fact_id"), r.get("subject"), r.get("body"), r.get("kind"),
                 r.get("superseded_by") or "(valid)"]
                for r in rows
            ],
            title=f"history of {what}, newest first",
            empty="no such fact or subject",
        )  # fmt: skip


def history(nb: NotebookEngine, args: argparse.Namespace) -> History:
    if (args.subject is None) == (args.fact_id is None):
        raise CarCommandError("%car memory history: give exactly one of SUBJECT and --id FACT_ID")
    params = {"fact_id": args.fact_id} if args.fact_id is not None else {"subject": args.subject}
    rows = nb.calls.call("memory.history", params, what="%car memory history")
    what = f"fact {args.fact_id!r}" if args.fact_id is not None else repr(args.subject)
    return History(list(rows), what)


class Diff(Table):
    """What changed since a point: one row per change; ``.changes`` holds the reply."""

    def __init__(self, changes: dict[str, Any], what: str) -> None:
        self.changes = changes
        rows = [
            [change, r.get("fact_id"), r.get("subject"), r.get("body"),
             provenance_text(r.get("provenance"))]
            for change in ("added", "superseded", "deleted")
            for r in changes.get(change, [])
        ]  # fmt: skip
        super().__init__(
            ["change", "fact_id", "subject", "body", "by"],
            rows,
            title=f"memory changes since {what}",
            empty="nothing changed",
        )


def since_time(nb: NotebookEngine, since: str) -> tuple[float, str]:
    """``--since``: seconds since the epoch, an ISO time, or a run id (when it started)."""
    try:
        return float(since), since
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(since)
    except ValueError:
        return _run_start(nb, since), f"run {since} started"
    if moment.tzinfo is None:
        moment = moment.astimezone()  # a time without a zone is local time
    return moment.timestamp(), since


def _run_start(nb: NotebookEngine, run_id: str) -> float:
    """When a run started: its agent from its trace, then the agent's run list."""
    what = "%car memory diff"
    page = nb.calls.call("runs.get_trace", {"run_id": run_id, "limit": 1}, what=what)
    if page.get("not_found"):
        raise CarCommandError(f"{what}: {run_id!r} is neither a run, an ISO time nor a number")
    listed = nb.calls.call("runs.list", {"agent_id": page["agent_id"]}, what=what)
    for run in listed.get("runs", []):
        if run.get("run_id") == run_id:
            return datetime.fromisoformat(str(run["started_at"])).timestamp()
    raise CarCommandError(f"{what}: run {run_id!r} is not among its agent's runs")


def diff(nb: NotebookEngine, args: argparse.Namespace) -> Diff:
    at, what = since_time(nb, args.since)
    changes = nb.calls.call("memory.diff", {"since": at}, what="%car memory diff")
    return Diff(dict(changes), what)


def explore(nb: NotebookEngine, args: argparse.Namespace) -> MemoryExplorer:
    explorer = nb.add_explorer(" ".join(args.query), k=args.k, superseded=args.superseded)
    nb.calls.on_loop(explorer.asearch_now(), what="%car memory explore")
    return explorer

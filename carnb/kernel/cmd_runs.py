"""``%car run start|complete|cancel|trace|list`` and ``%%car run INTENT`` (run tracing for the
notebook's session; the cell hook that records turns lives in :mod:`carnb.kernel.cellrun`)."""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING, Any

from carnb.kernel.calls import CarCommandError, CarInterrupted, CarMagicError
from carnb.kernel.cellrun import (
    DEFAULT_AGENT_NAME,
    DEFAULT_RUN_OWNER,
    Cell,
    describe_error,
    make_turn,
)
from carnb.kernel.render import Message, Raw, Table
from carnb.kernel.run_ids import resolve_run_id
from carnb.kernel.style import code_spans, esc, fork_point, shorten, typeable
from carnb.kernel.traceview import TraceDoc, read_trace, to_dataframe

if TYPE_CHECKING:
    from carnb.kernel.engine import NotebookEngine
    from carnb.kernel.traceview import LiveTrace

log = logging.getLogger("carnb.kernel.runs")


class RunMessage(Message):
    """A one-line run result; ``.run_id`` and ``.reply`` for code."""

    def __init__(self, text: str, run_id: str, reply: Any = None) -> None:
        super().__init__(text)
        self.run_id = run_id
        self.reply = reply

    def html(self) -> str:
        """The line with the run's full id on hover."""
        return f'<div title="{esc(self.run_id)}">{code_spans(self.message)}</div>'


def _open_run(nb: NotebookEngine) -> str | None:
    return nb.notebook().get("current_run_id")


def _start(nb: NotebookEngine, intent: str, agent_name: str | None, what: str) -> dict[str, Any]:
    open_id = _open_run(nb)
    if open_id is not None:
        raise CarCommandError(
            f"{what}: run {shorten(open_id)} is still open; finish it with `%car run complete` or "
            "`%car run cancel` first"
        )
    params: dict[str, Any] = {"intent": intent}
    if agent_name is not None or nb.notebook().get("agent_id") is None:
        params["agent_name"] = agent_name or DEFAULT_AGENT_NAME
    reply = nb.calls.call("runs.start", params, what=what)
    nb.remember_run(reply)
    return dict(reply)


def start(nb: NotebookEngine, args: argparse.Namespace) -> RunMessage:
    reply = _start(nb, " ".join(args.intent), args.agent_name, "%car run start")
    nb.recorder.skip_current_cell()
    return RunMessage(
        f"run {shorten(reply['run_id'])} started for {reply.get('agent_id')}; every cell from "
        "now on is recorded as a turn until `%car run complete`",
        reply["run_id"],
        reply,
    )


def _need_open(nb: NotebookEngine, what: str) -> str:
    rid = _open_run(nb)
    if rid is None:
        raise CarCommandError(f"{what}: no run is open; start one with `%car run start INTENT`")
    return rid


def complete(nb: NotebookEngine, args: argparse.Namespace) -> RunMessage:
    rid = _need_open(nb, "%car run complete")
    outcome = {"status": args.status, "summary": args.summary}
    reply = nb.calls.call(
        "runs.complete", {"run_id": rid, "outcome": outcome}, what="%car run complete"
    )
    return RunMessage(f"run {shorten(rid)} completed: {args.status}", rid, reply)


def cancel(nb: NotebookEngine, args: argparse.Namespace) -> RunMessage:
    if args.run_id:
        rid = _full_id(nb, args.run_id, "%car run cancel")
    else:
        rid = _need_open(nb, "%car run cancel")
    reply = nb.calls.call(
        "runs.cancel", {"run_id": rid, "reason": args.reason}, what="%car run cancel"
    )
    return RunMessage(f"run {shorten(rid)} cancelled ({args.reason})", rid, reply)


class TraceResult(Raw):
    """A run's timeline; ``.trace`` is the ``runs.get_trace`` result."""

    def __init__(self, trace: dict[str, Any]) -> None:
        self.doc = TraceDoc(trace)
        super().__init__(self.doc, trace)
        self.trace = trace

    @property
    def run_id(self) -> str:
        return str(self.trace.get("run_id"))

    @property
    def turns(self) -> list[dict[str, Any]]:
        """The turn objects, in order."""
        return [
            r.get("turn") or {}
            for r in self.trace.get("records") or []
            if r.get("record") == "turn"
        ]

    def to_dataframe(self) -> Any:
        """One row per record (needs pandas)."""
        return self.doc.to_dataframe()


def _trace_id(nb: NotebookEngine, run_id: str | None, what: str = "%car run trace") -> str:
    if run_id:
        return _full_id(nb, run_id, what)
    rid = _open_run(nb) or nb.last_run_id
    if rid is None:
        raise CarCommandError(
            f"{what}: no run yet; give a RUN_ID (`%car run list --agent ID` lists them)"
        )
    return rid


def _full_id(nb: NotebookEngine, run_id: str, what: str) -> str:
    """``run_id`` as typed (a full id or a unique prefix such as ``run-3f2a9c01``) made full."""
    return resolve_run_id(run_id, lambda: nb.known("run"), what)


# A trace is read page by page (the server caps a page at ~2 MiB); the notebook shows at most
# this many records of one run, and says where it stopped.
TRACE_SHOWN_RECORDS = 5_000


def _get_trace(nb: NotebookEngine, rid: str, most: int | None) -> dict[str, Any]:
    """The run's trace, every page of it up to ``most`` records (None: all of them); when more
    remain, ``next_cursor`` says where they start."""
    found = read_trace(
        lambda method, params: nb.calls.call(method, params, what="%car run trace"), rid, most=most
    )
    if found is None:
        raise CarCommandError(
            f"%car run trace: no run {rid} that this session may read (reading another "
            "agent's run needs the host role: `%car auth` restores it)"
        )
    return found


def trace(nb: NotebookEngine, args: argparse.Namespace) -> TraceResult | LiveTrace:
    rid = _trace_id(nb, args.run_id)
    if getattr(args, "live", False):
        # every record up to where the live events start: a capped snapshot would leave a gap
        return nb.add_live_trace(rid, lambda: _get_trace(nb, rid, None))
    return TraceResult(_get_trace(nb, rid, TRACE_SHOWN_RECORDS))


RUN_COLUMNS = (
    "run_id",
    "agent_id",
    "status",
    "outcome",
    "intent",
    "turn_count",
    "started_at",
    "ended_at",
    "forked_from",
)


def lineage(runs: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """``runs`` (newest first) with each fork right under its parent: ``(depth, run)``; a fork
    whose parent is not in the list stays where it is."""
    ids = {r.get("run_id") for r in runs}
    children: dict[str, list[dict[str, Any]]] = {}
    roots = []
    for r in runs:
        parent = (r.get("forked_from") or {}).get("run_id")
        if isinstance(parent, str) and parent in ids and parent != r.get("run_id"):
            children.setdefault(parent, []).append(r)
        else:
            roots.append(r)
    out: list[tuple[int, dict[str, Any]]] = []

    def walk(run: dict[str, Any], depth: int) -> None:
        out.append((depth, run))
        for child in reversed(children.get(run.get("run_id") or "", [])):  # oldest fork first
            walk(child, depth + 1)

    for r in roots:
        walk(r, 0)
    return out


def run_state(run: dict[str, Any]) -> str:
    """How a run ended, in one word: a completed run by its outcome (``success``,
    ``failure``, ``interrupted``), else its status (``cancelled``, ``in progress``)."""
    outcome = run.get("outcome")
    if run.get("status") == "completed" and isinstance(outcome, str) and outcome:
        return outcome
    return str(run.get("status") or "").replace("_", " ")


class RunList(Table):
    """``%car run list``: ``.runs`` is one dict per run, each with its ``outcome`` status
    (None until the run ends with one)."""

    def __init__(self, agent_id: str, runs: list[dict[str, Any]]) -> None:
        from carnb.kernel.style import Cell as Shown
        from carnb.kernel.style import short_id, when

        self.runs = runs
        rows = []
        for depth, r in lineage(runs):
            rid = short_id(r.get("run_id"))
            if depth:
                lead = "\u00a0\u00a0" * (depth - 1) + "↳ "
                rid = Shown(lead + rid.text, lead + rid.html)
            parent = r.get("forked_from") or {}
            rows.append(
                [
                    rid,
                    run_state(r),
                    r.get("intent"),
                    r.get("turn_count"),
                    when(r.get("started_at")),
                    when(r.get("ended_at")),
                    fork_point(parent.get("run_id"), parent.get("turn")) if parent else "",
                ]
            )
        super().__init__(
            ["run_id", "status", "intent", "turns", "started", "ended", "forked from"],
            rows,
            title=f"runs of {agent_id} (newest first"
            + (f", the last {len(runs)}" if len(runs) >= RUNS_LISTED else "")
            + ", forks under their parent)",
            empty="no runs",
        )

    def to_dataframe(self) -> Any:
        """One row per run (needs pandas)."""
        return to_dataframe(self.runs, RUN_COLUMNS)


def list_runs(nb: NotebookEngine, args: argparse.Namespace) -> RunList:
    agent = args.agent or nb.notebook().get("agent_id") or nb.last_run_owner or DEFAULT_RUN_OWNER
    reply = nb.calls.call(
        "runs.list", {"agent_id": agent, "limit": RUNS_LISTED}, what="%car run list"
    )
    runs = [dict(r) for r in reply.get("runs") or []]
    for r in runs:
        r["outcome"] = _outcome_status(nb, r) if r.get("status") == "completed" else None
    return RunList(agent, runs)


RUNS_LISTED = 50  # %car run list shows the newest runs; each completed one costs a short read


def _outcome_status(nb: NotebookEngine, run: dict[str, Any]) -> str | None:
    """The outcome status of a completed run, from its ``ended`` record. ``runs.list`` gives
    only the run's status; the trace is read from the first index the ended record may have
    (after the started record and every counted turn; model turns are not counted)."""
    params: dict[str, Any] = {"run_id": run["run_id"], "cursor": int(run.get("turn_count") or 0)}
    while True:
        page = nb.calls.call("runs.get_trace", params, what="%car run list")
        if not isinstance(page, dict) or page.get("not_found"):
            return None
        for record in page.get("records") or []:
            if record.get("record") == "ended":
                outcome = record.get("outcome")
                status = outcome.get("status") if isinstance(outcome, dict) else None
                return str(status) if status else None
        if page.get("next_cursor") is None:
            return None
        params = {**params, "cursor": page["next_cursor"]}


def bracket(nb: NotebookEngine, args: argparse.Namespace, cell: Cell) -> Any:
    """``%%car run INTENT``: the cell is the run's one turn; success or failure ends it."""
    __tracebackhide__ = True  # IPython: show the cell's frames, not ours
    reply = _start(nb, " ".join(args.intent), args.agent_name, "%%car run")
    rid = reply["run_id"]
    with nb.recorder.suppressed():
        try:
            value = cell.run()
        except BaseException as exc:
            _finish(
                nb,
                rid,
                make_turn(cell.source, execution_count=cell.execution_count, error=exc),
                {
                    "status": "interrupted" if isinstance(exc, KeyboardInterrupt) else "failure",
                    "summary": describe_error(exc) or "failed",
                },
            )
            if isinstance(exc, KeyboardInterrupt):
                raise CarInterrupted(
                    f"the cell was interrupted; run {shorten(rid)} ended: interrupted "
                    "(`%car run trace` shows it)"
                ) from None
            raise
    _finish(
        nb,
        rid,
        make_turn(cell.source, execution_count=cell.execution_count, value=value),
        {"status": "success", "summary": "cell ran without error"},
    )
    cell.show(
        RunMessage(f"run {shorten(rid)} completed: success (`%car run trace` shows it)", rid, reply)
    )
    return value


def _finish(nb: NotebookEngine, rid: str, turn: dict[str, Any], outcome: dict[str, Any]) -> None:
    """Record the turn and complete the run; on the error path never mask the cell's error."""
    try:
        nb.calls.call("runs.record_turns", {"run_id": rid, "turns": [turn]}, what="%%car run")
        nb.calls.call("runs.complete", {"run_id": rid, "outcome": outcome}, what="%%car run")
    except CarMagicError as exc:
        log.warning("run %s could not be closed cleanly: %s", rid, exc.message)
        if outcome["status"] == "success":
            raise


# -- time travel: replay, fork, diff ------------------------------------------------------------
class ReplayResult(Table):
    """``%car run replay``: where the re-execution departs from the recording; ``.report`` is
    the ``runs.replay`` result."""

    def __init__(self, report: dict[str, Any]) -> None:
        self.report = report
        verdict = (
            "reproduces from its recording"
            if report.get("reproduced")
            else f"diverges at {len(report.get('divergences') or [])} point(s)"
        )
        super().__init__(
            ["turn", "kind", "what"],
            [[d.get("turn"), d.get("kind"), d.get("message")] for d in report["divergences"]],
            title=(
                f"run {shorten(str(report.get('run_id')))} {verdict}: "
                f"{report.get('model_turns')} model turns, {report.get('tool_steps')} tool steps, "
                f"{report.get('model_calls')} model calls, {report.get('tools_rerun')} tools run "
                "again"
            ),
            empty="no divergence",
        )


def replay(nb: NotebookEngine, args: argparse.Namespace) -> ReplayResult:
    rid = _trace_id(nb, args.run_id, "%car run replay")
    reply = nb.calls.call(
        "runs.replay", {"run_id": rid, "rerun_tools": args.rerun_tools}, what="%car run replay"
    )
    return ReplayResult(dict(reply))


def _json_or_text(value: str) -> Any:
    import json

    try:
        return json.loads(value)
    except ValueError:
        return value


def _tool_outputs(pairs: list[str]) -> dict[str, Any]:
    outputs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CarCommandError(
                f"%car run fork: --tool-output {pair!r} is not ACTION=VALUE (ACTION: a tool "
                "call's id or a tool's name; VALUE: JSON or text)"
            )
        outputs[key] = _json_or_text(value)
    return outputs


def fork(nb: NotebookEngine, args: argparse.Namespace) -> Any:
    parent = _full_id(nb, args.run_id, "%car run fork")
    params: dict[str, Any] = {"run_id": parent, "at": args.at}
    for name in ("model", "system", "max_turns"):
        if getattr(args, name) is not None:
            params[name] = getattr(args, name)
    if args.answer is not None:
        params["answer"] = _json_or_text(args.answer)
    if args.tool_output:
        params["tool_outputs"] = _tool_outputs(args.tool_output)
    reply = dict(nb.calls.call("runs.fork", params, what="%car run fork"))
    nb.last_run_id = reply["run_id"]
    note = " (the request was rebuilt from the recorded turns)" if reply["rebuilt_request"] else ""
    child, short_parent = typeable(reply["run_id"]), typeable(parent)
    message = RunMessage(
        f"run {shorten(reply['run_id'])} forks {shorten(parent)} at model turn {args.at}{note}; "
        f"it runs in the background: `%car run trace {child} --live`, "
        f"`%car run diff {short_parent} {child}`",
        reply["run_id"],
        reply,
    )
    if not args.live:
        return message
    rid = reply["run_id"]
    return nb.add_live_trace(rid, lambda: _get_trace(nb, rid, None))


def diff(nb: NotebookEngine, args: argparse.Namespace) -> Any:
    from carnb.kernel.run_diff import RunDiff

    run_a = _full_id(nb, args.run_a, "%car run diff")
    run_b = _full_id(nb, args.run_b, "%car run diff")
    return RunDiff(_get_trace(nb, run_a, None), _get_trace(nb, run_b, None))

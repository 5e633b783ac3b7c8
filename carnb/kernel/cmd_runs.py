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
from carnb.kernel.style import shorten
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
    rid = args.run_id or _need_open(nb, "%car run cancel")
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


def _trace_id(nb: NotebookEngine, run_id: str | None) -> str:
    rid = run_id or _open_run(nb) or nb.last_run_id
    if rid is None:
        raise CarCommandError(
            "%car run trace: no run yet; give a RUN_ID (`%car run list --agent ID` lists them)"
        )
    return rid


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
)


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
        from carnb.kernel.style import short_id, when

        self.runs = runs
        super().__init__(
            ["run_id", "status", "intent", "turns", "started", "ended"],
            [
                [
                    short_id(r.get("run_id")),
                    run_state(r),
                    r.get("intent"),
                    r.get("turn_count"),
                    when(r.get("started_at")),
                    when(r.get("ended_at")),
                ]
                for r in runs
            ],
            title=f"runs of {agent_id} (newest first"
            + (f", the last {len(runs)})" if len(runs) >= RUNS_LISTED else ")"),
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

"""``%car run start|complete|cancel|trace|list`` and ``%%car run INTENT`` (run tracing for the
notebook's session; the cell hook that records turns lives in :mod:`carnb.kernel.cellrun`)."""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING, Any

from carnb.kernel.calls import CarCommandError, CarMagicError
from carnb.kernel.cellrun import describe_error, make_turn, run_cell_body
from carnb.kernel.render import Message, Raw, Table
from carnb.runs.timeline import TraceView

if TYPE_CHECKING:
    from carnb.kernel.extension import KernelExtension

log = logging.getLogger("carnb.kernel.runs")

DEFAULT_AGENT_NAME = "notebook"


class RunMessage(Message):
    """A one-line run result; ``.run_id`` and ``.reply`` for code."""

    def __init__(self, text: str, run_id: str, reply: Any = None) -> None:
        super().__init__(text)
        self.run_id = run_id
        self.reply = reply


def _open_run(ext: KernelExtension) -> str | None:
    session = ext.calls.runtime.session
    return session.current_run_id if session is not None else None


def _start(ext: KernelExtension, intent: str, agent_name: str | None, what: str) -> dict[str, Any]:
    rt = ext.calls.runtime
    open_id = _open_run(ext)
    if open_id is not None:
        raise CarCommandError(
            f"{what}: run {open_id} is still open; finish it with `%car run complete` or "
            "`%car run cancel` first"
        )
    params: dict[str, Any] = {"intent": intent}
    session = rt.session
    if agent_name is not None or session is None or session.agent_id is None:
        params["agent_name"] = agent_name or DEFAULT_AGENT_NAME
    reply = ext.calls.call("runs.start", params, what=what)
    ext.last_run_id = reply["run_id"]
    ext.last_run_owner = reply.get("agent_id")
    return dict(reply)


def start(ext: KernelExtension, args: argparse.Namespace) -> RunMessage:
    reply = _start(ext, " ".join(args.intent), args.agent_name, "%car run start")
    ext.recorder.skip_current_cell()
    return RunMessage(
        f"run {reply['run_id']} started for {reply.get('agent_id')}; every cell from now on is "
        "recorded as a turn until `%car run complete`",
        reply["run_id"], reply,
    )


def _need_open(ext: KernelExtension, what: str) -> str:
    rid = _open_run(ext)
    if rid is None:
        raise CarCommandError(f"{what}: no run is open; start one with `%car run start INTENT`")
    return rid


def complete(ext: KernelExtension, args: argparse.Namespace) -> RunMessage:
    rid = _need_open(ext, "%car run complete")
    outcome = {"status": args.status, "summary": args.summary}
    reply = ext.calls.call("runs.complete", {"run_id": rid, "outcome": outcome},
                           what="%car run complete")
    return RunMessage(f"run {rid} completed: {args.status}", rid, reply)


def cancel(ext: KernelExtension, args: argparse.Namespace) -> RunMessage:
    rid = args.run_id or _need_open(ext, "%car run cancel")
    reply = ext.calls.call("runs.cancel", {"run_id": rid, "reason": args.reason},
                           what="%car run cancel")
    return RunMessage(f"run {rid} cancelled ({args.reason})", rid, reply)


class TraceResult(Raw):
    """A run's timeline; ``.trace`` is the ``runs.get_trace`` result."""

    def __init__(self, trace: dict[str, Any]) -> None:
        super().__init__(TraceView(trace), trace)
        self.trace = trace

    @property
    def turns(self) -> list[dict[str, Any]]:
        """The turn objects, in order."""
        return [r.get("turn") or {} for r in self.trace.get("records") or []
                if r.get("kind") == "turn"]


def trace(ext: KernelExtension, args: argparse.Namespace) -> TraceResult:
    rid = args.run_id or _open_run(ext) or ext.last_run_id
    if rid is None:
        raise CarCommandError(
            "%car run trace: no run yet; give a RUN_ID (`%car run list --agent ID` lists them)"
        )
    result = ext.calls.call("runs.get_trace", {"run_id": rid}, what="%car run trace")
    if not isinstance(result, dict) or result.get("not_found"):
        raise CarCommandError(
            f"%car run trace: no run {rid} that this session may read (reading another agent's "
            "run needs the host role: `%car auth` restores it)"
        )
    return TraceResult(result)


class RunList(Table):
    def __init__(self, agent_id: str, runs: list[dict[str, Any]]) -> None:
        self.runs = runs
        super().__init__(
            ["run_id", "status", "intent", "turns", "started", "ended"],
            [[r.get("run_id"), r.get("status"), r.get("intent"), r.get("turn_count"),
              r.get("started_at"), r.get("ended_at")] for r in runs],
            title=f"runs of {agent_id} (newest first)",
            empty="no runs",
        )


def list_runs(ext: KernelExtension, args: argparse.Namespace) -> RunList:
    session = ext.calls.runtime.session
    agent = (args.agent or (session.agent_id if session is not None else None)
             or ext.last_run_owner or f"name:{DEFAULT_AGENT_NAME}")
    reply = ext.calls.call("runs.list", {"agent_id": agent}, what="%car run list")
    return RunList(agent, list(reply.get("runs") or []))


def bracket(ext: KernelExtension, args: argparse.Namespace, cell: str) -> Any:
    """``%%car run INTENT``: the cell is the run's one turn; success or failure ends it."""
    __tracebackhide__ = True  # IPython: show the cell's frames, not ours
    shell = ext.shell
    reply = _start(ext, " ".join(args.intent), args.agent_name, "%%car run")
    rid = reply["run_id"]
    count = getattr(shell, "execution_count", None)
    with ext.recorder.suppressed():
        try:
            value = run_cell_body(shell, cell)
        except BaseException as exc:
            _finish(ext, rid, make_turn(cell, execution_count=count, error=exc),
                    {"status": "failure", "summary": describe_error(exc) or "failed"})
            raise
    _finish(ext, rid, make_turn(cell, execution_count=count, value=value),
            {"status": "success", "summary": "cell ran without error"})
    from IPython.display import display

    done = RunMessage(f"run {rid} completed: success (`%car run trace {rid}`)", rid, reply)
    display(done)  # type: ignore[no-untyped-call]
    return value


def _finish(ext: KernelExtension, rid: str, turn: dict[str, Any], outcome: dict[str, Any]) -> None:
    """Record the turn and complete the run; on the error path never mask the cell's error."""
    try:
        ext.calls.call("runs.record_turns", {"run_id": rid, "turns": [turn]}, what="%%car run")
        ext.calls.call("runs.complete", {"run_id": rid, "outcome": outcome}, what="%%car run")
    except CarMagicError as exc:
        log.warning("run %s could not be closed cleanly: %s", rid, exc.message)
        if outcome["status"] == "success":
            raise

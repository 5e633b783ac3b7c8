"""The proposal recorder: what a proposal executed becomes turns of the session's current run.

The real daemon appends one ``RunTurn`` per executed action of a ``proposal.submit`` to the
session's current run (``runs.start`` set it), through the same path as ``runs.record_turns``,
so a run's trace holds the agent loop's tool executions in order after its model turns
(``runs.record_model_turn``). carnb does the same: after a proposal ends, each action's result
becomes a turn ``{action_id, tool, parameters, status, output, error?, attempt, duration_ms,
policy_rejected?}`` (``attempt``: how many times the action ran, more than 1 when the executor
retried it, 0 when it never ran), in the proposal's action order, written with the rights of
the session's own ``runs.record_turns`` (:func:`carnb.app.handlers.runs.writer`). Recording
never fails the proposal: a run that ended meanwhile or a store error is only logged.
"""

from __future__ import annotations

import logging
from typing import Any

from carnb.agentir import ActionProposal, ProposalResult
from carnb.app.handlers.runs import keep_unattached, writer
from carnb.app.schedule import in_thread
from carnb.app.services import Services
from carnb.app.supervision import Decision
from carnb.config import TURN_TEXT_CHARS
from carnb.protocol.session import ClientSession

log = logging.getLogger("carnb.app.handlers.runturns")

POLICY_PREFIX = "denied by policy"


def proposal_turns(
    proposal: ActionProposal, result: ProposalResult, attempts: dict[str, int] | None = None
) -> list[dict[str, Any]]:
    """One turn per action that has a result, in the proposal's order. ``attempts`` is what
    :func:`~carnb.agentir.execute_proposal` handed back (absent: a proposal refused before
    anything ran)."""
    by_id = {r["action_id"]: r for r in result["results"]}
    turns: list[dict[str, Any]] = []
    for action in proposal.actions:
        r = by_id.get(action.id)
        if r is None:
            continue
        turn: dict[str, Any] = {
            "action_id": action.id,
            "tool": action.tool if action.tool is not None else str(action.type),
            "parameters": action.parameters,
            "status": r["status"],
            "output": _bounded(r["output"]),
            "attempt": (attempts or {}).get(action.id, 0),
            "duration_ms": r["duration_ms"],
        }
        if r["error"] is not None:
            turn["error"] = _bounded(r["error"])
            if r["error"].startswith(POLICY_PREFIX):
                turn["policy_rejected"] = True
        turns.append(turn)
    return turns


def _bounded(value: Any) -> Any:
    if isinstance(value, str) and len(value) > TURN_TEXT_CHARS:
        return value[:TURN_TEXT_CHARS] + "…[truncated]"
    return value


async def record_decisions(
    svc: Services, session: ClientSession, intent_id: str, decisions: list[Decision]
) -> None:
    """Append each supervision decision on a proposal of ``session`` to its current run, one
    turn each: ``{supervision: {intent_id, kind, reason, by, at}}``."""
    run_id, store = session.current_run_id, svc.runs
    if run_id is None or store is None or not decisions:
        return
    turns = [{"supervision": {"intent_id": intent_id, **d.to_wire()}} for d in decisions]
    try:
        done = await in_thread(_record, svc, session, run_id, turns[:256])
        if done.get("ok") and session.current_run_id == run_id:
            session.update(run_turns=session.run_turns + int(done["count"]))
    except Exception:  # the decision stands; a trace that cannot take it must not undo it
        log.exception("recording the decisions on %s in %s failed", intent_id, run_id)


async def record_proposal(
    svc: Services,
    session: ClientSession,
    proposal: ActionProposal,
    result: ProposalResult,
    attempts: dict[str, int] | None = None,
) -> None:
    """Append the proposal's turns to ``session``'s current run, if it has one."""
    run_id, store = session.current_run_id, svc.runs
    if run_id is None or store is None:
        return
    turns = proposal_turns(proposal, result, attempts)
    if not turns:
        return
    try:
        for start in range(0, len(turns), 256):
            done = await in_thread(_record, svc, session, run_id, turns[start : start + 256])
            if not done.get("ok"):
                log.info("proposal turns not recorded in %s: %s", run_id, done.get("dropped"))
                return
            if session.current_run_id == run_id:
                session.update(run_turns=session.run_turns + int(done["count"]))
    except Exception:  # the proposal ran; a trace that cannot take it must not undo that
        log.exception("recording the turns of proposal %s in %s failed", proposal.id, run_id)


def _record(
    svc: Services, session: ClientSession, run_id: str, turns: list[dict[str, Any]]
) -> dict[str, Any]:
    """Record ``turns`` in the session's run, after the inference no model turn took."""
    assert svc.runs is not None
    keep_unattached(svc, session)
    return svc.runs.record_turns(writer(session), run_id, turns)

"""Handlers for ``supervision.*``, the host approval ledger (``host.request_approval``,
``host.resolve_approval``, ``host.approvals``) and ``agents.chat.approve``; and
:func:`gate`, the admission step ``proposal.submit`` awaits before anything of a proposal runs
(:mod:`carnb.app.supervision`, :mod:`carnb.app.approvals`)."""

from __future__ import annotations

import time
from typing import Any

from carnb.agentir import ActionProposal, ProposalResult
from carnb.app.approvals import ApprovalLedger
from carnb.app.handlers.runturns import record_decisions
from carnb.app.methods import Area, Method, Params
from carnb.app.params import opt_int
from carnb.app.services import Services
from carnb.app.supervision import Decision, Filter, Intent, may_supervise
from carnb.config import LEDGER_LIST_MAX
from carnb.errors import InvalidParams
from carnb.protocol.session import ClientSession

SUPERVISOR = "carnb"  # who decides when no supervisor did (a timeout, a missing ledger)


def setup(svc: Services) -> None:
    """A supervisor that leaves stops receiving intents; what it left parked stays parked."""

    def leave(session: ClientSession) -> None:
        svc.supervision.unsubscribe(session.client_id)

    svc.sessions.on_close(leave)


# -- supervision.* -------------------------------------------------------------------------------
def supervision_subscribe(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    return svc.supervision.subscribe(s, Filter.parse(p.get("filter")))


def supervision_unsubscribe(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    return {"subscribed": False, "was_subscribed": svc.supervision.unsubscribe(s.client_id)}


def supervision_pending(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    may_supervise(s)
    detail = p.get("detail", False)
    if not isinstance(detail, bool):
        raise InvalidParams("detail must be a boolean")
    if detail and not s.is_host:
        raise InvalidParams("detail (full parameters) is for the host session only")
    if detail:  # the host sees every parked intent, with its parameters
        return {"intents": [i.detail() for i in svc.supervision.pending(None)]}
    return {"intents": [i.to_wire() for i in svc.supervision.pending(s.client_id)]}


def supervision_decide(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    may_supervise(s)
    decision = Decision.parse(p.get("decision"), s.client_id)
    svc.supervision.decide(s.client_id, p.get("intent_id"), decision)
    return {"decided": True}


# -- the gate proposal.submit awaits --------------------------------------------------------------
async def gate(
    svc: Services,
    s: ClientSession,
    proposal: ActionProposal,
    scope: Any,
    *,
    needs_approval: bool = False,
    denials: list[Any] | None = None,
) -> ProposalResult | None:
    """None: the proposal may run (nobody supervises it, or every supervisor allowed it).
    Else the result of a proposal rejected before anything ran."""
    intent = await svc.supervision.admit(
        s,
        proposal,
        scope,
        needs_approval=needs_approval,
        escalate=_escalator(svc),
        denials=denials,
    )
    if intent is None:
        return None
    await record_decisions(svc, s, intent.id, intent.decisions)
    outcome = intent.outcome
    if outcome is not None and outcome.kind == "allow":
        return None
    reason = outcome.reason if outcome is not None else "no decision"
    by = outcome.by if outcome is not None else SUPERVISOR
    return rejected(proposal, f"denied by supervisor {by}: {reason}")


def _escalator(svc: Services) -> Any:
    async def escalate(intent: Intent, decision: Decision) -> Decision:
        if svc.approvals is None:
            return Decision(
                "deny",
                "escalated, but this server keeps no approval ledger",
                SUPERVISOR,
                time.time(),
            )
        return await svc.approvals.escalate(intent, decision)

    return escalate


def rejected(proposal: ActionProposal, reason: str) -> ProposalResult:
    """Every action rejected with ``reason``: nothing ran, no state changed."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "proposal_id": proposal.id,
        "results": [
            {
                "action_id": a.id,
                "status": "rejected",
                "output": None,
                "error": reason,
                "state_changes": {},
                "duration_ms": 0.0,
                "timestamp": stamp,
            }
            for a in proposal.actions
        ],
        "cost": {
            "tool_calls": 0,
            "actions_executed": 0,
            "actions_rejected": len(proposal.actions),
            "actions_skipped": 0,
            "total_duration_ms": 0.0,
            "retries": 0,
        },
    }


# -- host approvals --------------------------------------------------------------------------------
def _ledger(svc: Services) -> ApprovalLedger:
    assert svc.approvals is not None  # the methods need "approvals"
    return svc.approvals


async def host_request_approval(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    approval: dict[str, Any] = await _ledger(svc).request(s, p)
    return approval


async def host_resolve_approval(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    approval: dict[str, Any] = await _ledger(svc).resolve(s, p)
    return approval


async def host_approvals(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    everything = p.get("include_resolved", False)
    if not isinstance(everything, bool):
        raise InvalidParams("include_resolved must be a boolean")
    limit = opt_int(p, "limit", LEDGER_LIST_MAX, minimum=1, maximum=LEDGER_LIST_MAX)
    assert limit is not None
    approvals = await _ledger(svc).list(pending_only=not everything, limit=limit)
    return {"approvals": approvals}


async def agents_chat_approve(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    return await svc.chats.approve(s, p)


_FILTER = (
    "{tools?: string[], sessions?: string[], "
    "min_reversibility?: reversible|compensable|irreversible}?"
)

AREA = Area(
    "supervision",
    setup=setup,
    methods=(
        Method(
            "supervision.subscribe",
            supervision_subscribe,
            summary="Supervise the admission gate: matching proposals of any session wait for your "
            "supervision.decide (supervision.intent notifications); re-subscribing replaces the "
            "filter. Not for sessions bound to an agent",
            params={"filter": _FILTER},
            result="{subscribed: true, decision_timeout_ms, supervisors}",
        ),
        Method(
            "supervision.unsubscribe",
            supervision_unsubscribe,
            summary="Stop supervising; intents already parked still fail closed",
            result="{subscribed: false, was_subscribed}",
        ),
        Method(
            "supervision.pending",
            supervision_pending,
            summary="The intents waiting on your decision, oldest first",
            params={"detail": "boolean? (carnb: host only; every parked intent, with parameters)"},
            result="{intents: SupervisionIntent[]}",
        ),
        Method(
            "supervision.decide",
            supervision_decide,
            summary="Decide one intent (an unknown, decided or expired intent is an error)",
            params={
                "intent_id": "string",
                "decision": "{kind: allow|deny|escalate, reason?} "
                "(reason required for deny, escalate)",
            },
            result="{decided: true}",
        ),
        Method(
            "host.request_approval",
            host_request_approval,
            mode="task",
            needs="approvals",
            summary="Raise an approval in the durable ledger (approval.requested host event)",
            params={
                "agent_id": "string?",
                "title": "string",
                "description": "string?",
                "context": "object?",
                "required_approvals": "integer? (default 1)",
            },
            result="HostApproval",
        ),
        Method(
            "host.resolve_approval",
            host_resolve_approval,
            mode="task",
            needs="approvals",
            summary="Approve or deny an approval (its requester or the host; an escalated "
            "proposal: any operator or host session)",
            params={"approval_id": "string", "approved": "boolean", "notes": "string?"},
            result="HostApproval",
        ),
        Method(
            "host.approvals",
            host_approvals,
            mode="task",
            needs="approvals",
            summary="The pending approvals of the ledger, oldest first",
            params={
                "include_resolved": "boolean? (carnb: also resolved and expired ones)",
                "limit": f"integer? (carnb: the newest this many; default {LEDGER_LIST_MAX})",
            },
            result="{approvals: HostApproval[]}",
        ),
        Method(
            "agents.chat.approve",
            agents_chat_approve,
            mode="task",
            role="host",
            summary="Resolve an agent's approval_pending chat event (agent.chat.approve)",
            params={
                "session_id": "string (the chat)",
                "approval_id": "string",
                "decision": "boolean | string (omitted: denied)",
            },
            result="{resolved, session_id}",
        ),
    ),
)

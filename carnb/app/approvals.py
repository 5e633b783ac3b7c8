"""The approval ledger: ``host.request_approval``, ``host.resolve_approval``, ``host.approvals``
and the proposals a supervisor escalated, kept durably in the store.

Theory of operation. An approval is a row of the :class:`~carnb.app.ports.ApprovalStore`
(``approvals.sqlite3``, or ``carnb_approvals`` on PostgreSQL), so it outlives the server. Each
change emits a host event (``approval.requested``, ``approval.resolved``). Who may resolve one
is decided here, from the session:
- an approval a session raised with ``host.request_approval`` is resolved by that session or by
  a host session (the notebook);
- a *system-level* approval (an escalated proposal) by any operator or host session, never by a
  session bound to an agent.
An approval needs ``required_approvals`` approvals from distinct sessions; one denial denies
it. An escalated proposal waits, bounded by the escalation timeout, for its approval to be
resolved (:meth:`ApprovalLedger.escalate`); when the wait ends unresolved the row is marked
``expired`` and the proposal is rejected. Store calls run in worker threads, one change at a
time (an ``asyncio.Lock``), so two resolutions never overwrite each other.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Mapping
from typing import Any

from carnb.app.events import HostEvents
from carnb.app.pending import Pending
from carnb.app.ports import ApprovalStore, Record
from carnb.app.schedule import in_thread
from carnb.app.supervision import Decision, Intent
from carnb.config import ESCALATION_TIMEOUT_S, LEDGER_LIST_MAX
from carnb.errors import Forbidden, InvalidParams, NotFound
from carnb.protocol.session import ClientSession

APPROVAL_REQUESTED = "approval.requested"
APPROVAL_RESOLVED = "approval.resolved"
PENDING, APPROVED, DENIED, EXPIRED = "pending", "approved", "denied", "expired"
MAX_TITLE_CHARS = 1000
MAX_TEXT_CHARS = 16 * 1024


class ApprovalLedger:
    def __init__(
        self,
        store: ApprovalStore,
        events: HostEvents,
        escalation_timeout_s: float = ESCALATION_TIMEOUT_S,
    ) -> None:
        self.store = store
        self.events = events
        self.escalation_timeout_s = escalation_timeout_s
        self._lock = asyncio.Lock()
        self._waiting: Pending[str] = Pending()  # escalations, by approval id

    # -- host.* ----------------------------------------------------------------------------
    async def request(self, session: ClientSession, p: Mapping[str, Any]) -> Record:
        title = p.get("title")
        if not isinstance(title, str) or not title.strip():
            raise InvalidParams("title is required and must be a non-empty string")
        description = p.get("description")
        if description is not None and not isinstance(description, str):
            raise InvalidParams("description must be a string")
        context = p.get("context")
        if context is not None and not isinstance(context, Mapping):
            raise InvalidParams("context must be an object")
        agent_id = p.get("agent_id")
        if agent_id is not None and not isinstance(agent_id, str):
            raise InvalidParams("agent_id must be a string")
        required = p.get("required_approvals", 1)
        if isinstance(required, bool) or not isinstance(required, int) or not 1 <= required <= 100:
            raise InvalidParams("required_approvals must be an integer from 1 to 100")
        approval = _new(
            title[:MAX_TITLE_CHARS],
            (description or "")[:MAX_TEXT_CHARS],
            dict(context or {}),
            agent_id or session.agent_id,
            session.client_id,
            required,
        )
        return await self._add(approval)

    async def resolve(self, session: ClientSession, p: Mapping[str, Any]) -> Record:
        approval_id, approved, notes = p.get("approval_id"), p.get("approved"), p.get("notes")
        if not isinstance(approval_id, str) or not approval_id:
            raise InvalidParams("approval_id is required and must be a string")
        if not isinstance(approved, bool):
            raise InvalidParams("approved is required and must be a boolean")
        if notes is not None and not isinstance(notes, str):
            raise InvalidParams("notes must be a string")
        async with self._lock:
            approval = await in_thread(self.store.get, approval_id)
            if approval is None:
                raise NotFound(f"no approval {approval_id}")
            _may_resolve(session, approval)
            if approval["status"] != PENDING:
                raise InvalidParams(
                    f"approval {approval_id} is already {approval['status']}; nothing changed"
                )
            if any(v["by"] == session.client_id for v in approval["votes"]):
                raise InvalidParams(f"session {session.client_id} already voted on {approval_id}")
            approval["votes"].append(
                {"by": session.client_id, "approved": approved, "notes": notes, "at": time.time()}
            )
            yes = sum(1 for v in approval["votes"] if v["approved"])
            if not approved or yes >= approval["required_approvals"]:
                approval["status"] = APPROVED if approved else DENIED
                approval["resolved_at"] = time.time()
                approval["resolution"] = {
                    "approved": approved,
                    "notes": notes,
                    "by": session.client_id,
                }
            await in_thread(self.store.put, approval)
        if approval["status"] != PENDING:
            self.events.emit(
                APPROVAL_RESOLVED,
                agent_id=approval.get("agent_id"),
                message=f"approval {approval_id} {approval['status']}",
                payload={"approval": approval},
            )
            self._waiting.resolve(approval_id, approval["status"])
        return approval

    async def list(
        self, *, pending_only: bool = True, limit: int = LEDGER_LIST_MAX
    ) -> list[Record]:
        return await in_thread(
            functools.partial(self.store.list, pending_only=pending_only, limit=limit)
        )

    # -- escalated intents -------------------------------------------------------------------
    async def escalate(self, intent: Intent, decision: Decision) -> Decision:
        """Put ``intent`` in the ledger (system-level) and wait for its resolution."""
        wire = intent.to_wire()
        approval = _new(
            f"proposal {intent.proposal.id} from session {intent.session.client_id}",
            decision.reason or "",
            {"intent": wire, "escalated_by": decision.by},
            intent.session.agent_id,
            None,
            1,
        )
        approval["kind"] = "escalation"
        approval_id = approval["id"]
        self._waiting.open(approval_id, lambda _future: approval_id)
        try:
            await self._add(approval)
            try:
                status = await self._waiting.wait(approval_id, self.escalation_timeout_s)
            except TimeoutError:
                status = await self._expire(approval_id)  # or resolved through another server
            if status == EXPIRED:
                return Decision(
                    "deny",
                    f"the escalation {approval_id} was not resolved within "
                    f"{self.escalation_timeout_s:g} s (fail-closed)",
                    "carnb",
                    time.time(),
                )
            resolved = await in_thread(self.store.get, approval_id)
            resolution = (resolved or {}).get("resolution") or {}
            kind = "allow" if status == APPROVED else "deny"
            reason = resolution.get("notes") or f"approval {approval_id} {status}"
            by = f"ledger:{resolution.get('by', '?')}"
            return Decision(kind, reason, by, time.time())  # type: ignore[arg-type]
        finally:
            self._waiting.discard(approval_id)

    async def _expire(self, approval_id: str) -> str:
        """Mark a pending approval expired; its status now (another server may have decided
        it meanwhile)."""
        async with self._lock:
            approval = await in_thread(self.store.get, approval_id)
            if approval is None:
                return EXPIRED
            if approval["status"] != PENDING:
                return str(approval["status"])
            approval["status"], approval["resolved_at"] = EXPIRED, time.time()
            await in_thread(self.store.put, approval)
        self.events.emit(
            APPROVAL_RESOLVED,
            agent_id=approval.get("agent_id"),
            message=f"approval {approval_id} expired",
            payload={"approval": approval},
        )
        return EXPIRED

    async def _add(self, approval: Record) -> Record:
        async with self._lock:
            await in_thread(self.store.put, approval)
        self.events.emit(
            APPROVAL_REQUESTED,
            agent_id=approval.get("agent_id"),
            message=f"approval requested: {approval['title']}",
            payload={"approval": approval},
        )
        return approval


def _new(
    title: str,
    description: str,
    context: dict[str, Any],
    agent_id: str | None,
    client_id: str | None,
    required: int,
) -> Record:
    return {
        "id": f"approval-{uuid.uuid4().hex[:16]}",
        "kind": "request",
        "title": title,
        "description": description,
        "context": context,
        "agent_id": agent_id,
        "client_id": client_id,  # None: system-level
        "status": PENDING,
        "required_approvals": required,
        "votes": [],
        "created_at": time.time(),
        "resolved_at": None,
        "resolution": None,
    }


def _may_resolve(session: ClientSession, approval: Record) -> None:
    if session.is_host:
        return
    owner = approval.get("client_id")
    if owner is not None and owner != session.client_id:
        raise Forbidden(
            f"forbidden: approval {approval['id']} was requested by another session; only that "
            "session or the host may resolve it",
            data={"reason": "not_owner"},
        )
    if owner is None and session.agent_id is not None:
        raise Forbidden(
            f"forbidden: approval {approval['id']} is system-level (an escalated proposal); a "
            "session bound to an agent may not resolve it",
            data={"reason": "agent_may_not_resolve"},
        )

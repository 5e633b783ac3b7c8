"""``%car supervise`` (the approvals widget) and ``%car approvals`` (the approval ledger:
list, approve, deny), as the notebook's session, which is host."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from carnb.kernel.calls import CarCommandError
from carnb.kernel.render import Message, Table
from carnb.kernel.style import short_id, when

if TYPE_CHECKING:
    from carnb.kernel.approvals import ApprovalsWidget
    from carnb.kernel.engine import NotebookEngine


def supervise(nb: NotebookEngine, args: argparse.Namespace) -> ApprovalsWidget:
    flt: dict[str, Any] = {}
    if args.tools:
        flt["tools"] = list(args.tools)
    if args.sessions:
        flt["sessions"] = list(args.sessions)
    if args.min_reversibility:
        flt["min_reversibility"] = args.min_reversibility
    widget: ApprovalsWidget = nb.calls.guard(lambda: nb.add_approvals(flt), what="%car supervise")
    return widget


def approvals(nb: NotebookEngine, args: argparse.Namespace) -> Table:
    params = {"include_resolved": bool(args.all)}
    rows = nb.calls.call("host.approvals", params, what="%car approvals")["approvals"]
    return Table(
        ("approval", "kind", "status", "title", "agent", "requested", "resolution"),
        [
            (
                short_id(a["id"], 16),
                a.get("kind", "request"),
                a["status"],
                a["title"],
                a.get("agent_id") or "",
                when(a["created_at"]),
                _resolution(a),
            )
            for a in rows
        ],
        title="approval ledger" + ("" if args.all else " (pending)"),
        empty="no approval is pending" if not args.all else "the ledger is empty",
    )


def approval_resolve(nb: NotebookEngine, args: argparse.Namespace) -> Message:
    approved = args.action == "approve"
    if not approved and not args.notes:
        raise CarCommandError("%car approvals deny needs --notes (why it is denied)")
    params: dict[str, Any] = {"approval_id": args.approval_id, "approved": approved}
    if args.notes:
        params["notes"] = args.notes
    done = nb.calls.call("host.resolve_approval", params, what=f"%car approvals {args.action}")
    return Message(f"approval `{done['id']}` is {done['status']}")


def _resolution(a: dict[str, Any]) -> str:
    r = a.get("resolution")
    if not r:
        return ""
    return f"{'approved' if r['approved'] else 'denied'} by {r['by']}" + (
        f": {r['notes']}" if r.get("notes") else ""
    )

"""``%car tools``, ``%car policy add|list|remove`` and ``%%car propose [--run]``: the tools
every session offers, the notebook session's policies, and proposals verified (always) and
executed (only with ``--run``) as the notebook's session."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from carnb.kernel.calls import CarCommandError
from carnb.kernel.render import Message
from carnb.kernel.render_tools import (
    PolicyList,
    ProposalOutcome,
    Proposed,
    ToolsTable,
    Verification,
)

if TYPE_CHECKING:
    from carnb.kernel.cellrun import Cell
    from carnb.kernel.engine import NotebookEngine

PROPOSAL_TIMEOUT = None  # a proposal takes as long as its actions' own deadlines allow


def tools(nb: NotebookEngine, args: argparse.Namespace) -> ToolsTable:
    """Every live session with its tools (its own plus the notebook's shared with it)."""
    rt = nb.calls.runtime
    sessions = nb.calls.on_loop(rt.atools(), what="%car tools")
    if args.session:
        sessions = [s for s in sessions if s["client_id"].startswith(args.session)]
    if args.tool:
        sessions = [
            {**s, "tools": [t for t in s["tools"] if t["name"] == args.tool]} for s in sessions
        ]
    sessions = [s for s in sessions if s["tools"]]
    title = f"tools named {args.tool!r}" if args.tool else "tools per session"
    result = ToolsTable(sessions, title=title)
    nb.known.remember("tool", result.tools)
    return result


def policy_add(nb: NotebookEngine, args: argparse.Namespace) -> Message:
    params: dict[str, Any] = {"name": args.policy_name, "rule": args.rule}
    for field in ("target", "key", "pattern", "value_json"):
        value = getattr(args, field)
        if value is not None:
            params[field] = value
    if args.value is not None:
        params["value"] = args.value
    nb.calls.call("policy.register", params, what="%car policy add")
    nb.known.remember("policy", [args.policy_name])
    return Message(
        f"policy {args.policy_name!r} ({args.rule}) registered on the notebook's session"
    )


def policy_list(nb: NotebookEngine, args: argparse.Namespace) -> PolicyList:
    reply = nb.calls.call("policy.list", {}, what="%car policy list")
    policies = list(reply.get("policies") or [])
    nb.known.remember("policy", [p["name"] for p in policies], replace=True)
    return PolicyList(policies)


def policy_remove(nb: NotebookEngine, args: argparse.Namespace) -> Message:
    reply = nb.calls.call("policy.unregister", {"name": args.policy}, what="%car policy remove")
    removed = int(reply.get("removed") or 0)
    if removed == 0:
        raise CarCommandError(
            f"%car policy remove: no policy named {args.policy!r}; `%car policy list` shows them"
        )
    return Message(f"policy {args.policy!r} removed ({removed})")


def propose(nb: NotebookEngine, args: argparse.Namespace, cell: Cell) -> Proposed:
    """``%%car propose``: verify the cell's JSON proposal; execute it only with ``--run``."""
    try:
        proposal = json.loads(cell.source)
    except ValueError as exc:
        raise CarCommandError(f"%%car propose: the cell is not JSON: {exc}") from None
    if not isinstance(proposal, dict):
        raise CarCommandError(
            '%%car propose: the cell must be a proposal {"actions": [{"id": ..., "type": ...}]}'
        )
    checked = nb.calls.call("verify", {"proposal": proposal}, what="%%car propose (verify)")
    verification = Verification(checked)
    if not args.run:
        return Proposed(verification, None)
    result = nb.calls.call(
        "proposal.submit",
        {"proposal": proposal},
        what="%%car propose --run",
        timeout=PROPOSAL_TIMEOUT,
    )
    return Proposed(verification, ProposalOutcome(result))

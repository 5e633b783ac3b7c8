"""Each session's latest proposal, action by action, from the runtime's proposal events.

:class:`ProposalProgress` is fed ``Runtime.watch_proposals`` events (``{session_id,
proposal_id, kind: "action_started" | "action_finished", action_id, tool, action_type,
attempt, result}``) on the server loop and keeps, per session, the proposal seen last: its
actions in the order they started, each ``running`` until its result arrives. The server
sends no "proposal ended" event, so a proposal counts as running while one of its actions is;
it stays shown (as the session's last proposal) until the session starts another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RUNNING = "running"
MAX_ACTIONS_KEPT = 200  # per proposal: a huge proposal shows its first ones and a count


@dataclass
class ActionProgress:
    action_id: str
    tool: str | None = None
    action_type: str | None = None
    status: str = RUNNING
    attempt: int = 1
    duration_ms: float | None = None
    error: str | None = None

    @property
    def name(self) -> str | None:
        """What the action does: its tool, else its type (``state_write``...); ``None`` when the
        events did not say."""
        return self.tool or self.action_type


@dataclass
class ProposalView:
    proposal_id: str
    actions: dict[str, ActionProgress] = field(default_factory=dict)
    dropped: int = 0  # actions past MAX_ACTIONS_KEPT

    @property
    def running(self) -> bool:
        return any(a.status == RUNNING for a in self.actions.values())

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for a in self.actions.values():
            out[a.status] = out.get(a.status, 0) + 1
        return out

    def as_dict(self) -> dict[str, Any]:
        """Plain data for the panel's rows."""
        return {
            "proposal_id": self.proposal_id,
            "running": self.running,
            "counts": self.counts(),
            "dropped": self.dropped,
            "actions": [
                {
                    "action_id": a.action_id,
                    "name": a.name,
                    "status": a.status,
                    "attempt": a.attempt,
                    "duration_ms": a.duration_ms,
                    "error": a.error,
                }
                for a in self.actions.values()
            ],
        }


class ProposalProgress:
    """The latest proposal of each session (server loop only)."""

    def __init__(self) -> None:
        self._by_session: dict[str, ProposalView] = {}

    def on_event(self, event: dict[str, Any]) -> None:
        client_id = str(event.get("session_id"))
        proposal_id = str(event.get("proposal_id"))
        view = self._by_session.get(client_id)
        if view is None or view.proposal_id != proposal_id:
            view = self._by_session[client_id] = ProposalView(proposal_id)
        action_id = str(event.get("action_id"))
        action = view.actions.get(action_id)
        if action is None:
            if len(view.actions) >= MAX_ACTIONS_KEPT:
                view.dropped += event.get("kind") == "action_started"
                return
            tool, action_type = event.get("tool"), event.get("action_type")
            action = view.actions[action_id] = ActionProgress(
                action_id,
                tool=str(tool) if tool else None,
                action_type=str(action_type) if action_type else None,
            )
        action.attempt = int(event.get("attempt") or 1)
        result = event.get("result")
        if event.get("kind") == "action_finished" and isinstance(result, dict):
            action.status = str(result.get("status"))
            action.duration_ms = result.get("duration_ms")
            action.error = result.get("error")
        else:
            action.status = RUNNING

    def of(self, client_id: str) -> dict[str, Any] | None:
        view = self._by_session.get(client_id)
        return None if view is None else view.as_dict()

    def forget_except(self, client_ids: set[str]) -> None:
        """Drop sessions no longer shown."""
        for client_id in [c for c in self._by_session if c not in client_ids]:
            del self._by_session[client_id]

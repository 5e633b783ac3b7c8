"""The approvals widget of ``%car supervise``: the person at the notebook decides.

Theory of operation. The widget subscribes the notebook's session as a supervisor
(``supervision.subscribe`` with the command's filter) and watches the gate
(``RuntimeView.watch_intents``, on the server loop). Each parked proposal gets a card: its
session and agent, its actions with their full parameters (the notebook is the host and may
read them), what its policies already deny, a countdown to the fail-closed deadline, the
decisions so far (a ``carnb.supervisor`` function's show here too) and Allow / Deny / Escalate
buttons with a reason field while it waits on the notebook. A decided proposal stays, greyed,
with its verdict as text and no buttons.

Threads. Cards are built and rewritten on the loop thread only (a one-second tick moves the
countdowns while anything waits). The buttons' messages are routed to carnb's kernel subshell
(:mod:`carnb.kernel.clicks`), so a click is handled while a cell is busy, e.g. the cell that
started the agent and waits for it; the click calls ``supervision.decide`` as the notebook's
session, from that thread, through the loop thread. The widget never holds a token: intents do
not carry any.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from carnb.errors import CarnbError
from carnb.kernel.clicks import route_to_subshell
from carnb.kernel.style import (
    ROOT,
    STYLESHEET,
    esc,
    note_html,
    page,
    short_id,
    table_html,
    title_html,
)

if TYPE_CHECKING:
    from carnb.kernel.view import RuntimeView

log = logging.getLogger("carnb.kernel.approvals")

KEPT = 50  # decided cards kept (the newest); waiting ones are always shown
PARAMS_CHARS = 2000  # a card shows this much of each action's parameters as JSON


def _params_text(parameters: Any) -> str:
    text = json.dumps(parameters, sort_keys=True, default=str, indent=1)
    return text if len(text) <= PARAMS_CHARS else text[:PARAMS_CHARS] + "…"


def _decision_text(d: dict[str, Any]) -> str:
    reason = f": {d['reason']}" if d.get("reason") else ""
    return f"{d['kind']} by {d['by']}{reason}"


def card_html(intent: dict[str, Any], me: str, now: float) -> str:
    """One parked or decided proposal, as HTML (also the static copy)."""
    outcome = intent.get("outcome")
    waiting = intent.get("outcome") is None and not intent.get("released")
    head = (
        f"proposal <code>{esc(intent['proposal_id'])}</code> from session "
        f"{short_id(intent['session_id']).html}"
        + (f" (agent <b>{esc(intent['agent_id'])}</b>)" if intent.get("agent_id") else "")
        + f", {esc(intent['reversibility'])}"
    )
    rows = [
        (
            a["id"],
            a.get("tool") or a["action_type"],
            a["reversibility"],
            _params_text(a["parameters"]),
        )
        for a in intent["actions"]
    ]
    body = table_html(("action", "tool", "reversibility", "parameters"), rows, width=PARAMS_CHARS)
    denials = intent.get("policy_denials") or []
    checks = (
        "policies: " + "; ".join(f"{d['action_id']}: {d['reason']}" for d in denials)
        if denials
        else "policies: nothing denied"
    )
    if waiting:
        left = max(0.0, intent["deadline"] - now)
        state = f"waiting: rejected (fail-closed) in {left:.0f} s unless decided"
        if me not in intent.get("waiting_on", []):
            state += " (not waiting on you)"
    elif outcome is not None and outcome["kind"] == "escalate" and not intent.get("released"):
        state = "escalated: waiting for the approval ledger (%car approvals)"
    else:
        state = "decided: " + (_decision_text(outcome) if outcome else "no decision")
    decisions = "".join(f"<li>{esc(_decision_text(d))}</li>" for d in intent.get("decisions", []))
    cls = "carnb-approval" + ("" if waiting else " carnb-muted")
    return (
        f'<div class="{cls}"><div class="carnb-h">{head}</div>{body}'
        f"{note_html(checks)}<div><b>{esc(state)}</b></div>"
        + (f"<ul>{decisions}</ul>" if decisions else "")
        + "</div>"
    )


class ApprovalsWidget:
    """One widget per ``%car supervise``; each subscribes the notebook with its filter."""

    def __init__(self, runtime: RuntimeView, flt: dict[str, Any]) -> None:
        import ipywidgets as w  # type: ignore[import-untyped]

        self._w = w
        self.runtime = runtime
        self.filter = flt
        self.me = str(runtime.notebook().get("client_id"))
        self.title = w.HTML()
        self.cards = w.VBox([])
        self.status = w.HTML()
        self.widget = w.VBox([self.title, self.cards, self.status])
        self.widget.add_class(ROOT)
        self.intents: dict[str, dict[str, Any]] = {}  # by intent id, in arrival order
        self.controls: dict[str, dict[str, Any]] = {}  # intent id -> its widgets
        self.routed = False  # clicks handled on carnb's subshell
        self._unwatch: Callable[[], None] | None = None
        self._tick: asyncio.TimerHandle | None = None
        self._closed = False

    # -- kernel thread ----------------------------------------------------------------------
    def start(self) -> ApprovalsWidget:
        self.runtime.call("supervision.subscribe", {"filter": self.filter}, timeout=30)
        self.runtime.run_on_loop(self._astart(), timeout=30)
        return self

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.runtime.running:
            try:
                self.runtime.run_on_loop(self._aclose(), timeout=10)
                self.runtime.call("supervision.unsubscribe", {}, timeout=10)
            except Exception:
                log.exception("closing the approvals widget failed")
        self.widget.close()

    def decide(self, intent_id: str, kind: str, reason: str | None = None) -> None:
        """What a button does (on carnb's subshell, or any thread but the host's)."""
        decision: dict[str, Any] = {"kind": kind}
        if reason:
            decision["reason"] = reason
        try:
            self.runtime.call(
                "supervision.decide", {"intent_id": intent_id, "decision": decision}, timeout=30
            )
            note = ""
        except CarnbError as exc:
            note = f"{kind} on {intent_id} did not land: {exc.message}"
        self.runtime.call_soon(self._show_status, note)

    def _repr_mimebundle_(self, **kw: Any) -> Any:
        bundle = self.widget._repr_mimebundle_(**kw)
        if isinstance(bundle, dict):
            bundle["text/plain"] = self.text()
            bundle["text/html"] = page(self.html(), cls="carnb-approvals-static")
        return bundle

    def html(self) -> str:
        now = time.time()
        cards = "".join(card_html(i, self.me, now) for i in self.intents.values())
        return self._title() + (cards or note_html("no proposal has waited yet"))

    def text(self) -> str:
        lines = [self._title_text()]
        for i in self.intents.values():
            outcome = i.get("outcome")
            verdict = _decision_text(outcome) if outcome else "waiting"
            lines.append(f"  {i['proposal_id']} from {i['session_id']}: {verdict}")
        return "\n".join(lines)

    def _title_text(self) -> str:
        described = json.dumps(self.filter, sort_keys=True) if self.filter else "every proposal"
        waiting = sum(1 for i in self.intents.values() if i.get("outcome") is None)
        return f"approvals: supervising {described}; {waiting} waiting"

    def _title(self) -> str:
        return title_html(self._title_text())

    # -- loop thread ------------------------------------------------------------------------
    async def _astart(self) -> None:
        self._unwatch = self.runtime.watch_intents(self._on_intent)
        self._render()

    async def _aclose(self) -> None:
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None

    def _on_intent(self, intent: dict[str, Any]) -> None:
        if self._closed:
            return
        if intent["id"] not in self.controls:  # its buttons exist before its card is listed
            self._make_controls(intent["id"])
        self.intents[intent["id"]] = intent
        decided = [k for k, i in self.intents.items() if i.get("released")]
        for key in decided[: max(0, len(decided) - KEPT)]:
            self.intents.pop(key, None)
            self.controls.pop(key, None)
        self._render()

    def _render(self) -> None:
        now = time.time()
        self.title.value = STYLESHEET + self._title()
        children = []
        for intent_id, intent in self.intents.items():
            controls = self.controls.get(intent_id) or self._make_controls(intent_id)
            controls["card"].value = card_html(intent, self.me, now)
            waiting = intent.get("outcome") is None and self.me in intent.get("waiting_on", [])
            for name in ("allow", "deny", "escalate", "reason"):
                controls[name].disabled = not waiting
            # the buttons only while a click can decide; the card says the verdict
            shown = (controls["card"], controls["row"]) if waiting else (controls["card"],)
            if controls["box"].children != shown:
                controls["box"].children = shown
            children.append(controls["box"])
        if tuple(children) != tuple(self.cards.children):
            self.cards.children = tuple(children)
        self._schedule_tick()

    def _make_controls(self, intent_id: str) -> dict[str, Any]:
        w = self._w
        reason = w.Text(placeholder="reason (needed to deny or escalate)")
        buttons = {
            kind: w.Button(description=kind.capitalize(), button_style=style)
            for kind, style in (("allow", "success"), ("deny", "danger"), ("escalate", "warning"))
        }
        for kind, button in buttons.items():
            button.on_click(lambda _b, kind=kind: self.decide(intent_id, kind, reason.value))
            self.routed = route_to_subshell(button) or self.routed
        card = w.HTML()
        row = w.HBox([*buttons.values(), reason])
        box = w.VBox([card, row])
        controls = {"card": card, "row": row, "box": box, "reason": reason, **buttons}
        self.controls[intent_id] = controls
        return controls

    def _schedule_tick(self) -> None:
        waiting = any(i.get("outcome") is None for i in self.intents.values())
        if self._tick is None and waiting and not self._closed:
            self._tick = asyncio.get_running_loop().call_later(1.0, self._on_tick)

    def _on_tick(self) -> None:
        self._tick = None
        self._render()

    def _show_status(self, note: str) -> None:
        self.status.value = f'<div class="carnb-error">{esc(note)}</div>' if note else ""

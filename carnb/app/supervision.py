"""The admission gate: proposals wait for their supervisors' verdict before anything runs.

Theory of operation. A *supervisor* is a session that called ``supervision.subscribe`` (or a
Python function of the notebook, :meth:`Supervision.add`), with a :class:`Filter`. When a
``proposal.submit`` (on any session) has been parsed, planned and checked against its policies,
:meth:`Supervision.admit` looks for supervisors whose filter matches it. With none (and no
action that always needs approval) it returns at once: one truth test of an empty dict. Else it
parks an :class:`Intent` (trimmed: ids, types, tools, reversibility, parameter key names and a
digest of each parameter map, never the values) in the one pending-call matcher
(:class:`~carnb.app.pending.Pending`), sends it to each matching supervisor as a
``supervision.intent`` notification, and waits.

The gate is conjunctive and fails closed:
- every supervisor that matched must ``allow``; the first ``deny`` rejects the proposal;
  ``escalate`` hands it to the approval ledger (:mod:`carnb.app.approvals`), whose decision
  then stands (bounded by the escalation timeout);
- no verdict within the decision timeout rejects it;
- a supervisor that unsubscribes or disconnects is forgotten as a supervisor, but the intents
  that wait on it keep waiting on it, so they run out their timeout and are rejected: dropping
  a socket never turns a pending deny into an allow.
``allow`` admits the proposal to the executor, where its policies' denials, the tools'
parameter checks and the state budget still apply.

Who may supervise is decided here from the session, never from a field it sends: operator and
host sessions may; a session bound to an agent may not (it would decide over other agents'
actions). Everything here runs on the server loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from carnb.agentir import Action, ActionProposal
from carnb.agentir.model import Reversibility
from carnb.app.pending import Pending
from carnb.app.schedule import in_thread
from carnb.config import DECISION_TIMEOUT_S
from carnb.errors import IntentGone, InvalidParams, SupervisionRefused
from carnb.protocol.session import ClientSession

Kind = Literal["allow", "deny", "escalate"]
KINDS: tuple[Kind, ...] = ("allow", "deny", "escalate")
SEVERITY = {
    Reversibility.REVERSIBLE: 0,
    Reversibility.COMPENSABLE: 1,
    Reversibility.IRREVERSIBLE: 2,
}
_ids = itertools.count(1)
# An intent of more actions has its digests made in a worker thread (a few us each).
INLINE_INTENT_ACTIONS = 256
log = logging.getLogger("carnb.app.supervision")


def may_supervise(session: ClientSession) -> None:
    """Raise unless ``session`` may supervise other sessions' proposals."""
    if session.agent_id is not None and not session.is_host:
        raise SupervisionRefused(
            f"forbidden: session {session.client_id} is bound to agent {session.agent_id!r}; "
            "an agent may not decide over other agents' actions (supervise from an operator "
            "session, authenticated with the launch token, or from the host)",
            data={"reason": "agent_may_not_supervise"},
        )


@dataclass(frozen=True)
class Filter:
    """Which proposals a supervisor sees; every field left out matches everything."""

    tools: frozenset[str] | None = None
    sessions: frozenset[str] | None = None
    min_reversibility: int | None = None  # a SEVERITY; actions this risky and worse

    @classmethod
    def parse(cls, raw: object) -> Filter:
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise InvalidParams("filter must be an object {tools?, sessions?, min_reversibility?}")
        unknown = set(raw) - {"tools", "sessions", "min_reversibility"}
        if unknown:
            raise InvalidParams(f"filter: unknown field(s) {sorted(unknown)}")
        level = raw.get("min_reversibility")
        severity: int | None = None
        if level is not None:
            if not isinstance(level, str):
                raise InvalidParams("filter.min_reversibility must be a string")
            # An unknown label sorts as most severe: over-reported, never filtered out.
            known = {r.value: s for r, s in SEVERITY.items()}
            severity = known.get(level, max(SEVERITY.values()))
        return cls(
            _names(raw.get("tools"), "filter.tools"),
            _names(raw.get("sessions"), "filter.sessions"),
            severity,
        )

    def matches(self, client_id: str, actions: Iterable[Action]) -> bool:
        if self.sessions is not None and client_id not in self.sessions:
            return False
        if self.tools is None and self.min_reversibility is None:
            return True
        for action in actions:
            if self.tools is not None and action.tool not in self.tools:
                continue
            if (
                self.min_reversibility is not None
                and SEVERITY[action.reversibility] < self.min_reversibility
            ):
                continue
            return True
        return False

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.tools is not None:
            out["tools"] = sorted(self.tools)
        if self.sessions is not None:
            out["sessions"] = sorted(self.sessions)
        if self.min_reversibility is not None:
            out["min_reversibility"] = next(
                r.value for r, s in SEVERITY.items() if s == self.min_reversibility
            )
        return out


def _names(raw: object, where: str) -> frozenset[str] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise InvalidParams(f"{where} must be an array of strings")
    return frozenset(raw)


@dataclass(frozen=True)
class Decision:
    kind: Kind
    reason: str | None
    by: str  # the supervisor: a session id, or "python:<name>" for a notebook function
    at: float

    @classmethod
    def parse(cls, raw: object, by: str) -> Decision:
        if not isinstance(raw, Mapping):
            raise InvalidParams("decision must be an object {kind: allow|deny|escalate, reason?}")
        kind, reason = raw.get("kind"), raw.get("reason")
        if kind not in KINDS:
            raise InvalidParams(f"decision.kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if reason is not None and not isinstance(reason, str):
            raise InvalidParams("decision.reason must be a string")
        if kind != "allow" and not reason:
            raise InvalidParams(f"decision.reason is required for {kind}")
        return cls(kind, reason, by, time.time())

    def to_wire(self) -> dict[str, Any]:
        return {"kind": self.kind, "reason": self.reason, "by": self.by, "at": self.at}


Notify = Callable[["Intent"], None]


@dataclass
class Supervisor:
    key: str  # a session's client_id, or "python:<name>"
    filter: Filter
    notify: Notify
    session: ClientSession | None = None


@dataclass
class Intent:
    """One parked proposal and the verdicts it still waits for."""

    id: str
    proposal: ActionProposal
    session: ClientSession  # the proposer
    scope: Any
    created_at: float
    deadline: float  # time.time() when it fails closed
    waiting_on: set[str]
    needs_approval: bool  # some action always waits for a decision (approve=True tools)
    # What the policies already deny ({policy_name, action_id, reason}): it stays denied even
    # when the proposal is allowed.
    denials: list[Any] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    outcome: Decision | None = None
    released: bool = False  # its proposal left the gate (to run, or rejected)
    _wire: dict[str, Any] | None = field(default=None, repr=False)

    def to_wire(self) -> dict[str, Any]:
        """The trimmed ``SupervisionIntent``: never a parameter value (made once: the digests
        are linear in the proposal)."""
        if self._wire is None:
            self._wire = self._trim()
        return {**self._wire, "actions": list(self._wire["actions"])}

    def _trim(self) -> dict[str, Any]:
        worst = max((SEVERITY[a.reversibility] for a in self.proposal.actions), default=0)
        out: dict[str, Any] = {
            "id": self.id,
            "proposal_id": self.proposal.id,
            "source": self.proposal.source,
            "session_id": self.session.client_id,
            "agent_id": self.session.agent_id,
            "reversibility": next(r.value for r, s in SEVERITY.items() if s == worst),
            "created_at": self.created_at,
            "deadline": self.deadline,
            "actions": [_trimmed(a) for a in self.proposal.actions],
        }
        if self.scope is not None:
            out["scope"] = self.scope
        return out

    def detail(self) -> dict[str, Any]:
        """The intent with every action's full parameters and the verdicts so far: for the
        host (the notebook), which may read them."""
        out = self.to_wire()
        out["actions"] = [
            {**trimmed, "parameters": action.parameters}
            for trimmed, action in zip(out["actions"], self.proposal.actions, strict=True)
        ]
        out["policy_denials"] = list(self.denials)
        out["decisions"] = [d.to_wire() for d in self.decisions]
        out["waiting_on"] = sorted(self.waiting_on)
        out["outcome"] = self.outcome.to_wire() if self.outcome is not None else None
        out["released"] = self.released
        return out


def _trimmed(action: Action) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": action.id,
        "action_type": str(action.type),
        "reversibility": action.reversibility.value,
        "parameter_keys": sorted(action.parameters),
        "parameters_digest": digest(action.parameters),
    }
    if action.tool is not None:
        out["tool"] = action.tool
    return out


def digest(parameters: Mapping[str, Any]) -> str:
    """``sha256:`` of the parameter map as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(parameters, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


Escalate = Callable[["Intent", Decision], Any]


class Supervision:
    """Supervisors and parked intents (one per server)."""

    def __init__(self, decision_timeout_s: float = DECISION_TIMEOUT_S) -> None:
        self.decision_timeout_s = decision_timeout_s
        self._supervisors: dict[str, Supervisor] = {}
        self._intents: Pending[Intent] = Pending()
        self._watchers: list[Callable[[Intent], None]] = []  # the notebook's widget

    def __len__(self) -> int:
        return len(self._supervisors)

    @property
    def supervising(self) -> bool:
        """Whether any supervisor is subscribed (else no proposal waits, but those that always
        need approval)."""
        return bool(self._supervisors)

    # -- supervisors -----------------------------------------------------------------------
    def subscribe(self, session: ClientSession, flt: Filter) -> dict[str, Any]:
        may_supervise(session)
        notifier = session.notifier

        def notify(intent: Intent) -> None:
            if notifier is not None and not session.closed:
                notifier("supervision.intent", intent.to_wire())

        self._supervisors[session.client_id] = Supervisor(session.client_id, flt, notify, session)
        return {
            "subscribed": True,
            "decision_timeout_ms": int(self.decision_timeout_s * 1000),
            "supervisors": len(self._supervisors),
        }

    def unsubscribe(self, key: str) -> bool:
        """Stop sending intents to ``key``; what it left parked still waits on it."""
        return self._supervisors.pop(key, None) is not None

    def add(self, key: str, flt: Filter, notify: Notify) -> None:
        """An in-process supervisor (a notebook function): ``notify`` is called on the loop."""
        self._supervisors[key] = Supervisor(key, flt, notify)

    def supervisors(self) -> list[dict[str, Any]]:
        return [{"key": s.key, "filter": s.filter.describe()} for s in self._supervisors.values()]

    def watch(self, fn: Callable[[Intent], None]) -> Callable[[], None]:
        """Call ``fn(intent)`` on the loop when an intent is parked, decided or escalated, and
        once more when its proposal leaves the gate."""
        self._watchers.append(fn)
        return lambda: self._watchers.remove(fn) if fn in self._watchers else None

    # -- intents ---------------------------------------------------------------------------
    def pending(self, key: str | None) -> list[Intent]:
        """Intents still waiting, oldest first: those waiting on ``key`` (None: all)."""
        return [
            i for i in self._intents if i.outcome is None and (key is None or key in i.waiting_on)
        ]

    def decide(self, key: str, intent_id: object, decision: Decision) -> Intent:
        if not isinstance(intent_id, str) or not intent_id:
            raise InvalidParams("intent_id is required and must be a string")
        intent = self._intents.get(intent_id)
        if intent is None or intent.outcome is not None:
            raise IntentGone(
                f"intent {intent_id} is not parked: unknown, already decided or timed out "
                "(your decision did not land)"
            )
        if key not in intent.waiting_on:
            raise IntentGone(
                f"intent {intent_id} is not waiting on your decision (you decided it already, "
                "or you were not supervising its proposal when it arrived)"
            )
        intent.waiting_on.discard(key)
        intent.decisions.append(decision)
        if decision.kind != "allow" or not intent.waiting_on:
            intent.outcome = decision
            self._intents.resolve(intent.id, decision)
        self._changed(intent)
        return intent

    def watching(self, client_id: str, actions: Iterable[Action]) -> list[Supervisor]:
        """The supervisors whose filter matches a proposal of ``client_id``."""
        if not self._supervisors:
            return []
        actions = tuple(actions)
        return [
            s
            for s in self._supervisors.values()
            if s.key != client_id and s.filter.matches(client_id, actions)
        ]

    async def admit(
        self,
        session: ClientSession,
        proposal: ActionProposal,
        scope: Any,
        *,
        needs_approval: bool,
        escalate: Escalate,
        denials: list[Any] | None = None,
    ) -> Intent | None:
        """Park ``proposal`` until it is decided; None when nobody supervises it (at once).
        The returned intent's ``outcome`` is the verdict that stands; a timeout is a deny."""
        if not self._supervisors and not needs_approval:
            return None
        matched = self.watching(session.client_id, proposal.actions)
        if not matched and not needs_approval:
            return None
        now = time.time()
        intent_id = f"intent-{next(_ids)}-{proposal.id}"[:128]
        intent = self._intents.open(
            intent_id,
            lambda _future: Intent(
                intent_id,
                proposal,
                session,
                scope,
                now,
                now + self.decision_timeout_s,
                {s.key for s in matched},
                needs_approval,
                list(denials or ()),
            ),
        )
        try:
            if not matched:  # always needs approval, and nobody supervises: the ledger decides
                intent.outcome = Decision(
                    "escalate", "this action always needs approval", "carnb", now
                )
                intent.decisions.append(intent.outcome)
            else:
                if len(proposal.actions) > INLINE_INTENT_ACTIONS:  # digests off the loop
                    await in_thread(intent.to_wire)
                self._changed(intent)
                for supervisor in matched:
                    supervisor.notify(intent)
                try:
                    await self._intents.wait(intent_id, self.decision_timeout_s)
                except TimeoutError:
                    intent.outcome = Decision(
                        "deny",
                        f"no decision within {self.decision_timeout_s:g} s (fail-closed)",
                        "carnb",
                        time.time(),
                    )
                    intent.decisions.append(intent.outcome)
            if intent.outcome is not None and intent.outcome.kind == "escalate":
                self._changed(intent)
                final = await escalate(intent, intent.outcome)
                intent.decisions.append(final)
                intent.outcome = final
            return intent
        finally:
            if intent.outcome is None:  # the proposer left (cancelled): nothing runs
                intent.outcome = Decision(
                    "deny", "the proposal was cancelled", "carnb", time.time()
                )
            intent.released = True
            self._intents.discard(intent_id)
            self._changed(intent)

    def _changed(self, intent: Intent) -> None:
        for fn in list(self._watchers):
            try:
                fn(intent)
            except Exception:
                log.exception("supervision watcher failed")


# -- a notebook function as a supervisor ----------------------------------------------------------
Judge = Callable[[dict[str, Any]], Any]


def judged(answer: Any, by: str) -> Decision:
    """A judge's answer as a decision: ``"allow"``, ``(kind, reason)`` or ``{kind, reason?}``."""
    if isinstance(answer, str):
        return Decision.parse({"kind": answer}, by)
    if isinstance(answer, tuple) and len(answer) == 2:
        return Decision.parse({"kind": answer[0], "reason": answer[1]}, by)
    if isinstance(answer, Mapping):
        return Decision.parse(answer, by)
    raise InvalidParams(f"a supervisor returns allow, deny or escalate, got {answer!r}")


def function_supervisor(
    supervision: Supervision, key: str, judge: Judge, timeout_s: float
) -> Notify:
    """What :meth:`Supervision.add` calls for a notebook function: ``judge(intent)`` (the
    intent with full parameters) runs in a worker thread, never on the kernel's thread; an
    exception, a malformed answer or no answer within ``timeout_s`` is a deny."""
    running: set[asyncio.Task[None]] = set()

    async def ask(intent: Intent) -> None:
        detail = intent.detail()
        try:
            async with asyncio.timeout(timeout_s):
                answer = await in_thread(judge, detail)
            decision = judged(answer, key)
        except TimeoutError:
            decision = Decision("deny", f"{key} gave no answer within {timeout_s:g} s", key, _now())
        except Exception as exc:
            decision = Decision("deny", f"{key} failed: {type(exc).__name__}: {exc}", key, _now())
        # IntentGone: it timed out meanwhile, or another supervisor's deny decided it
        with contextlib.suppress(IntentGone):
            supervision.decide(key, intent.id, decision)

    def notify(intent: Intent) -> None:
        task = asyncio.ensure_future(ask(intent))
        running.add(task)
        task.add_done_callback(running.discard)

    return notify


def _now() -> float:
    return time.time()

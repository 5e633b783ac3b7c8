"""Static verification of a proposal (the WebSocket ``verify`` method). No tool is called.

Every check is one linear pass (or a DAG pass from :mod:`carnb.agentir.dag`), so verifying
10,000 actions costs about ten times verifying 1,000. Each finding carries ``severity`` and the
evidence ``tier`` of the check that produced it; ``evidence`` lists what every check covers,
what it cannot, and a 0-1 coverage ``confidence`` (not a probability of success).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from carnb.errors import InvalidParams

from .dag import Plan, build_plan
from .model import (
    ActionProposal,
    ActionType,
    CheckRecord,
    EvidenceTier,
    Reversibility,
    Severity,
    VerificationResult,
    VerifyIssue,
)
from .parse import MAX_ACTIONS, parse_proposal
from .tools import ToolRegistry
from .values import MISSING, precondition_failure, schema_violations

DEFAULT_MAX_ACTIONS = MAX_ACTIONS
LOOP_THRESHOLD = 3  # this many identical tool calls read as a runaway loop
MAX_LISTED_REGIONS = 50
PROPOSAL = "proposal"  # action_id of findings about the whole proposal


@dataclass
class _Check:
    name: str
    verifies: str
    cannot_verify: str
    tier: EvidenceTier = EvidenceTier.DECISION_PROCEDURE
    ran: bool = True
    issues: list[VerifyIssue] = field(default_factory=list)

    def add(self, action_id: str, severity: Severity, message: str) -> None:
        self.issues.append(
            {
                "action_id": action_id,
                "severity": severity.value,
                "message": message,
                "tier": self.tier.value,
            }
        )

    def record(self) -> CheckRecord:
        return {
            "name": self.name,
            "ran": self.ran,
            "verifies": self.verifies,
            "cannot_verify": self.cannot_verify,
            "findings": len(self.issues),
            "tier": self.tier.value,
        }


def verify(
    proposal: ActionProposal,
    *,
    tools: ToolRegistry | None = None,
    initial_state: Mapping[str, Any] | None = None,
    max_actions: int = DEFAULT_MAX_ACTIONS,
) -> VerificationResult:
    """Verify ``proposal`` against ``tools`` (``None``: existence and schema checks are
    skipped) starting from ``initial_state``."""
    actions = proposal.actions
    plan = build_plan(actions)
    checks = [
        _resource_bounds(proposal, max_actions),
        _loop_detection(proposal),
        *_forward_walk(proposal, plan, initial_state or {}),
        _tool_existence(proposal, tools),
        _param_schema(proposal, tools),
        _compensation(proposal, tools),
        _write_conflicts(plan),
        _cycles(proposal, plan),
    ]
    issues = [issue for check in checks for issue in check.issues]
    simulated = _simulate(proposal, plan, initial_state or {})
    return {
        "valid": not any(i["severity"] == Severity.ERROR for i in issues),
        "issues": issues,
        "simulated_state": simulated,
        "execution_levels": [[actions[i].id for i in level] for level in plan.levels],
        "conflicts": plan.conflicts,
        "evidence": {
            "checks": [c.record() for c in checks],
            "assumptions": _assumptions(tools),
            "untested_regions": _untested_regions(proposal),
            "residual_risks": _residual_risks(proposal, plan, issues),
            "confidence": _confidence(proposal, checks),
        },
    }


def verify_params(params: Any, tools: ToolRegistry | None) -> VerificationResult:
    """``verify {proposal, initial_state?, max_actions?}`` straight from the wire."""
    if not isinstance(params, Mapping):
        raise InvalidParams("params must be an object")
    if "proposal" not in params:
        raise InvalidParams("proposal is required")
    proposal = parse_proposal(params["proposal"])
    state = params.get("initial_state") or {}
    if not isinstance(state, Mapping):
        raise InvalidParams("initial_state must be an object")
    limit = params.get("max_actions", DEFAULT_MAX_ACTIONS)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidParams("max_actions must be a positive integer")
    return verify(proposal, tools=tools, initial_state=state, max_actions=limit)


def _resource_bounds(proposal: ActionProposal, max_actions: int) -> _Check:
    check = _Check(
        "resource_bounds",
        f"the proposal has at most {max_actions} actions",
        "run time, memory or cost of any single action",
    )
    count = len(proposal.actions)
    if count > max_actions:
        check.add(PROPOSAL, Severity.WARNING, f"{count} actions exceed the limit of {max_actions}")
    return check


def _call_key(tool: str, parameters: Mapping[str, Any]) -> str:
    return tool + "\0" + json.dumps(parameters, sort_keys=True, default=str)


def _loop_detection(proposal: ActionProposal) -> _Check:
    check = _Check(
        "loop_detection",
        f"no tool call with identical parameters appears {LOOP_THRESHOLD} or more times",
        "repetition with varying parameters, or repeats that are legitimate (polling)",
        tier=EvidenceTier.HEURISTIC,
    )
    counts: Counter[str] = Counter()
    tool_of: dict[str, str] = {}
    for action in proposal.actions:
        if action.type is ActionType.TOOL_CALL and action.tool is not None:
            key = _call_key(action.tool, action.parameters)
            counts[key] += 1
            tool_of.setdefault(key, action.tool)
    for key, count in counts.items():
        if count >= LOOP_THRESHOLD:
            check.add(
                PROPOSAL,
                Severity.ERROR,
                f"tool '{tool_of[key]}' is called {count} times with identical parameters "
                "(possible loop)",
            )
    return check


def _effects(proposal: ActionProposal, index: int) -> dict[str, Any]:
    """The declared state an action leaves: expected_effects plus a state_write's key."""
    action = proposal.actions[index]
    out = dict(action.expected_effects)
    if action.type is ActionType.STATE_WRITE and action.state_key is not None:
        out[action.state_key] = action.parameters.get("value")
    return out


def _forward_walk(
    proposal: ActionProposal, plan: Plan, initial: Mapping[str, Any]
) -> tuple[_Check, _Check]:
    """Walk the levels applying declared effects; a blocked action's effects are applied
    anyway, so one failure does not bury the others under knock-on findings."""
    pre = _Check(
        "preconditions",
        "each precondition holds in the state the declared effects lead to",
        "values that tools produce at run time beyond their expected_effects",
    )
    deps = _Check(
        "state_dependencies",
        "each state dependency exists before the action that reads it",
        "reads a tool makes without declaring them",
    )
    state = dict(initial)
    for level in plan.levels:
        for i in level:
            action = proposal.actions[i]
            for condition in action.preconditions:
                why = precondition_failure(condition, state.get(condition.key, MISSING))
                if why is not None:
                    pre.add(action.id, Severity.ERROR, f"precondition cannot hold: {why}")
            for key in dict.fromkeys(action.state_dependencies):
                if key not in state:
                    deps.add(
                        action.id,
                        Severity.ERROR,
                        f"state dependency '{key}' is neither in the initial state nor written "
                        "by an earlier action",
                    )
        for i in level:
            state.update(_effects(proposal, i))
    return pre, deps


def _simulate(proposal: ActionProposal, plan: Plan, initial: Mapping[str, Any]) -> dict[str, Any]:
    state = dict(initial)
    for level in plan.levels:
        for i in level:
            state.update(_effects(proposal, i))
    return state


def _tool_existence(proposal: ActionProposal, tools: ToolRegistry | None) -> _Check:
    check = _Check(
        "tool_existence",
        "every tool_call names a registered tool",
        "whether a registered tool does what its name and description say",
        ran=tools is not None,
    )
    if tools is not None:
        for action in proposal.actions:
            if action.type is ActionType.TOOL_CALL and action.tool not in tools:
                check.add(action.id, Severity.ERROR, f"tool '{action.tool}' is not registered")
    return check


def _param_schema(proposal: ActionProposal, tools: ToolRegistry | None) -> _Check:
    check = _Check(
        "param_schema",
        "tool_call parameters match the tool's schema (type, required, properties, items, enum)",
        "formats, ranges and relations between parameters",
        ran=bool(tools),
    )
    if tools:
        for action in proposal.actions:
            schema = tools.get(action.tool or "") if action.type is ActionType.TOOL_CALL else None
            if schema is not None:
                for problem in schema_violations(schema.parameters, action.parameters):
                    check.add(action.id, Severity.ERROR, f"tool '{schema.name}': {problem}")
    return check


def _compensation(proposal: ActionProposal, tools: ToolRegistry | None) -> _Check:
    check = _Check(
        "compensation_resolution",
        "each compensation names a registered tool or an action of this proposal, and each "
        "compensable action declares one",
        "whether the compensation really undoes the action",
        ran=tools is not None,
    )
    if tools is None:
        return check
    ids = {a.id for a in proposal.actions}
    for action in proposal.actions:
        comp = action.compensation
        if comp is None:
            if action.reversibility is Reversibility.COMPENSABLE:
                check.add(
                    action.id, Severity.WARNING, "compensable action declares no compensation"
                )
        elif comp.type == "tool" and comp.tool not in tools:
            check.add(
                action.id, Severity.ERROR, f"compensation tool '{comp.tool}' is not registered"
            )
        elif comp.type == "action_ref" and comp.action_id not in ids:
            check.add(
                action.id,
                Severity.ERROR,
                f"compensation action '{comp.action_id}' is not in the proposal",
            )
    return check


def _write_conflicts(plan: Plan) -> _Check:
    check = _Check(
        "write_conflicts",
        "actions writing the same key are ordered by a dependency",
        "effects that clash without naming the same key",
    )
    for a, b, key in plan.conflicts:
        check.add(
            a, Severity.WARNING, f"writes '{key}' like action '{b}' with no ordering between them"
        )
    return check


def _cycles(proposal: ActionProposal, plan: Plan) -> _Check:
    check = _Check(
        "dependency_cycles",
        "the state dependencies form a DAG, so every action gets an execution level",
        "ordering a tool relies on without declaring it",
    )
    in_cycle = {action_id for cycle in plan.cycles for action_id in cycle}
    downstream = sum(1 for i in plan.blocked if proposal.actions[i].id not in in_cycle)
    for cycle in plan.cycles:
        message = f"dependency cycle: {' -> '.join(cycle)}"
        if downstream:
            message += f" ({downstream} action(s) downstream of cycles cannot run)"
        check.add(cycle[0], Severity.ERROR, message)
    return check


def _assumptions(tools: ToolRegistry | None) -> list[str]:
    out = [
        "the initial state given is the state the proposal will start from",
        "tools produce exactly their declared expected_effects",
    ]
    if not tools:
        out.append("tool_call parameters are unchecked (no tool schemas registered)")
    return out


def _untested_regions(proposal: ActionProposal) -> list[str]:
    regions = [
        f"run-time output of tool '{a.tool}' (action {a.id})"
        for a in proposal.actions
        if a.type is ActionType.TOOL_CALL
    ]
    if len(regions) > MAX_LISTED_REGIONS:
        rest = len(regions) - MAX_LISTED_REGIONS
        regions = [*regions[:MAX_LISTED_REGIONS], f"... and {rest} more tool call(s)"]
    return regions


def _residual_risks(proposal: ActionProposal, plan: Plan, issues: list[VerifyIssue]) -> list[str]:
    risks: list[str] = []
    if plan.conflicts:
        risks.append(f"{len(plan.conflicts)} unordered write conflict(s): the last writer wins")
    warnings = sum(1 for i in issues if i["severity"] == Severity.WARNING)
    if warnings:
        risks.append(f"{warnings} warning(s) do not affect validity")
    if any(a.type is ActionType.TOOL_CALL for a in proposal.actions):
        risks.append("results that depend on run-time tool output are not verified")
    return risks


def _confidence(proposal: ActionProposal, checks: list[_Check]) -> float:
    """Share of checks that ran, less up to 10% for the share of actions whose outcome only a
    tool decides at run time. A coverage signal, not a chance of success."""
    coverage = sum(c.ran for c in checks) / len(checks)
    total = len(proposal.actions)
    tool_share = (
        sum(1 for a in proposal.actions if a.type is ActionType.TOOL_CALL) / total if total else 0.0
    )
    return round(coverage * (1.0 - 0.1 * tool_share), 4)

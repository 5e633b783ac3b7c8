"""Built-in action policies (``deny_tool``, ``deny_tool_param``, ``require_state``, and
``require_approval``, which denies nothing: its actions wait for a supervisor's decision).

``policy.register`` takes ``{name, rule, target?, key?, value?, pattern?}``; a rule that is
unknown or misses a required field is refused with ``InvalidParams`` and nothing is added.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from carnb.errors import InvalidParams

from .model import Action, ActionType, PolicyViolation
from .values import MISSING, json_equal

RULES = ("deny_tool", "deny_tool_param", "require_state", "require_approval")
MAX_REASONS_PER_ACTION = 8  # denials reported per action; the rest add nothing a caller needs
StateLookup = Callable[[str], Any]  # key -> value, or values.MISSING


@dataclass(frozen=True)
class Policy:
    name: str
    rule: str
    target: str | None = None
    key: str | None = None
    pattern: str | None = None
    value: Any = None

    @property
    def description(self) -> str:
        if self.rule == "deny_tool":
            return f"deny tool '{self.target}'"
        if self.rule == "deny_tool_param":
            return f"deny tool '{self.target}' when param '{self.key}' contains '{self.pattern}'"
        if self.rule == "require_approval":
            when = f" when param '{self.key}' contains '{self.pattern}'" if self.key else ""
            return f"tool '{self.target}' waits for a decision{when}"
        return f"require state '{self.key}' == {json.dumps(self.value)}"

    def state_reason(self, state: StateLookup) -> str | None:
        """Why a ``require_state`` policy denies every action now, or ``None``."""
        assert self.key is not None
        current = state(self.key)
        if current is MISSING or not json_equal(current, self.value):
            return f"state '{self.key}' must equal {json.dumps(self.value)}"
        return None

    def wants_approval(self, action: Action) -> bool:
        """Whether this ``require_approval`` policy makes ``action`` wait for a decision."""
        if action.type is not ActionType.TOOL_CALL or action.tool != self.target:
            return False
        if self.key is None or self.pattern is None:
            return True
        return self.key in action.parameters and self.pattern in _as_text(
            action.parameters[self.key]
        )

    def check(self, action: Action, state: StateLookup) -> str | None:
        """Why this policy denies ``action``, or ``None``."""
        if self.rule == "require_approval":
            return None
        if self.rule == "require_state":
            return self.state_reason(state)
        if action.type is not ActionType.TOOL_CALL or action.tool != self.target:
            return None
        if self.rule == "deny_tool":
            return f"tool '{self.target}' is denied"
        assert self.key is not None and self.pattern is not None
        if self.key in action.parameters and self.pattern in _as_text(action.parameters[self.key]):
            return f"param '{self.key}' matches denied pattern '{self.pattern}'"
        return None


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def parse_policy(raw: Any) -> Policy:
    """A ``PolicyDefinition``; extra fields (``session_id``, ``description``) are ignored."""
    if not isinstance(raw, dict):
        raise InvalidParams("policy must be an object")
    name, rule = raw.get("name"), raw.get("rule")
    if not isinstance(name, str) or not name:
        raise InvalidParams("name must be a non-empty string")
    if rule not in RULES:
        raise InvalidParams(f"rule must be one of {', '.join(RULES)} (got {rule!r})")

    def text(field: str) -> str:
        v = raw.get(field)
        if not isinstance(v, str) or not v:
            raise InvalidParams(f"{field} is required for rule {rule} (a non-empty string)")
        return v

    if rule == "deny_tool":
        return Policy(name, rule, target=text("target"))
    if rule == "deny_tool_param":
        return Policy(name, rule, target=text("target"), key=text("key"), pattern=text("pattern"))
    if rule == "require_approval":
        if (raw.get("key") is None) != (raw.get("pattern") is None):
            raise InvalidParams("require_approval takes key and pattern together, or neither")
        if raw.get("key") is None:
            return Policy(name, rule, target=text("target"))
        return Policy(name, rule, target=text("target"), key=text("key"), pattern=text("pattern"))
    if "value" in raw:
        value = raw["value"]
    elif "value_json" in raw:  # the FFI spelling: the value JSON-encoded as a string
        try:
            value = json.loads(text("value_json"))
        except ValueError as exc:
            raise InvalidParams(f"value_json is not valid JSON: {exc}") from None
    else:
        raise InvalidParams("value is required for rule require_state")
    return Policy(name, rule, key=text("key"), value=value)


class PolicySet:
    """Policies in force, in registration order. A name may cover several policies."""

    def __init__(self) -> None:
        self._policies: list[Policy] = []

    def register(self, raw: Any) -> Policy:
        policy = parse_policy(raw)
        self._policies.append(policy)
        return policy

    def add(self, policy: Policy) -> None:
        self._policies.append(policy)

    def copy(self) -> PolicySet:
        """An independent set with the same policies (a snapshot for one proposal)."""
        out = PolicySet()
        out._policies = list(self._policies)
        return out

    def unregister(self, name: str) -> int:
        before = len(self._policies)
        self._policies = [p for p in self._policies if p.name != name]
        return before - len(self._policies)

    def describe(self) -> list[dict[str, str]]:
        return [{"name": p.name, "description": p.description} for p in self._policies]

    def __len__(self) -> int:
        return len(self._policies)

    def approval_needed(self, actions: tuple[Action, ...]) -> bool:
        """Whether a ``require_approval`` policy makes any of ``actions`` wait for a decision."""
        wanting = [p for p in self._policies if p.rule == "require_approval"]
        return bool(wanting) and any(p.wants_approval(a) for a in actions for p in wanting)

    def violations(self, actions: tuple[Action, ...], state: StateLookup) -> list[PolicyViolation]:
        """(policy, action) denials in action then registration order, at most
        ``MAX_REASONS_PER_ACTION`` per action. Linear: ``require_state`` policies are decided
        once (they do not depend on the action) and tool policies are looked up by target."""
        failing_state: list[tuple[int, Policy, str]] = []
        by_tool: dict[str | None, list[tuple[int, Policy]]] = {}
        for rank, policy in enumerate(self._policies):
            if policy.rule == "require_state":
                reason = policy.state_reason(state)
                if reason is not None and len(failing_state) < MAX_REASONS_PER_ACTION:
                    failing_state.append((rank, policy, reason))  # later ones never show
            elif policy.rule != "require_approval":  # it denies nothing
                by_tool.setdefault(policy.target, []).append((rank, policy))
        found: list[PolicyViolation] = []
        for action in actions:
            tool_policies = (
                by_tool.get(action.tool, []) if action.type is ActionType.TOOL_CALL else []
            )
            if not tool_policies and not failing_state:
                continue
            reasons: list[tuple[int, str, str]] = [(r, p.name, why) for r, p, why in failing_state]
            for rank, policy in tool_policies:
                why = policy.check(action, state)
                if why is not None:
                    reasons.append((rank, policy.name, why))
            reasons.sort(key=lambda item: item[0])
            for _, name, why in reasons[:MAX_REASONS_PER_ACTION]:
                found.append({"policy_name": name, "action_id": action.id, "reason": why})
        return found

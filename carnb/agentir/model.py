"""Typed shapes of the agent IR (agent-ir-spec.md): proposals, actions, tool schemas.

Parsed objects are frozen dataclasses; wire results are plain JSON dicts described by
TypedDicts. Parsing lives in :mod:`carnb.agentir.parse`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, TypedDict


class ActionType(StrEnum):
    TOOL_CALL = "tool_call"
    STATE_WRITE = "state_write"
    STATE_READ = "state_read"
    ASSERTION = "assertion"


class FailureBehavior(StrEnum):
    ABORT = "abort"
    RETRY = "retry"
    SKIP = "skip"


class Reversibility(StrEnum):
    REVERSIBLE = "reversible"
    COMPENSABLE = "compensable"
    IRREVERSIBLE = "irreversible"


class InvocationMode(StrEnum):
    ONE_SHOT = "one_shot"
    STREAMING = "streaming"
    LONG_RUNNING = "long_running"


class ActionStatus(StrEnum):
    PROPOSED = "proposed"
    VALIDATED = "validated"
    REJECTED = "rejected"
    EXECUTING = "executing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class EvidenceTier(StrEnum):
    DECISION_PROCEDURE = "decision_procedure"
    HEURISTIC = "heuristic"
    SAMPLED = "sampled"


DEFAULT_MAX_RETRIES = 3
OPERATORS = frozenset({"eq", "neq", "gt", "lt", "gte", "lte", "exists", "not_exists", "contains"})


@dataclass(frozen=True)
class Precondition:
    key: str
    operator: str = "eq"
    value: Any = None
    description: str = ""


@dataclass(frozen=True)
class StateAssumption:
    key: str
    expected_value: Any = None
    read_version: int | None = None


@dataclass(frozen=True)
class Compensation:
    """``{"type": "tool", tool, parameters}`` or ``{"type": "action_ref", action_id}``."""

    type: Literal["tool", "action_ref"]
    tool: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    action_id: str | None = None


@dataclass(frozen=True)
class Action:
    id: str
    type: ActionType
    tool: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    preconditions: tuple[Precondition, ...] = ()
    expected_effects: dict[str, Any] = field(default_factory=dict)
    state_dependencies: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()  # carnb extension: explicit action-id edges
    read_set: tuple[str, ...] = ()
    write_set: tuple[str, ...] = ()
    assumptions: tuple[StateAssumption, ...] = ()
    invocation_mode: InvocationMode = InvocationMode.ONE_SHOT
    reversibility: Reversibility = Reversibility.IRREVERSIBLE
    compensation: Compensation | None = None
    idempotent: bool = False
    max_retries: int = DEFAULT_MAX_RETRIES
    failure_behavior: FailureBehavior = FailureBehavior.ABORT
    timeout_ms: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def state_key(self) -> str | None:
        """The state key a ``state_write`` / ``state_read`` names in ``parameters.key``."""
        key = self.parameters.get("key")
        return key if isinstance(key, str) else None

    def writes(self) -> frozenset[str]:
        """State keys this action declares it writes: write_set, expected_effects, the
        ``state_write`` key."""
        keys = set(self.write_set) | set(self.expected_effects)
        if self.type is ActionType.STATE_WRITE and self.state_key is not None:
            keys.add(self.state_key)
        return frozenset(keys)

    def attempts(self) -> int:
        """How many times the executor may dispatch this action (1 + retries under retry)."""
        if self.failure_behavior is FailureBehavior.RETRY:
            return self.max_retries + 1
        return 1


@dataclass(frozen=True)
class ActionProposal:
    id: str
    actions: tuple[Action, ...]
    source: str = "unknown"
    timestamp: str = ""
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolRateLimit:
    max_calls: int
    interval_secs: float


@dataclass(frozen=True)
class ToolSchema:
    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    returns: dict[str, Any] | None = None
    idempotent: bool = False
    cache_ttl_secs: int | None = None
    rate_limit: ToolRateLimit | None = None

    def to_wire(self) -> dict[str, Any]:
        """The ``tools.list`` entry: optional fields omitted when unset."""
        out: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
            "idempotent": self.idempotent,
        }
        if self.returns is not None:
            out["returns"] = self.returns
        if self.cache_ttl_secs is not None:
            out["cache_ttl_secs"] = self.cache_ttl_secs
        if self.rate_limit is not None:
            out["rate_limit"] = {
                "max_calls": self.rate_limit.max_calls,
                "interval_secs": self.rate_limit.interval_secs,
            }
        return out


# ---- wire results -------------------------------------------------------------------------


class VerifyIssue(TypedDict):
    action_id: str
    severity: str
    message: str
    tier: str


class CheckRecord(TypedDict):
    name: str
    ran: bool
    verifies: str
    cannot_verify: str
    findings: int
    tier: str


class VerificationEvidence(TypedDict):
    checks: list[CheckRecord]
    assumptions: list[str]
    untested_regions: list[str]
    residual_risks: list[str]
    confidence: float


class VerificationResult(TypedDict):
    valid: bool
    issues: list[VerifyIssue]
    simulated_state: dict[str, Any]
    execution_levels: list[list[str]]
    conflicts: list[tuple[str, str, str]]
    evidence: VerificationEvidence


class ActionResult(TypedDict):
    action_id: str
    status: str
    output: Any
    error: str | None
    state_changes: dict[str, Any]
    duration_ms: float
    timestamp: str


class CostSummary(TypedDict):
    tool_calls: int
    actions_executed: int
    actions_rejected: int
    actions_skipped: int
    total_duration_ms: float
    retries: int


class ProposalResult(TypedDict):
    proposal_id: str
    results: list[ActionResult]
    cost: CostSummary


class PolicyViolation(TypedDict):
    policy_name: str
    action_id: str
    reason: str

"""The agent IR engine: parse, verify and execute CAR action proposals (agent-ir-spec.md).

Pure Python, no I/O: tools run through a :class:`ToolRunner` and state lives behind a
:class:`StateStore`, both supplied by the caller (the server, a notebook, a test).
"""

from .dag import Plan, build_plan
from .executor import (
    DictStateStore,
    ProgressCallback,
    ProgressEvent,
    StateStore,
    ToolError,
    ToolRunner,
    ToolTimeout,
    execute_proposal,
)
from .model import (
    Action,
    ActionProposal,
    ActionResult,
    ActionStatus,
    ActionType,
    EvidenceTier,
    FailureBehavior,
    PolicyViolation,
    ProposalResult,
    Severity,
    ToolSchema,
    VerificationResult,
    VerifyIssue,
)
from .parse import MAX_ACTIONS, parse_action, parse_proposal, parse_tool_schema
from .policy import Policy, PolicySet, parse_policy
from .tools import ToolRegistry
from .verify import verify, verify_params

__all__ = [
    "MAX_ACTIONS",
    "Action",
    "ActionProposal",
    "ActionResult",
    "ActionStatus",
    "ActionType",
    "DictStateStore",
    "EvidenceTier",
    "FailureBehavior",
    "Plan",
    "Policy",
    "PolicySet",
    "PolicyViolation",
    "ProgressCallback",
    "ProgressEvent",
    "ProposalResult",
    "Severity",
    "StateStore",
    "ToolError",
    "ToolRegistry",
    "ToolRunner",
    "ToolSchema",
    "ToolTimeout",
    "VerificationResult",
    "VerifyIssue",
    "build_plan",
    "execute_proposal",
    "parse_action",
    "parse_policy",
    "parse_proposal",
    "parse_tool_schema",
    "verify",
    "verify_params",
]

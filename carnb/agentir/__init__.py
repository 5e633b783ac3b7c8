"""The agent IR engine: parse, verify and execute CAR action proposals (agent-ir-spec.md).

Pure Python, no I/O: tools run through a :class:`ToolRunner` and state lives behind a
:class:`StateStore`, both supplied by the caller (the server, a notebook, a test).

Choices where the spec is silent (checked against the official client's in-process engine):

- Only ``state_write`` actions change state at run time; a tool_call's ``expected_effects``
  model it for verify but are not written (the reference engine behaves the same way).
- ``state_changes`` is ``{key: value}`` as in the spec's example, and every ActionResult carries
  all its keys (``output``/``error`` ``null``, ``duration_ms`` 0.0 when nothing ran).
- ``cost.tool_calls`` counts tool_call actions that succeeded, as the reference does.
- A rejection (unknown tool, bad parameters, missing state dependency, failed precondition,
  policy) stops the proposal unless ``failure_behavior`` is ``skip``; ``retry`` does not retry
  a rejection.
- Ordering follows the reference engine: an action waits for the writers of its
  ``state_dependencies`` that come *earlier* in the proposal, and same-key state_writes land
  in proposal order. carnb adds ``depends_on`` (action ids, any position), the only edges
  that can form a cycle (:mod:`carnb.agentir.dag`).
- verify adds a ``dependency_cycles`` check; the executor refuses a cyclic proposal outright.
  ``conflicts`` lists adjacent unordered writers per key, so a race is always reported without
  enumerating every pair.
"""

from carnb.errors import ToolError, ToolTimeout

from .dag import Plan, build_plan
from .executor import (
    DictStateStore,
    ProgressCallback,
    ProgressEvent,
    StateStore,
    ToolRunner,
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

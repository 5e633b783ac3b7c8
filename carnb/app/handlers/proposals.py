"""Handlers for ``tools.*``, ``policy.*``, ``verify`` and ``proposal.submit``: models propose,
the runtime verifies and executes (agent IR engine: :mod:`carnb.agentir`).

Parsing, planning and verifying a proposal (up to 10,000 actions) run in a worker thread,
except for a small proposal with no policy to apply (at most ``INLINE_PREPARE_NODES`` JSON
values and ``INLINE_PREPARE_CHARS`` characters of strings), whose preparation takes
microseconds and is done on the loop, saving a thread hop that costs more than the rest of a
one-action proposal. Execution runs on the server loop with at most ``DEFAULT_CONCURRENCY``
actions of a level at once, so the loop is never held for long. Tool calls go through
:mod:`carnb.app.toolhub`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from carnb.agentir import (
    ActionProposal,
    ActionType,
    Plan,
    PolicySet,
    PolicyViolation,
    ProgressEvent,
    ProposalResult,
    VerificationResult,
    build_plan,
    execute_proposal,
    parse_policy,
    parse_proposal,
    parse_tool_schema,
    verify_params,
)
from carnb.agentir.values import MISSING
from carnb.app.handlers.runturns import record_proposal
from carnb.app.handlers.supervision import gate
from carnb.app.methods import Area, Method, Params
from carnb.app.params import req_list, req_str
from carnb.app.schedule import in_thread, in_thread_if
from carnb.app.services import Services
from carnb.app.toolhub import LocalTool
from carnb.config import (
    INLINE_PREPARE_CHARS,
    INLINE_PREPARE_NODES,
    MAX_POLICIES,
    MAX_RUNNING_PROPOSALS,
    MAX_TOOLS,
)
from carnb.errors import InvalidParams, StateFull, TooManyProposals
from carnb.protocol.jsonrpc import encoded_size
from carnb.protocol.session import MAX_STATE_KEYS, STATE_BUDGET_BYTES, ClientSession

SCOPE = "global"  # per-connection, like the real daemon's global scope of a session runtime
# MAX_RUNNING_PROPOSALS (proposals one session may run at once) is below the connection's
# MAX_IN_FLIGHT, so requests waiting on the client's own tools can never fill every slot and
# stall the reader that must deliver the client's answers.


def setup(svc: Services) -> None:
    """Forget a session's tools and policies when it ends."""
    svc.sessions.on_close(svc.tools.drop)


def _no_policy_session(p: Params) -> None:
    if p.get("session_id") is not None:
        raise InvalidParams(
            "session_id: per-session policy scopes (session.policy.open) are not supported "
            "by carnb; omit session_id (policies already belong to this connection)"
        )


# -- tools.* -----------------------------------------------------------------------------------
def tools_register(s: ClientSession, p: Params, svc: Services) -> int:
    raw = req_list(p, "tools")
    own = svc.tools.of(s)
    if len(raw) > MAX_TOOLS:
        raise InvalidParams(f"tools: at most {MAX_TOOLS} tools per session, got {len(raw)}")
    schemas = [parse_tool_schema(t, f"tools[{i}]") for i, t in enumerate(raw)]
    new = {schema.name for schema in schemas if schema.name not in own.schemas}
    if len(own.schemas) + len(new) > MAX_TOOLS:
        raise InvalidParams(f"tools: this session may hold at most {MAX_TOOLS} tools")
    for schema in schemas:
        own.schemas.add(schema)
        own.local.pop(schema.name, None)  # now served by this session's client
    return len(schemas)


def tools_list(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    registry, _ = svc.tools.toolset(s)
    return registry.describe()


def tools_unregister(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    name = req_str(p, "name")
    own = svc.tools.of(s)
    own.local.pop(name, None)
    return {"unregistered": name, "removed": own.schemas.unregister(name)}


# -- policy.* ----------------------------------------------------------------------------------
def policy_register(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    _no_policy_session(p)
    policies = svc.tools.of(s).policies
    policy = parse_policy(p)
    if len(policies) >= MAX_POLICIES:
        raise InvalidParams(f"this session already has {MAX_POLICIES} policies")
    policies.add(policy)
    return {"registered": policy.name, "name": policy.name, "scope": SCOPE}


def policy_list(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    _no_policy_session(p)
    return {"policies": svc.tools.of(s).policies.describe(), "scope": SCOPE}


def policy_unregister(s: ClientSession, p: Params, svc: Services) -> dict[str, Any]:
    _no_policy_session(p)
    name = req_str(p, "name")
    return {
        "unregistered": name,
        "removed": svc.tools.of(s).policies.unregister(name),
        "scope": SCOPE,
    }


# -- verify and proposal.submit ------------------------------------------------------------------
async def verify(s: ClientSession, p: Params, svc: Services) -> VerificationResult:
    registry, _ = svc.tools.toolset(s)
    params = dict(p)
    if params.get("initial_state") is None:
        params["initial_state"] = s.state_snapshot()
    return await in_thread(verify_params, params, registry)


class _SessionState:
    """The executor's :class:`~carnb.agentir.StateStore` over one session's (tenant's) keys."""

    def __init__(self, session: ClientSession, tenant: str | None) -> None:
        self.session = session
        self.tenant = tenant

    def get(self, key: str) -> Any:
        return self.session.state_get(key, self.tenant)

    def set(self, key: str, value: Any) -> None:
        self.session.state_set(key, value, self.tenant)

    def exists(self, key: str) -> bool:
        return self.session.state_exists(key, self.tenant)

    def lookup(self, key: str) -> Any:
        return self.get(key) if self.exists(key) else MISSING


@dataclass(frozen=True)
class _Prepared:
    proposal: ActionProposal
    plan: Plan
    denials: list[PolicyViolation]
    # The most bytes of JSON each key's state_writes store (a key written twice counts its
    # biggest value).
    write_sizes: dict[str, int]
    needs_approval: bool  # a require_approval policy matches one of its actions


def _prepare(raw: Any, policies: PolicySet, state: _SessionState) -> _Prepared:
    """Parse, plan, apply the policies and size the state writes (in a worker thread: all are
    linear in the proposal, which may hold 10,000 actions)."""
    proposal = parse_proposal(raw)
    sizes: dict[str, int] = {}
    for a in proposal.actions:
        if a.type is ActionType.STATE_WRITE and a.state_key is not None:
            size = encoded_size(a.parameters.get("value"))
            sizes[a.state_key] = max(size, sizes.get(a.state_key, 0))
    return _Prepared(
        proposal,
        build_plan(proposal.actions),
        policies.violations(proposal.actions, state.lookup),
        sizes,
        policies.approval_needed(proposal.actions),
    )


def _small(raw: Any) -> bool:
    """Whether ``raw`` holds at most ``INLINE_PREPARE_NODES`` JSON values and
    ``INLINE_PREPARE_CHARS`` characters of strings and keys (it stops as soon as it sees more,
    before copying any big object or array)."""
    stack = [raw]
    values, chars = 1, 0
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            chars += len(value)
        elif isinstance(value, (dict, list)):  # a tuple: cheaper to test than dict | list
            values += len(value)
            if values > INLINE_PREPARE_NODES:
                return False
            if isinstance(value, dict):
                chars += sum(map(len, value))
                stack.extend(value.values())
            else:
                stack.extend(value)
        if chars > INLINE_PREPARE_CHARS:
            return False
    return True


def _tenant(p: Params) -> str | None:
    scope = p.get("scope")
    if scope is None:
        return None
    if not isinstance(scope, Mapping):
        raise InvalidParams("scope must be an object ({tenantId?, callerId?, claims?})")
    tenant = scope.get("tenantId")
    if tenant is not None and not isinstance(tenant, str):
        raise InvalidParams("scope.tenantId must be a string")
    return tenant


def _check_state_room(s: ClientSession, sizes: dict[str, int], tenant: str | None) -> None:
    """Refuse, before anything runs, a proposal whose state_writes could not all be stored:
    they count against the same key limit and byte budget as ``state.set``."""
    new = [key for key in sizes if not s.state_exists(key, tenant)]
    if len(s.state) + len(new) > MAX_STATE_KEYS:
        raise StateFull(
            f"proposal: its state_writes would take this session past {MAX_STATE_KEYS} keys; "
            "nothing was run"
        )
    kept = s.state_bytes() - sum(s.state_sizes.get((tenant or "", key), 0) for key in sizes)
    total = kept + sum(sizes.values())
    if total > STATE_BUDGET_BYTES:
        raise StateFull(
            f"proposal: its state_writes ({sum(sizes.values())} bytes of JSON) would bring this "
            f"session's state to {total} bytes; the budget is {STATE_BUDGET_BYTES} bytes per "
            "session; nothing was run",
            data={"bytes": sum(sizes.values()), "used": kept, "budget": STATE_BUDGET_BYTES},
        )


async def proposal_submit(s: ClientSession, p: Params, svc: Services) -> ProposalResult:
    _no_policy_session(p)
    tenant = _tenant(p)
    if "proposal" not in p:
        raise InvalidParams("proposal is required")
    own = svc.tools.of(s)
    if own.running >= MAX_RUNNING_PROPOSALS:
        raise TooManyProposals(
            f"this session already runs {MAX_RUNNING_PROPOSALS} proposals; wait for one to end"
        )
    own.running += 1
    try:
        return await _submit(s, p, svc, tenant)
    finally:
        own.running -= 1


async def _submit(s: ClientSession, p: Params, svc: Services, tenant: str | None) -> ProposalResult:
    state = _SessionState(s, tenant)
    policies = svc.tools.of(s).policies.copy()
    raw = p["proposal"]
    # a small proposal with no policy is prepared in microseconds: not worth a thread hop
    heavy = bool(len(policies)) or not _small(raw)
    prepared = await in_thread_if(heavy, _prepare, raw, policies, state)
    _check_state_room(s, prepared.write_sizes, tenant)
    proposal = prepared.proposal
    registry, local = svc.tools.toolset(s)
    needs_approval = prepared.needs_approval or _approving_tools(proposal, local)
    if needs_approval or svc.supervision.supervising:  # else the gate costs one test
        refused = await gate(
            svc,
            s,
            proposal,
            p.get("scope"),
            needs_approval=needs_approval,
            denials=list(prepared.denials),
        )
        if refused is not None:
            _report_refused(svc.tools.progress(s, proposal.id), proposal, refused)
            return refused
    attempts: dict[str, int] = {}
    result = await execute_proposal(
        proposal,
        runner=svc.tools.runner(s, local),
        state=state,
        tools=registry,
        plan=prepared.plan,
        denials=prepared.denials,
        on_progress=svc.tools.progress(s, proposal.id),
        attempts=attempts,
    )
    await record_proposal(svc, s, proposal, result, attempts)
    return result


def _report_refused(
    emit: Callable[[ProgressEvent], None] | None, proposal: ActionProposal, result: ProposalResult
) -> None:
    """A proposal the gate refused never reaches the executor: tell the watchers (the panel)
    that each of its actions finished rejected, as the executor would have."""
    if emit is None:
        return
    for action, outcome in zip(proposal.actions, result["results"], strict=True):
        emit(ProgressEvent.of("action_finished", action, 0, outcome))


def _approving_tools(proposal: ActionProposal, local: Mapping[str, LocalTool]) -> bool:
    """Whether an action calls a notebook tool registered with ``approve=True``."""
    approving = {name for name, tool in local.items() if tool.approve}
    return bool(approving) and any(a.tool in approving for a in proposal.actions)


_PROPOSAL = {"proposal": "ActionProposal (agent-ir-spec.md)"}

_NO_SESSION = "never (per-session policy scopes are refused: policies belong to this connection)"

AREA = Area(
    "proposals",
    setup=setup,
    methods=(
        Method(
            "tools.register",
            tools_register,
            array_params="tools",
            summary="Register tools this client runs (tools.execute calls come back to it)",
            params={"tools": "ToolDefinition[] (params may be the bare array)"},
            result="number of tools registered",
        ),
        Method(
            "tools.list",
            tools_list,
            summary="The tools in force on this session (its own plus notebook tools shared "
            "with it), sorted by name",
            result="{tools: [ToolSchema], count}",
        ),
        Method(
            "tools.unregister",
            tools_unregister,
            summary="Remove one of this session's tools",
            params={"name": "string"},
            result="{unregistered, removed}",
        ),
        Method(
            "policy.register",
            policy_register,
            summary="Add a policy (deny_tool, deny_tool_param, require_state, require_approval) "
            "to this session",
            params={
                "name": "string",
                "rule": "deny_tool | deny_tool_param | require_state | require_approval",
                "target": "string?",
                "key": "string?",
                "pattern": "string?",
                "value": "any?",
                "value_json": "string? (value as JSON text, the FFI spelling)",
                "session_id": _NO_SESSION,
            },
            result="{registered, name, scope}",
        ),
        Method(
            "policy.list",
            policy_list,
            summary="This session's policies, in registration order",
            params={"session_id": _NO_SESSION},
            result="{policies: [{name, description}], scope}",
        ),
        Method(
            "policy.unregister",
            policy_unregister,
            summary="Remove every policy of this session with this name",
            params={"name": "string", "session_id": _NO_SESSION},
            result="{unregistered, removed, scope}",
        ),
        Method(
            "verify",
            verify,
            mode="task",
            summary="Statically verify a proposal against this session's tools (no tool runs)",
            params={**_PROPOSAL, "initial_state": "object? (default: this session's state)"},
            result="{valid, issues, simulated_state, execution_levels, conflicts, evidence}",
        ),
        Method(
            "proposal.submit",
            proposal_submit,
            mode="task",
            summary="Execute a proposal; tool calls come back as tools.execute requests",
            params={**_PROPOSAL, "scope": "{tenantId?}?", "session_id": _NO_SESSION},
            result="ProposalResult {proposal_id, results, cost}",
        ),
    ),
)

"""Run a proposal level by level against a :class:`ToolRunner` and a :class:`StateStore`.

Transport-agnostic: the server plugs in ``tools.execute`` reverse requests, a notebook plugs in
functions on worker threads, tests plug in plain coroutines. Independent actions of a level run
concurrently; cancelling the task running :func:`execute_proposal` cancels in-flight tool calls
and re-raises ``CancelledError``. Nothing runs when the proposal has a dependency cycle, and
nothing runs when a policy denies an action whose ``failure_behavior`` is not ``skip``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from carnb.errors import InvalidParams, StateFull, ToolError, ToolTimeout

from .dag import Plan, build_plan
from .model import (
    Action,
    ActionProposal,
    ActionResult,
    ActionStatus,
    ActionType,
    CostSummary,
    FailureBehavior,
    InvocationMode,
    PolicyViolation,
    Precondition,
    ProposalResult,
)
from .parse import now_rfc3339
from .policy import PolicySet
from .tools import ToolRegistry
from .values import MISSING, precondition_failure, schema_violations

log = logging.getLogger("carnb.agentir.executor")

DEFAULT_CONCURRENCY = 64


class ToolRunner(Protocol):
    async def call(
        self,
        tool: str,
        parameters: dict[str, Any],
        *,
        action_id: str,
        attempt: int,
        timeout_ms: int | None,
    ) -> Any:
        """Run ``tool`` once and return its JSON result; raise :class:`ToolError` on failure.
        ``attempt`` is 1-based; ``timeout_ms`` is the action's budget (also enforced here)."""
        ...


class StateStore(Protocol):
    """The session's key/value state."""

    def get(self, key: str) -> Any: ...

    def set(self, key: str, value: Any) -> None:
        """Store ``value``; raises :class:`~carnb.errors.StateFull` when the store is full
        (the action then fails and nothing is stored)."""

    def exists(self, key: str) -> bool: ...


class DictStateStore:
    """A :class:`StateStore` over a plain dict."""

    def __init__(self, initial: dict[str, Any] | None = None) -> None:
        self.data: dict[str, Any] = dict(initial or {})

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value

    def exists(self, key: str) -> bool:
        return key in self.data


@dataclass(frozen=True)
class ProgressEvent:
    """``action_started`` before each dispatch (with its 1-based attempt), ``action_finished``
    once per action with its final result (skipped and rejected actions included) and, as
    ``attempt``, how many times it was dispatched (0: never ran). ``tool`` is the tool a
    ``tool_call`` action calls (``None`` for state actions), ``action_type`` the action's type,
    so a view can name the action by what it does rather than by its id."""

    kind: Literal["action_started", "action_finished"]
    action_id: str
    attempt: int = 0
    result: ActionResult | None = None
    tool: str | None = None
    action_type: str = ActionType.TOOL_CALL.value

    @classmethod
    def of(
        cls,
        kind: Literal["action_started", "action_finished"],
        action: Action,
        attempt: int = 0,
        result: ActionResult | None = None,
    ) -> ProgressEvent:
        return cls(kind, action.id, attempt, result, action.tool, action.type.value)


ProgressCallback = Callable[[ProgressEvent], None]


@dataclass
class _Outcome:
    result: ActionResult
    stops_run: bool  # the action's failure_behavior says abort
    retries: int = 0
    dispatched_tool: bool = False
    attempts: int = 0  # times the action ran (a tool call: dispatches; 0: rejected, skipped)


def _result(
    action: Action,
    status: ActionStatus,
    *,
    output: Any = None,
    error: str | None = None,
    state_changes: dict[str, Any] | None = None,
    duration_ms: float = 0.0,
) -> ActionResult:
    return {
        "action_id": action.id,
        "status": status.value,
        "output": output,
        "error": error,
        "state_changes": state_changes or {},
        "duration_ms": duration_ms,
        "timestamp": now_rfc3339(),
    }


class _Run:
    def __init__(
        self,
        proposal: ActionProposal,
        runner: ToolRunner,
        state: StateStore,
        tools: ToolRegistry | None,
        on_progress: ProgressCallback | None,
    ) -> None:
        self.proposal = proposal
        self.runner = runner
        self.state = state
        self.tools = tools
        self.on_progress = on_progress

    def lookup(self, key: str) -> Any:
        return self.state.get(key) if self.state.exists(key) else MISSING

    def emit(self, event: ProgressEvent) -> None:
        """Hand ``event`` to the progress callback (callers test ``on_progress`` first, so no
        event is made when nobody watches)."""
        if self.on_progress is None:
            return
        try:
            self.on_progress(event)
        except Exception:  # a broken live view must not break the run
            log.exception("progress callback failed on %s", event.kind)

    def finish(self, action: Action, outcome: _Outcome) -> _Outcome:
        if self.on_progress is not None:
            self.emit(ProgressEvent.of("action_finished", action, outcome.attempts, outcome.result))
        return outcome

    def blocked(self, action: Action) -> str | None:
        """Why ``action`` is rejected before dispatch, or ``None``."""
        if action.invocation_mode is not InvocationMode.ONE_SHOT:
            return f"invocation_mode '{action.invocation_mode.value}' is not supported here"
        if action.type is ActionType.TOOL_CALL and self.tools is not None:
            schema = self.tools.get(action.tool or "")
            if schema is None:
                return f"tool '{action.tool}' is not registered"
            problems = schema_violations(schema.parameters, action.parameters)
            if problems:
                return f"tool '{action.tool}': {'; '.join(problems)}"
        for key in dict.fromkeys(action.state_dependencies):
            if not self.state.exists(key):
                return f"state dependency '{key}' not found"
        if action.type is not ActionType.ASSERTION:
            for condition in action.preconditions:
                why = self.condition_failure(condition)
                if why is not None:
                    return f"precondition failed: {why}"
        return None

    def condition_failure(self, condition: Precondition) -> str | None:
        why = precondition_failure(condition, self.lookup(condition.key))
        if why is not None and condition.description:
            why = f"{why} ({condition.description})"
        return why

    async def run(self, action: Action) -> _Outcome:
        stops = action.failure_behavior is not FailureBehavior.SKIP
        reason = self.blocked(action)
        if reason is not None:
            return self.finish(
                action, _Outcome(_result(action, ActionStatus.REJECTED, error=reason), stops)
            )
        if action.type is ActionType.TOOL_CALL:
            return self.finish(action, await self.call_tool(action, stops))
        started = time.perf_counter()
        if self.on_progress is not None:
            self.emit(ProgressEvent.of("action_started", action, 1))
        status, output, error, changes = self.run_state_action(action)
        elapsed = (time.perf_counter() - started) * 1000
        result = _result(
            action, status, output=output, error=error, state_changes=changes, duration_ms=elapsed
        )
        return self.finish(
            action, _Outcome(result, stops and status is ActionStatus.FAILED, attempts=1)
        )

    def run_state_action(
        self, action: Action
    ) -> tuple[ActionStatus, Any, str | None, dict[str, Any]]:
        key = action.state_key
        if action.type is ActionType.STATE_WRITE:
            assert key is not None  # parse guarantees it
            value = action.parameters.get("value")
            try:
                self.state.set(key, value)
            except StateFull as exc:
                return ActionStatus.FAILED, None, exc.message, {}
            return ActionStatus.SUCCEEDED, f"written: {key}", None, {key: value}
        if action.type is ActionType.STATE_READ:
            assert key is not None
            return ActionStatus.SUCCEEDED, self.state.get(key), None, {}
        conditions = list(action.preconditions)
        if key is not None and ("operator" in action.parameters or "value" in action.parameters):
            operator = action.parameters.get("operator", "eq")
            conditions.append(
                Precondition(
                    key,
                    operator if isinstance(operator, str) else "?",
                    action.parameters.get("value"),
                )
            )
        for condition in conditions:
            why = self.condition_failure(condition)
            if why is not None:
                return ActionStatus.FAILED, None, f"assertion failed: {why}", {}
        output = {"asserted": key, "value": self.state.get(key)} if key else {"asserted": True}
        return ActionStatus.SUCCEEDED, output, None, {}

    async def call_tool(self, action: Action, stops: bool) -> _Outcome:
        assert action.tool is not None
        started = time.perf_counter()
        error = ""
        attempts = action.attempts()
        for attempt in range(1, attempts + 1):
            if self.on_progress is not None:
                self.emit(ProgressEvent.of("action_started", action, attempt))
            try:
                output = await self.dispatch(action, attempt)
            except ToolError as exc:
                error = exc.message
            except Exception as exc:  # the runner's own bug: still the tool's failure here
                log.warning("tool runner raised %s for action %s", type(exc).__name__, action.id)
                error = f"tool '{action.tool}' raised {type(exc).__name__}: {exc}"
            else:
                elapsed = (time.perf_counter() - started) * 1000
                result = _result(action, ActionStatus.SUCCEEDED, output=output, duration_ms=elapsed)
                return _Outcome(result, False, attempt - 1, True, attempt)
        elapsed = (time.perf_counter() - started) * 1000
        result = _result(action, ActionStatus.FAILED, error=error, duration_ms=elapsed)
        return _Outcome(result, stops, attempts - 1, True, attempts)

    async def dispatch(self, action: Action, attempt: int) -> Any:
        assert action.tool is not None
        call = self.runner.call(
            action.tool,
            dict(action.parameters),
            action_id=action.id,
            attempt=attempt,
            timeout_ms=action.timeout_ms,
        )
        if action.timeout_ms is None:
            return await call
        try:
            async with asyncio.timeout(action.timeout_ms / 1000):
                return await call
        except TimeoutError:
            raise ToolTimeout(
                f"tool '{action.tool}' timed out after {action.timeout_ms} ms"
            ) from None


async def execute_proposal(
    proposal: ActionProposal,
    *,
    runner: ToolRunner,
    state: StateStore,
    tools: ToolRegistry | None = None,
    policies: PolicySet | None = None,
    on_progress: ProgressCallback | None = None,
    plan: Plan | None = None,
    denials: list[PolicyViolation] | None = None,
    max_concurrency: int = DEFAULT_CONCURRENCY,
    attempts: dict[str, int] | None = None,
) -> ProposalResult:
    """Execute ``proposal`` and return the spec's ProposalResult (results in proposal order).

    Raises :class:`InvalidParams` (nothing run) on a dependency cycle. ``tools=None`` leaves
    tool existence and parameter checks to the runner. ``plan`` is ``build_plan(actions)``
    when the caller already made it (e.g. off the event loop), ``denials`` likewise
    ``policies.violations(...)`` (then ``policies`` is not consulted). At most ``max_concurrency``
    actions of a level run at once, so a wide level neither floods the tool runner nor holds
    the event loop for more than that many synchronous state actions at a time.

    ``attempts``, when given, receives each action's attempt count by action id (how many times
    it ran: a tool call retried under ``retry`` more than once; 0 when rejected or skipped).
    The spec's ActionResult has no such field, so it is handed back beside the result.
    """
    if plan is None:
        plan = build_plan(proposal.actions)
    if plan.cycles:
        cycles = "; ".join(" -> ".join(c) for c in plan.cycles)
        raise InvalidParams(f"proposal has a dependency cycle, nothing was run: {cycles}")
    run = _Run(proposal, runner, state, tools, on_progress)
    actions = proposal.actions
    outcomes: dict[int, _Outcome] = {}

    denied: dict[str, list[str]] = {}
    if denials is None and policies is not None:
        denials = policies.violations(actions, run.lookup)
    if denials:
        for v in denials:
            denied.setdefault(v["action_id"], []).append(
                f"denied by policy '{v['policy_name']}': {v['reason']}"
            )
    stop_reason: str | None = None
    for i, action in enumerate(actions):
        if action.id in denied:
            result = _result(action, ActionStatus.REJECTED, error="; ".join(denied[action.id]))
            aborts = action.failure_behavior is not FailureBehavior.SKIP
            outcomes[i] = run.finish(action, _Outcome(result, aborts))
            if aborts and stop_reason is None:
                stop_reason = f"not run: action '{action.id}' was denied by policy"

    for level in plan.levels:
        pending = [i for i in level if i not in outcomes]
        if stop_reason is None:
            if len(pending) == 1:  # nothing to run beside it: no task to start and wait for
                outcomes[pending[0]] = await run.run(actions[pending[0]])
            else:
                await _run_level(run, actions, pending, outcomes, max_concurrency)
            for i in pending:
                if outcomes[i].stops_run and stop_reason is None:
                    stop_reason = f"not run: action '{actions[i].id}' stopped the proposal"
        else:
            for i in pending:
                skipped = _result(actions[i], ActionStatus.SKIPPED, error=stop_reason)
                outcomes[i] = run.finish(actions[i], _Outcome(skipped, False))

    results = [outcomes[i].result for i in range(len(actions))]
    if attempts is not None:
        for i, action in enumerate(actions):
            attempts[action.id] = outcomes[i].attempts
    return {"proposal_id": proposal.id, "results": results, "cost": _cost(outcomes.values())}


async def _run_level(
    run: _Run,
    actions: tuple[Action, ...],
    pending: list[int],
    outcomes: dict[int, _Outcome],
    max_concurrency: int,
) -> None:
    """The actions ``pending`` of one level side by side, at most ``max_concurrency`` at once."""
    gate = asyncio.Semaphore(max_concurrency)
    release = _releaser(gate)
    tasks: dict[int, asyncio.Task[_Outcome]] = {}
    async with asyncio.TaskGroup() as group:
        for i in pending:
            await gate.acquire()
            tasks[i] = group.create_task(run.run(actions[i]))
            tasks[i].add_done_callback(release)
    for i, task in tasks.items():
        outcomes[i] = task.result()


def _releaser(gate: asyncio.Semaphore) -> Callable[[asyncio.Task[_Outcome]], None]:
    return lambda _task: gate.release()


def _cost(outcomes: Iterable[_Outcome]) -> CostSummary:
    cost: CostSummary = {
        "tool_calls": 0,
        "actions_executed": 0,
        "actions_rejected": 0,
        "actions_skipped": 0,
        "total_duration_ms": 0.0,
        "retries": 0,
    }
    for outcome in outcomes:
        status = outcome.result["status"]
        if status in (ActionStatus.SUCCEEDED, ActionStatus.FAILED):
            cost["actions_executed"] += 1
        elif status == ActionStatus.REJECTED:
            cost["actions_rejected"] += 1
        elif status == ActionStatus.SKIPPED:
            cost["actions_skipped"] += 1
        if outcome.dispatched_tool and status == ActionStatus.SUCCEEDED:
            cost["tool_calls"] += 1
        cost["retries"] += outcome.retries
        cost["total_duration_ms"] += outcome.result["duration_ms"]
    return cost

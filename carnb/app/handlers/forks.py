"""Forking a recorded run (``runs.fork``): carnb's own agent-loop driver, from a model turn on.

A fork is a new run of the parent's agent with ``forked_from {run_id, turn}``. The model turns
before ``turn`` and their tool executions are copied from the recording. At ``turn`` the recorded
request (or one rebuilt from the recorded turns, when carnb never saw it: the fork's
``rebuilt_request`` says so), with the edit applied (``system``), goes to the chosen model, or the
given ``answer`` is used. Then the driver loops: the answer's tool calls run as a proposal under
the policies in force (the parent agent's connected session's, else the caller's), their results
join the conversation, and the model is asked again, until an answer asks for no tool (or calls
``finish``) or ``max_turns`` model turns have run.

Its proposals meet the same supervision as ``proposal.submit`` (:func:`carnb.app.handlers.
supervision.gate`): supervisors see them as proposals of that session, and a require_approval
policy or an ``approve=True`` notebook tool waits for the approval ledger.

A fork's proposals share one state of their own (a :class:`~carnb.agentir.DictStateStore`; the
parent's session state is never read or written): it starts as the state the parent run had at
the fork point as far as its recorded state actions show it (:func:`carnb.app.steps.state_at`:
the values its ``state_write`` actions wrote and its ``state_read`` actions read before
``turn``), and the fork's own state actions then change it from turn to turn. A key the parent
never wrote nor read before ``turn`` is missing in the fork.

Where a fork's tool call goes, first match wins: an override (``tool_outputs``, keyed by the
call's id or the tool's name); a notebook tool the caller sees; a tool a connected session of
the parent's agent registered (``tools.execute``); the recording, when a call of that tool with
exactly these parameters was recorded. Otherwise the call fails with an error naming the tool
and how to provide it, and the fork ends there (``failure``).

The fork runs as a task in the background; its records reach ``runs.subscribe`` like any
other run's. Every store call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from carnb.agentir import (
    ActionProposal,
    DictStateStore,
    PolicySet,
    ProposalResult,
    execute_proposal,
    parse_proposal,
)
from carnb.agentir.policy import StateLookup
from carnb.agentir.values import MISSING
from carnb.app.handlers.runturns import proposal_turns
from carnb.app.handlers.supervision import gate
from carnb.app.models import ContextSource, normalize_reply
from carnb.app.recording import inference_record
from carnb.app.schedule import in_thread
from carnb.app.services import Services
from carnb.app.steps import (
    ModelStep,
    ToolStep,
    assistant_message,
    rebuilt_request,
    result_message,
    state_at,
    tool_result_style,
)
from carnb.app.toolhub import SessionRunner
from carnb.errors import ToolError, Unreachable
from carnb.protocol.jsonrpc import encoded_size
from carnb.protocol.session import ClientSession

log = logging.getLogger("carnb.app.forks")

FINISH = "finish"  # the tool an agent loop ends with (its answer is the run's summary)


@dataclass
class ForkPlan:
    """Everything a fork needs, checked before it starts."""

    parent: dict[str, Any]  # the parent trace's head: run_id, agent_id, intent
    steps: list[ModelStep]
    at: int
    model: str | None
    system: str | None
    answer: dict[str, Any] | None
    tool_outputs: dict[str, Any]
    max_turns: int
    request: dict[str, Any] = field(default_factory=dict)
    rebuilt: bool = False


def prepare_request(plan: ForkPlan) -> None:
    """The request at ``plan.at``: recorded, else rebuilt; with the edits applied."""
    step = plan.steps[plan.at - 1]
    if step.request is not None:
        request = dict(step.request)
    else:
        request = rebuilt_request(
            str(plan.parent.get("intent") or ""),
            plan.steps[: plan.at - 1],
            step.record.get("model_id"),
        )
        plan.rebuilt = True
    request.pop("messages_omitted", None)
    if plan.model is not None:
        request["model"] = plan.model
    if plan.system is not None:
        request["system"] = plan.system
        messages = list(request.get("messages") or [])
        if messages and isinstance(messages[0], dict) and messages[0].get("role") == "system":
            request["messages"] = [{**messages[0], "content": plan.system}, *messages[1:]]
    plan.request = request


def parse_answer(answer: Any) -> dict[str, Any]:
    """``answer`` as a model reply: text, or ``{text?, tool_calls?}`` (any JSON text of one)."""
    reply = normalize_reply(answer, "answer")
    reply.update(latency_ms=0, trace_id=None)
    return reply


def agent_session(svc: Services, agent_id: Any, caller: ClientSession) -> ClientSession | None:
    """A still-connected session of agent ``agent_id`` that can answer ``tools.execute``
    (not the caller's own)."""
    return next(
        (
            t
            for t in svc.sessions
            if t.agent_id == agent_id
            and not t.closed
            and t is not caller
            and t.callbacks is not None
        ),
        None,
    )


class ForkRunner:
    """The :class:`~carnb.agentir.ToolRunner` of a fork (the order in the module docstring)."""

    def __init__(self, svc: Services, caller: ClientSession, plan: ForkPlan) -> None:
        self.svc = svc
        self.caller = caller
        self.plan = plan
        _, self.local = svc.tools.toolset(caller)
        self.agent = agent_session(svc, plan.parent.get("agent_id"), caller)
        self.unreachable: str | None = None  # the first call that had nowhere to go
        self.recorded: dict[tuple[str, str], ToolStep] = {}
        for step in plan.steps:
            for tool in step.tools:
                self.recorded.setdefault(_key(tool.tool, tool.parameters), tool)

    @property
    def acting(self) -> ClientSession:
        """The session whose policies and supervision a fork's proposals meet: the parent's
        agent's connected session, else the caller's."""
        return self.agent if self.agent is not None else self.caller

    def policies(self) -> PolicySet:
        return self.svc.tools.of(self.acting).policies.copy()

    def needs_approval(self, proposal: ActionProposal, policies: PolicySet) -> bool:
        """A require_approval policy matches, or an action calls a notebook tool registered
        with ``approve=True`` (as for ``proposal.submit``)."""
        approving = {name for name, tool in self.local.items() if tool.approve}
        return policies.approval_needed(proposal.actions) or any(
            a.tool in approving for a in proposal.actions
        )

    async def call(
        self,
        tool: str,
        parameters: dict[str, Any],
        *,
        action_id: str,
        attempt: int,
        timeout_ms: int | None,
    ) -> Any:
        outputs = self.plan.tool_outputs
        if action_id in outputs:
            return outputs[action_id]
        if tool in outputs:
            return outputs[tool]
        local = self.local.get(tool)
        if local is not None:
            return await self.svc.tools.run_local(local, parameters, timeout_ms)
        if self.agent is not None and tool in self.svc.tools.of(self.agent).schemas:
            runner = SessionRunner(self.svc.tools, self.agent, {})
            return await runner.call(
                tool, parameters, action_id=action_id, attempt=attempt, timeout_ms=timeout_ms
            )
        recorded = self.recorded.get(_key(tool, parameters))
        if recorded is not None:
            if recorded.error is not None:
                raise ToolError(recorded.error)
            return recorded.output
        agent = self.plan.parent.get("agent_id")
        message = (
            f"tool '{tool}' is not reachable from this fork: it is no notebook tool, no "
            f"connected session of agent {agent} registers it, and the recording holds no call "
            f"of it with these parameters; register it with @carnb.tool, reconnect the agent, "
            f"or give its output (tool_outputs {{'{tool}': VALUE}}, "
            f"%car run fork ... --tool-output {tool}=VALUE)"
        )
        if self.unreachable is None:
            self.unreachable = message
        raise Unreachable(message)


def _key(tool: str, parameters: Any) -> tuple[str, str]:
    return tool, json.dumps(parameters, sort_keys=True, ensure_ascii=False, default=str)


def _lookup(state: DictStateStore) -> StateLookup:
    return lambda key: state.get(key) if state.exists(key) else MISSING


def _secrets(svc: Services) -> tuple[str, ...]:
    return (svc.credentials.token, svc.credentials.host_token)


async def copy_before(svc: Services, caller: ClientSession, plan: ForkPlan, run_id: str) -> None:
    """The parent's model turns before ``plan.at``, with their tool executions."""
    store = svc.runs
    assert store is not None
    for step in plan.steps[: plan.at - 1]:
        fields = {k: v for k, v in step.record.items() if k not in ("index", "record", "timestamp")}
        inference = fields.pop("inference", None)
        await in_thread(
            partial(store.record_model_turn, caller, run_id, fields, inference=inference)
        )
        turns = [t.turn for t in step.tools]
        for start in range(0, len(turns), 256):
            await in_thread(store.record_turns, caller, run_id, turns[start : start + 256])


async def drive(
    svc: Services, caller: ClientSession, plan: ForkPlan, run_id: str, context: ContextSource
) -> None:
    """Run the fork to its end; the run ends completed (success or failure) whatever happens."""
    store = svc.runs
    assert store is not None
    outcome: dict[str, Any]
    try:
        await copy_before(svc, caller, plan, run_id)
        outcome = await _loop(svc, caller, plan, run_id, context)
    except asyncio.CancelledError:
        await in_thread(store.cancel, caller, run_id, "the server closed")
        raise
    except Exception as exc:
        log.info("fork %s failed: %s", run_id, exc)
        outcome = {"status": "failure", "summary": str(exc)[:2000]}
    try:
        await in_thread(store.complete, caller, run_id, outcome)
    except Exception:
        log.exception("ending fork %s failed", run_id)


async def _admitted(
    svc: Services,
    runner: ForkRunner,
    proposal: ActionProposal,
    policies: PolicySet,
    denials: list[Any],
) -> ProposalResult | None:
    """The supervision gate ``proposal.submit`` passes, for a fork's proposal: None when it
    may run, else the result of a proposal rejected before anything ran."""
    needs_approval = runner.needs_approval(proposal, policies)
    if not needs_approval and not svc.supervision.supervising:
        return None
    return await gate(
        svc, runner.acting, proposal, None, needs_approval=needs_approval, denials=denials
    )


async def _finish(
    store: Any, caller: ClientSession, run_id: str, call: Mapping[str, Any]
) -> dict[str, Any]:
    """An answer that calls ``finish``: its turn is recorded (its output the call's arguments
    as JSON text, as the CAR agent loop records it), its answer ends the fork."""
    arguments = dict(call.get("arguments") or {})
    answer = arguments.get("answer")
    summary = "" if answer is None else str(answer)
    turn = {
        "action_id": str(call.get("id") or FINISH),
        "tool": FINISH,
        "parameters": arguments,
        "status": "succeeded",
        "output": json.dumps(arguments, ensure_ascii=False, separators=(",", ":")),
        "duration_ms": 0,
    }
    await in_thread(store.record_turns, caller, run_id, [turn])
    return {"status": "success", "summary": summary}


async def _loop(
    svc: Services, caller: ClientSession, plan: ForkPlan, run_id: str, context: ContextSource
) -> dict[str, Any]:
    store = svc.runs
    assert store is not None
    runner = ForkRunner(svc, caller, plan)
    style = tool_result_style([s.request for s in plan.steps])
    request = plan.request
    state = DictStateStore(state_at(plan.steps[: plan.at - 1]))
    previous: dict[str, Any] | None = None
    for turn in range(plan.at, plan.at + plan.max_turns):
        if turn == plan.at and plan.answer is not None:
            reply, asked = plan.answer, dict(request)
        else:
            reply, asked = await svc.models.infer(request, context)
        record = inference_record(asked, reply, _secrets(svc), previous)
        previous = None if "messages_omitted" in record["request"] else asked
        fields = {
            "turn_index": turn,
            "assistant_text": reply.get("text") or "",
            "requested_tool_calls": reply.get("tool_calls") or [],
            "model_id": reply.get("model_used") or request.get("model"),
            "token_usage": reply.get("usage"),
            "duration_ms": reply.get("latency_ms") or 0,
        }
        if encoded_size(fields) + encoded_size(record) > 250 * 1024:
            record = {"request": {"model": request.get("model")}, "reply": {}, "omitted": True}
        await in_thread(partial(store.record_model_turn, caller, run_id, fields, inference=record))
        every = [c for c in reply.get("tool_calls") or [] if isinstance(c, Mapping)]
        if not every:
            return {"status": "success", "summary": reply.get("text") or ""}
        finish = next((c for c in every if c.get("name") == FINISH), None)
        if finish is not None:
            return await _finish(store, caller, run_id, finish)
        calls = every
        proposal = parse_proposal(
            {
                "id": f"fork-{uuid.uuid4().hex[:8]}",
                "actions": [
                    {
                        "id": str(c.get("id") or f"call-{i}"),
                        "type": "tool_call",
                        "tool": str(c.get("name")),
                        "parameters": dict(c.get("arguments") or {}),
                    }
                    for i, c in enumerate(calls)
                ],
            }
        )
        policies = runner.policies()
        denials = policies.violations(proposal.actions, _lookup(state))
        result = await _admitted(svc, runner, proposal, policies, denials)
        attempts: dict[str, int] = {}
        if result is None:
            result = await execute_proposal(
                proposal,
                runner=runner,
                state=state,
                denials=denials,
                on_progress=svc.tools.progress(caller, proposal.id),
                attempts=attempts,
            )
        turns = proposal_turns(proposal, result, attempts)
        if turns:
            await in_thread(store.record_turns, caller, run_id, turns)
        if runner.unreachable is not None:
            return {"status": "failure", "summary": runner.unreachable}
        messages = list(request.get("messages") or [])
        messages.append(assistant_message(reply))
        by_id = {r["action_id"]: r for r in result["results"]}
        for action in proposal.actions:
            r = by_id.get(action.id)
            value = (
                None if r is None else r["output"] if r["error"] is None else {"error": r["error"]}
            )
            messages.append(result_message(style, action.id, value))
        request = {**request, "messages": messages}
    return {
        "status": "failure",
        "summary": f"the fork reached its limit of {plan.max_turns} model turns",
    }

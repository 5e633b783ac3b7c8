"""Replaying a recorded run (``runs.replay``): its steps re-driven with the recorded model
answers and tool results, and where a re-execution departs from the recording.

No model is called. Each model turn is checked three ways:

* ``reply``: the model turn the agent recorded says what carnb served (text and tool calls);
* ``tools``: the tools run after it are those the answer asked for, with the same parameters;
* ``verify``: each requested tool still verifies: the policies in force now (the run's agent's
  connected session's, else the caller's) do not deny a call that ran, with the proposal state
  the run had before that turn as its recorded state actions show it
  (:class:`carnb.app.steps.RecordedState`, what a ``require_state`` policy reads).

With ``rerun_tools`` the tools that can still be reached run again, live, and a different answer
is a divergence: the caller's notebook tools, and the tools a still-connected session of the
run's agent registered (through ``tools.execute``, as a fork calls them); any other tool is
never called (no side effect beyond what was asked). A call the recording shows retried
(``attempt`` above 1) may again take up to that many attempts before its failure counts.

The report sums what the recording says of its tool executions: ``tool_retries`` (attempts
beyond the first) and ``tool_ms`` (their recorded durations).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from carnb.agentir import ActionProposal, PolicySet, parse_proposal
from carnb.agentir.policy import StateLookup
from carnb.agentir.values import MISSING
from carnb.app.steps import STATE_ACTIONS, ModelStep, RecordedState, ToolStep

# (tool, parameters, action id, attempt) -> output; raises on the tool's failure
LiveTool = Callable[[str, dict[str, Any], str, int], Awaitable[Any]]


def _calls(reply: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        (str(c.get("name")), c.get("arguments") or {})
        for c in reply.get("tool_calls") or []
        if isinstance(c, dict)
    ]


def _divergence(step: ModelStep, kind: str, message: str, **more: Any) -> dict[str, Any]:
    return {"turn": step.number, "kind": kind, "message": message, **more}


def check_step(
    step: ModelStep, policies: PolicySet, state: StateLookup = lambda key: MISSING
) -> list[dict[str, Any]]:
    """What no longer agrees in one recorded step (no tool runs); ``state`` is the recorded
    state before the step."""
    found: list[dict[str, Any]] = []
    record = step.record
    if step.inference is not None and step.inference.get("reply"):
        served = step.inference["reply"]
        agent_calls = [
            (str(c.get("name")), c.get("arguments") or {})
            for c in record.get("requested_tool_calls") or []
            if isinstance(c, dict)
        ]
        if (served.get("text") or "") != (record.get("assistant_text") or ""):
            found.append(
                _divergence(step, "reply", "the agent recorded another text than the model's")
            )
        elif _calls(served) != agent_calls:
            found.append(
                _divergence(step, "reply", "the agent recorded other tool calls than the model's")
            )
    asked = _calls(step.reply)
    named = {name for name, _ in asked}
    # a proposal's own state actions are no tool the model asked for
    tools = [t for t in step.tools if t.tool in named or t.tool not in STATE_ACTIONS]
    ran = [(t.tool, t.parameters) for t in tools]
    if ran != asked[: len(ran)] or len(ran) > len(asked):
        found.append(
            _divergence(
                step,
                "tools",
                "the tools run after this turn are not those its answer asked for",
                asked=[name for name, _ in asked],
                ran=[name for name, _ in ran],
            )
        )
    denied = _denied(tools, policies, state)
    for tool, reason in denied:
        found.append(
            _divergence(step, "verify", f"tool '{tool.tool}' no longer verifies: {reason}")
        )
    return found


def _denied(
    tools: list[ToolStep], policies: PolicySet, state: StateLookup
) -> list[tuple[ToolStep, str]]:
    ran = [t for t in tools if t.turn.get("policy_rejected") is not True]
    if not ran or not len(policies):
        return []
    proposal = _proposal(ran)
    by_action = {a.id: t for a, t in zip(proposal.actions, ran, strict=True)}
    out: list[tuple[ToolStep, str]] = []
    for v in policies.violations(proposal.actions, state):
        out.append((by_action[v["action_id"]], f"{v['policy_name']}: {v['reason']}"))
    return out


def _proposal(tools: list[ToolStep]) -> ActionProposal:
    return parse_proposal(
        {
            "id": "replay",
            "actions": [
                {"id": f"a{i}", "type": "tool_call", "tool": t.tool, "parameters": t.parameters}
                for i, t in enumerate(tools)
            ],
        }
    )


def _attempt(tool: ToolStep) -> int:
    """How many attempts the recording shows for a call (1 when it does not say)."""
    value = tool.turn.get("attempt")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 1 else 1


async def _rerun(call: LiveTool, tool: ToolStep) -> tuple[Any, str | None, int, float]:
    """(output, error, attempts, ms) of one tool run again, retried as the recording shows."""
    started = time.perf_counter()
    now: Any = None
    error: str | None = None
    tries = 0
    for attempt in range(1, _attempt(tool) + 1):
        tries = attempt
        try:
            now = await call(tool.tool, tool.parameters, tool.action_id or "replay", attempt)
            error = None
            break
        except Exception as exc:  # the tool's own failure is what is compared
            now, error = None, str(exc)
    return now, error, tries, round((time.perf_counter() - started) * 1000, 3)


async def replay(
    run_id: str,
    steps: list[ModelStep],
    policies: PolicySet,
    live: dict[str, LiveTool],
) -> dict[str, Any]:
    """The replay report. ``live`` maps the tools to run again to their callers."""
    started = time.perf_counter()
    divergences: list[dict[str, Any]] = []
    rerun = 0
    state = RecordedState()
    for step in steps:
        divergences.extend(check_step(step, policies, state.lookup))
        state.after(step)
        for tool in step.tools:
            call = live.get(tool.tool)
            if call is None:
                continue
            rerun += 1
            now, error, tries, ms = await _rerun(call, tool)
            if (now, error) != (tool.output, tool.error):
                divergences.append(
                    _divergence(
                        step,
                        "tool_output",
                        f"tool '{tool.tool}' now answers differently",
                        tool=tool.tool,
                        recorded=tool.output if tool.error is None else {"error": tool.error},
                        now=now if error is None else {"error": error},
                        recorded_attempt=_attempt(tool),
                        attempts=tries,
                        recorded_ms=tool.turn.get("duration_ms"),
                        now_ms=ms,
                    )
                )
    tools = [t for s in steps for t in s.tools]
    return {
        "run_id": run_id,
        "model_turns": len(steps),
        "tool_steps": len(tools),
        "recorded_requests": sum(1 for s in steps if s.request is not None),
        "model_calls": 0,
        "tools_rerun": rerun,
        "tool_retries": sum(_attempt(t) - 1 for t in tools),
        "tool_ms": round(sum(_ms(t) for t in tools), 3),
        "reproduced": not divergences,
        "divergences": divergences,
        "replay_ms": round((time.perf_counter() - started) * 1000, 3),
    }


def _ms(tool: ToolStep) -> float:
    value = tool.turn.get("duration_ms")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0

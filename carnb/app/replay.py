"""Replaying a recorded run (``runs.replay``): its steps re-driven with the recorded model
answers and tool results, and where a re-execution departs from the recording.

No model is called. Each model turn is checked three ways:

* ``reply``: the model turn the agent recorded says what carnb served (text and tool calls);
* ``tools``: the tools run after it are those the answer asked for, with the same parameters;
* ``verify``: each requested tool still verifies: the policies in force now (the run's agent's
  connected session's, else the caller's) do not deny a call that ran.

With ``rerun_tools`` the caller's notebook tools among them run again, live, and a different
answer is a divergence (other tools are never called: no side effect beyond what was asked).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from carnb.agentir import ActionProposal, PolicySet, parse_proposal
from carnb.agentir.values import MISSING
from carnb.app.steps import ModelStep, ToolStep

LiveTool = Callable[[str, dict[str, Any]], Awaitable[Any]]


def _calls(reply: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        (str(c.get("name")), c.get("arguments") or {})
        for c in reply.get("tool_calls") or []
        if isinstance(c, dict)
    ]


def _divergence(step: ModelStep, kind: str, message: str, **more: Any) -> dict[str, Any]:
    return {"turn": step.number, "kind": kind, "message": message, **more}


def check_step(step: ModelStep, policies: PolicySet) -> list[dict[str, Any]]:
    """What no longer agrees in one recorded step (no tool runs)."""
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
    ran = [(t.tool, t.parameters) for t in step.tools]
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
    denied = _denied(step.tools, policies)
    for tool, reason in denied:
        found.append(
            _divergence(step, "verify", f"tool '{tool.tool}' no longer verifies: {reason}")
        )
    return found


def _denied(tools: list[ToolStep], policies: PolicySet) -> list[tuple[ToolStep, str]]:
    ran = [t for t in tools if t.turn.get("policy_rejected") is not True]
    if not ran or not len(policies):
        return []
    proposal = _proposal(ran)
    by_action = {a.id: t for a, t in zip(proposal.actions, ran, strict=True)}
    out: list[tuple[ToolStep, str]] = []
    for v in policies.violations(proposal.actions, lambda key: MISSING):
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
    for step in steps:
        divergences.extend(check_step(step, policies))
        for tool in step.tools:
            call = live.get(tool.tool)
            if call is None:
                continue
            rerun += 1
            try:
                now: Any = await call(tool.tool, tool.parameters)
                error = None
            except Exception as exc:  # the tool's own failure is what is compared
                now, error = None, str(exc)
            if (now, error) != (tool.output, tool.error):
                divergences.append(
                    _divergence(
                        step,
                        "tool_output",
                        f"tool '{tool.tool}' now answers differently",
                        tool=tool.tool,
                        recorded=tool.output if tool.error is None else {"error": tool.error},
                        now=now if error is None else {"error": error},
                    )
                )
    return {
        "run_id": run_id,
        "model_turns": len(steps),
        "tool_steps": sum(len(s.tools) for s in steps),
        "recorded_requests": sum(1 for s in steps if s.request is not None),
        "model_calls": 0,
        "tools_rerun": rerun,
        "reproduced": not divergences,
        "divergences": divergences,
        "replay_ms": round((time.perf_counter() - started) * 1000, 3),
    }

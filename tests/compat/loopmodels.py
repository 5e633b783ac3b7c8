"""Deterministic stand-in models for the agent-loop tests (``serve --model`` imports them).

``adder`` plays an agent that adds numbers with an ``add`` tool over several turns and then
calls ``finish``; it decides only from the conversation it is given, so it is deterministic.
The others fail in one way each.
"""

from __future__ import annotations

import json
import time
from typing import Any

from carnb.errors import ContentRefused

STEPS = 3  # add calls before finish


def tool_results(request: dict[str, Any]) -> list[str]:
    return [
        m.get("content", "")
        for m in request.get("messages") or []
        if m.get("role") == "tool_result"
    ]


def adder(request: dict[str, Any]) -> dict[str, Any]:
    """Calls add(total, n) STEPS times, then finish with the total."""
    results = tool_results(request)
    sums = [json.loads(r)["sum"] for r in results if '"sum"' in r]
    total = sums[-1] if sums else 0
    usage = {"input_tokens": 10 * (len(results) + 1), "output_tokens": 5}
    if len(results) > len(sums):  # finish answered (a chat turn has no finish tool): say it
        return {"text": f"the total is {total}", "usage": usage}
    if len(results) < STEPS:
        step = len(results) + 1
        return {
            "text": f"step {step}: adding {step}",
            "tool_calls": [
                {"id": f"add-{step}", "name": "add", "arguments": {"a": total, "b": step}}
            ],
            "usage": usage,
        }
    return {
        "text": "",
        "tool_calls": [{"id": "finish-1", "name": "finish", "arguments": {"answer": str(total)}}],
        "usage": usage,
    }


def dangerous(request: dict[str, Any]) -> dict[str, Any]:
    """Asks for rm first; once a result (the policy's refusal) is back, finishes."""
    if not tool_results(request):
        return {
            "text": "cleaning up",
            "tool_calls": [{"id": "rm-1", "name": "rm", "arguments": {"path": "/"}}],
        }
    return {
        "text": "",
        "tool_calls": [{"id": "f", "name": "finish", "arguments": {"answer": "stopped"}}],
    }


def raises(request: dict[str, Any]) -> Any:
    raise RuntimeError("provider is down")


def hangs(request: dict[str, Any]) -> Any:
    time.sleep(30)
    return "too late"


def malformed(request: dict[str, Any]) -> Any:
    return 42


def refuses(request: dict[str, Any]) -> Any:
    raise ContentRefused("the filter declined this request")


def echo(request: dict[str, Any]) -> dict[str, Any]:
    """Replies with what it received (for context injection tests)."""
    return {
        "text": json.dumps({"context": request.get("context"), "messages": request.get("messages")})
    }

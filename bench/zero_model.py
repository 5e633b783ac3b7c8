"""A zero-latency model for ``bench_loop.py`` (``serve --model bench.zero_model:counter``):
``add`` once per turn until ``TURNS`` tool turns are done, then ``finish``."""

from __future__ import annotations

from typing import Any

TURNS = 20
LONG_TURNS = 100  # the run bench_loop.py replays


def counter(request: dict[str, Any]) -> dict[str, Any]:
    return _count(request, TURNS)


def long_counter(request: dict[str, Any]) -> dict[str, Any]:
    return _count(request, LONG_TURNS)


def _count(request: dict[str, Any], turns: int) -> dict[str, Any]:
    done = sum(1 for m in request.get("messages") or [] if m.get("role") == "tool_result")
    usage = {"input_tokens": 1, "output_tokens": 1}
    if done < turns - 1:
        call = {"id": f"c{done}", "name": "add", "arguments": {"a": done, "b": 1}}
        return {"text": "", "tool_calls": [call], "usage": usage}
    call = {"id": "end", "name": "finish", "arguments": {"answer": str(done)}}
    return {"text": "", "tool_calls": [call], "usage": usage}


def instant(request: dict[str, Any]) -> str:
    return "ok"

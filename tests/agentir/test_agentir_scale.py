"""verify and the executor on 10,000 actions: near-linear time, bounded output."""

from __future__ import annotations

import time
from typing import Any

from carnb.agentir import DictStateStore, execute_proposal, parse_proposal, verify
from tests.agentir.helpers import ScriptedRunner, registry


def big(n: int) -> list[dict[str, Any]]:
    """Chains of 10 via keys, every action also writing one of 50 shared keys (ordered within
    a chain, racing across chains) and every 100th action repeating an identical call."""
    actions = []
    for i in range(n):
        link = i % 10
        action: dict[str, Any] = {
            "id": f"a{i}",
            "type": "tool_call",
            "tool": "fetch",
            "parameters": {"i": i} if i % 100 else {"poll": True},
            "expected_effects": {f"k{i}": i, f"shared{i % 50}": i},
            "preconditions": [{"key": f"k{i - 1}", "operator": "exists"}] if link else [],
            "state_dependencies": [f"k{i - 1}"] if link else [],
        }
        actions.append(action)
    return actions


def best_of(runs: int, n: int) -> float:
    raw = {"actions": big(n)}
    tools = registry("fetch", schemas={"fetch": {"type": "object"}})
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        verify(parse_proposal(raw), tools=tools)
        best = min(best, time.perf_counter() - start)
    return best


def test_verify_10000_actions_is_near_linear() -> None:
    small, large = best_of(3, 1_000), best_of(2, 10_000)
    # Linear would be 10x; a quadratic pass would be ~100x. Generous for a loaded machine.
    assert large < small * 30, (small, large)
    assert large < 10.0


def test_verify_10000_actions_result() -> None:
    result = verify(parse_proposal({"actions": big(10_000)}), tools=registry("fetch"))
    assert len(result["execution_levels"]) == 10
    assert sum(len(level) for level in result["execution_levels"]) == 10_000
    loops = [i for i in result["issues"] if i["tier"] == "heuristic"]
    assert len(loops) == 1 and "100 times" in loops[0]["message"]
    assert result["conflicts"]  # shared keys race across independent chains
    assert len(result["evidence"]["untested_regions"]) == 51  # capped list
    assert not [
        i
        for i in result["issues"]
        if i["action_id"] not in ("proposal",) and "precondition" in i["message"]
    ]


async def test_execute_10000_independent_actions() -> None:
    actions = [
        {"id": f"w{i}", "type": "state_write", "parameters": {"key": f"k{i}", "value": i}}
        for i in range(10_000)
    ]
    state = DictStateStore()
    result = await execute_proposal(
        parse_proposal({"actions": actions}), runner=ScriptedRunner(), state=state
    )
    assert result["cost"]["actions_executed"] == 10_000 and len(state.data) == 10_000

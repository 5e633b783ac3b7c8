"""An agent process for the agent-loop tests: the official client's ``run_agent`` with an
``add`` tool, an ``rm`` tool and a policy that denies ``rm``.

``python -m tests.compat.loopagent MODEL GOAL`` (with ``CAR_DAEMON_URL`` and credentials in the
environment) prints the outcome as one JSON line.
"""

from __future__ import annotations

import json
import sys
from typing import Any

ADD_SCHEMA = {
    "name": "add",
    "description": "add two numbers",
    "parameters": {
        "type": "object",
        "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
        "required": ["a", "b"],
    },
}
RM_SCHEMA = {
    "name": "rm",
    "description": "delete a path",
    "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
}
removed: list[str] = []


def add(args: dict[str, Any]) -> dict[str, Any]:
    return {"sum": args["a"] + args["b"]}


def rm(args: dict[str, Any]) -> dict[str, Any]:
    removed.append(args["path"])
    return {"removed": args["path"]}


def config(model: str, rt: Any = None, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "agent_name": "adder",
        "identity": "You add numbers with the add tool.",
        "tool_schemas": [ADD_SCHEMA, RM_SCHEMA],
        "tools": {"add": add, "rm": rm},
        "policies": [{"name": "no-rm", "rule": "deny_tool", "target": "rm"}],
        "max_turns": 8,
        "default_model": model,
        **extra,
    }
    if rt is not None:
        cfg["runtime"] = rt
    return cfg


def main(argv: list[str]) -> int:
    from car_runtime import agent_loop

    model, goal = argv[0], argv[1]
    print(json.dumps(agent_loop.run_agent(config(model), goal)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

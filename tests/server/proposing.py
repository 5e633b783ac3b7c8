"""A raw-WebSocket proposer for tests: submit a proposal and serve the server's tools.execute
requests the way a client tool host does."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.conftest import Client

Answer = Callable[[dict[str, Any]], dict[str, Any] | None]
_ids = itertools.count(10_000)


def echo(params: dict[str, Any]) -> dict[str, Any]:
    return {"result": {"tool": params["tool"], "echo": params["parameters"]}}


def action(action_id: str, tool: str = "echo", **fields: Any) -> dict[str, Any]:
    return {"id": action_id, "type": "tool_call", "tool": tool, **fields}


def write(action_id: str, key: str, value: Any, **fields: Any) -> dict[str, Any]:
    return {
        "id": action_id,
        "type": "state_write",
        "parameters": {"key": key, "value": value},
        **fields,
    }


def proposal(*actions: dict[str, Any], pid: str = "p1") -> dict[str, Any]:
    return {"id": pid, "actions": list(actions)}


@dataclass
class Served:
    reply: dict[str, Any]
    requests: list[dict[str, Any]] = field(default_factory=list)  # tools.execute frames
    cancels: list[dict[str, Any]] = field(default_factory=list)  # tools.cancel params

    @property
    def result(self) -> dict[str, Any]:
        assert "result" in self.reply, self.reply
        result: dict[str, Any] = self.reply["result"]
        return result

    def statuses(self) -> dict[str, str]:
        return {r["action_id"]: r["status"] for r in self.result["results"]}

    def by_id(self, action_id: str) -> dict[str, Any]:
        return next(r for r in self.result["results"] if r["action_id"] == action_id)


def submit(
    client: Client,
    body: dict[str, Any],
    answer: Answer | None = echo,
    *,
    method: str = "proposal.submit",
    timeout: float = 20,
    extra: dict[str, Any] | None = None,
) -> Served:
    """Send ``method {proposal: body}`` and answer each tools.execute with ``answer(params)``
    (``{"result": ...}`` or ``{"error": {...}}``; ``None`` leaves it unanswered)."""
    rid = next(_ids)
    client.send(
        {
            "jsonrpc": "2.0",
            "id": rid,
            "method": method,
            "params": {"proposal": body, **(extra or {})},
        }
    )
    served = Served({})
    deadline = time.monotonic() + timeout
    while True:
        msg = client.recv(max(0.01, deadline - time.monotonic()))
        if msg.get("method") == "tools.execute":
            served.requests.append(msg)
            frame = answer(msg["params"]) if answer is not None else None
            if frame is not None:
                client.send({"jsonrpc": "2.0", "id": msg["id"], **frame})
        elif msg.get("method") == "tools.cancel":
            served.cancels.append(msg["params"])
        elif msg.get("id") == rid:
            served.reply = msg
            return served
        else:
            client.notifications.append(msg)

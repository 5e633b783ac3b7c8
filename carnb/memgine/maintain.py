"""``memory.maintain``: the recent event log mined into proactive-memory entries and a trigger.

The events are the meter's (:mod:`carnb.app.metering`), those the session may see, newest first.
What becomes an entry, under an id made from the event's id so a second pass over the same
events saves nothing new:

- ``action_failed``: a procedural entry, ``<tool> failed (<error class>, status <status>) in run
  <run>``: the failed attempt, which the selector weighs up under a tool error;
- ``action_rejected``: a knowledge entry, ``<tool> was rejected by policy in run <run>``;
- ``run_ended`` with a status other than success: a procedural entry, ``run <run> ended
  <status>``.

The trigger (``memory.intervene``'s shape): ``repeated_failures`` the most failures of one tool,
``tool_error`` whether any action failed, ``high_risk_action`` whether any was rejected;
``explicit_uncertainty`` and ``context_shift`` stay false (carnb's log records neither).
Bodies hold only the event's data (tool, status, error class, run id), never an action's
parameters or output.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_RECENT = 32
MAX_RECENT = 1000
ENDED_WELL = frozenset({"success", "succeeded", "completed", "ok"})


@dataclass(frozen=True, slots=True)
class Entry:
    fact_id: str
    entry: str  # knowledge or procedural
    subject: str
    body: str


def mine(events: Iterable[Mapping[str, Any]]) -> tuple[list[Entry], dict[str, Any]]:
    """The entries the events hold, oldest first, and the trigger they make."""
    entries: list[Entry] = []
    failures: Counter[str] = Counter()
    rejected = False
    for event in reversed(list(events)):
        kind, data = event.get("kind"), event.get("data") or {}
        tool, run = str(data.get("tool", "?")), str(data.get("run_id", "?"))
        fact_id = f"event-{event.get('id')}"
        if kind == "action_failed":
            failures[tool] += 1
            why = f"{data.get('error_class', 'error')}, status {data.get('status')}"
            entries.append(
                Entry(fact_id, "procedural", f"tool {tool}", f"{tool} failed ({why}) in run {run}")
            )
        elif kind == "action_rejected":
            rejected = True
            entries.append(
                Entry(fact_id, "knowledge", f"tool {tool}",
                      f"{tool} was rejected by policy in run {run}")
            )  # fmt: skip
        elif kind == "run_ended" and str(data.get("status")) not in ENDED_WELL:
            entries.append(
                Entry(fact_id, "procedural", f"run {run}", f"run {run} ended {data.get('status')}")
            )
    trigger = {
        "repeated_failures": max(failures.values(), default=0),
        "tool_error": bool(failures),
        "explicit_uncertainty": False,
        "high_risk_action": rejected,
        "context_shift": False,
    }
    return entries, trigger

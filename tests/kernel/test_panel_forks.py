"""The panel's fork bookkeeping (pure): forks noted from run store events, listed under their
parent, how they ended, and gone after the linger time."""

from __future__ import annotations

from typing import Any

from carnb.kernel.panel_forks import PanelForks, forks_text, trace_runs


def event(run_id: str, record: dict[str, Any]) -> dict[str, Any]:
    return {"run_id": run_id, "agent_id": "a", "record": record, "cursor": 0, "status": ""}


def test_forks_are_listed_under_their_parent_until_they_linger_out() -> None:
    now = [100.0]
    forks = PanelForks(linger=60, clock=lambda: now[0])
    assert not forks.note(event("run-p", {"record": "started", "intent": "x"}))  # no fork
    assert forks.note(
        event("run-f", {"record": "started", "forked_from": {"run_id": "run-p", "turn": 3}})
    )
    forks.note(event("run-f", {"record": "model_turn"}))
    forks.note(event("run-f", {"record": "turn", "turn": {}}))
    forks.note(
        event(
            "run-f",
            {"record": "ended", "status": "completed", "outcome": {"status": "failure"}},
        )
    )
    assert not forks.note(event("run-other", {"record": "turn", "turn": {}}))
    shown = forks.shown()
    # the parent is on the panel (a session's current run): its fork comes right after it
    assert trace_runs([("run-q", False), ("run-p", False)], shown) == [
        ("run-q", False, ""),
        ("run-p", False, ""),
        ("run-f", True, "↳ @3 "),
    ]
    text = forks_text([("run-p", False)], shown)
    assert "run-q" not in text  # a run without forks is not repeated in the lineage
    parent_line, fork_line = [line for line in text.splitlines() if "run-" in line][-2:]
    assert "run-p" in parent_line and "in progress" in parent_line
    assert fork_line.lstrip().startswith("↳ run-f") and "failure" in fork_line
    assert "run-p @ turn 3" in fork_line
    assert forks.next_expiry() == 60
    now[0] += 61
    assert forks.shown() == [] and forks_text([("run-p", False)], []) == ""

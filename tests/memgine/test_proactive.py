"""memory.intervene and memory.evaluate at the engine, on both stores."""

from __future__ import annotations

import pytest

from carnb.errors import InvalidParams
from carnb.memgine import Memgine
from carnb.memgine.proactive import INJECT_UNPROMPTED


def seed(graph: Memgine) -> None:
    graph.add_fact("build", "pip install fails behind the proxy; set PIP_INDEX_URL first",
                   "procedural", fact_id="proxy-fix", tags=["procedural"])  # fmt: skip
    graph.add_fact("deploy", "production deploys need the change ticket number",
                   "knowledge", fact_id="ticket", tags=["knowledge"])  # fmt: skip
    for i in range(10):
        graph.add_fact(f"note{i}", f"lunch menu item {i}")


def test_a_strong_match_under_a_tool_error_is_injected_as_one_grounded_reminder(
    graph: Memgine,
) -> None:
    seed(graph)
    answer = graph.intervene(
        {"query": "pip install fails", "trigger": {"tool_error": True}, "recent": ["proxy"]}
    )
    assert answer["decision"] == "inject"
    assert answer["selected"]["fact_id"] == "proxy-fix"
    assert answer["reminder"].startswith("Remember [proxy-fix] build: pip install fails")
    assert answer["bank"] == {"facts": 12} and answer["candidates"] >= 1


def test_a_weak_match_without_pressure_is_an_explicit_silence(graph: Memgine) -> None:
    seed(graph)
    answer = graph.intervene({"query": "what is on the lunch menu for the deploy party"})
    assert answer["decision"] == "silent"
    assert "below" in answer["reason"] and "reminder" not in answer
    assert graph.intervene({"query": "xylophone"}) == {
        "decision": "silent",
        "reason": "no remembered fact matches the request",
        "candidates": 0,
        "bank": {"facts": 12},
    }
    forced = graph.intervene({"query": "what is on the lunch menu for the deploy party",
                              "force": True})  # fmt: skip
    assert forced["decision"] == "inject"
    assert forced["selected"]["score"] < INJECT_UNPROMPTED


def test_another_tenants_entries_are_never_selected(graph: Memgine) -> None:
    graph.add_fact("deploy", "acme deploys on mondays", "knowledge", fact_id="acme",
                   tags=["knowledge", "tenant:acme"])  # fmt: skip
    assert graph.intervene({"query": "acme deploys mondays", "tenant_id": "other"})[
        "decision"] == "silent"  # fmt: skip
    mine = graph.intervene({"query": "acme deploys mondays", "tenant_id": "acme"})
    assert mine["decision"] == "inject" and mine["selected"]["fact_id"] == "acme"


def test_evaluate_compares_the_selector_with_the_baselines(graph: Memgine) -> None:
    seed(graph)
    cases = [
        {"id": "c1", "request": {"query": "pip install fails", "trigger": {"tool_error": True}},
         "relevant_fact_ids": ["proxy-fix"]},
        {"id": "c2", "request": {"query": "lunch menu deploy"}, "relevant_fact_ids": []},
    ]  # fmt: skip
    report = graph.evaluate(cases)
    assert report["cases"] == 2
    sel, always = report["selective"], report["always_inject"]
    passive, none = report["passive_retrieval"], report["no_memory"]
    assert sel["true_positives"] == 1 and sel["false_positives"] == 0
    assert sel["precision"] == 1.0 and sel["recall"] == 1.0 and sel["interruption_rate"] == 0.5
    assert always["interventions"] == 2 and always["precision"] == 0.5
    assert passive["avg_candidates_exposed"] > always["avg_candidates_exposed"]
    assert passive["precision"] < sel["precision"]
    assert none == {"interventions": 0, "true_positives": 0, "false_positives": 0,
                    "false_negatives": 1, "precision": 0.0, "recall": 0.0,
                    "interruption_rate": 0.0, "avg_candidates_exposed": 0.0}  # fmt: skip
    assert graph.fact_count() == 12  # evaluating writes nothing


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        ({"trigger": {"tool_error": "yes"}}, "trigger.tool_error"),
        ({"trigger": {"panic": True}}, "trigger.panic"),
        ({"max_candidates": 0}, "max_candidates"),
        ({"recent": "one line"}, "recent"),
        ({"force": 1}, "force"),
    ],
)
def test_bad_requests_name_the_field(graph: Memgine, request_: dict, field: str) -> None:
    with pytest.raises(InvalidParams, match=field):
        graph.intervene(request_)
    with pytest.raises(InvalidParams, match=rf"cases\[0\]\.request\.{field}"):
        graph.evaluate([{"id": "x", "request": request_}])


def test_maintain_mines_failures_rejections_and_bad_run_ends() -> None:
    from carnb.memgine.maintain import mine

    events = [  # newest first, as the event log answers
        {"id": 4, "kind": "run_ended", "data": {"run_id": "r1", "status": "failed"}},
        {"id": 3, "kind": "action_rejected", "data": {"tool": "rm", "run_id": "r1"}},
        {"id": 2, "kind": "action_succeeded", "data": {"tool": "ls", "run_id": "r1"}},
        {"id": 1, "kind": "run_ended", "data": {"run_id": "r0", "status": "success"}},
    ]
    entries, trigger = mine(events)
    assert [(e.fact_id, e.entry, e.body) for e in entries] == [
        ("event-3", "knowledge", "rm was rejected by policy in run r1"),
        ("event-4", "procedural", "run r1 ended failed"),
    ]
    assert trigger["high_risk_action"] is True and trigger["tool_error"] is False
    assert mine([]) == ([], {"repeated_failures": 0, "tool_error": False,
                             "explicit_uncertainty": False, "high_risk_action": False,
                             "context_shift": False})  # fmt: skip

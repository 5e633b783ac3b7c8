"""Tiny synthetic StateBench rows (the `dev.jsonl` shape) for the harness tests."""

from __future__ import annotations

from typing import Any


def fact(key: str, value: str, *, id_: str = "W-AUTO", supersedes: Any = None) -> dict[str, Any]:
    return {
        "id": id_,
        "key": key,
        "value": value,
        "supersedes": supersedes,
        "is_constraint": key.startswith("rule"),
    }


def write(*writes: dict[str, Any], kind: str = "state_write") -> dict[str, Any]:
    return {"type": kind, "writes": list(writes)}


def query(prompt: str, must: list[str], must_not: list[str]) -> dict[str, Any]:
    return {
        "type": "query",
        "prompt": prompt,
        "ground_truth": {"must_mention": must, "must_not_mention": must_not},
    }


def row(tid: str, initial: list[dict[str, Any]], events: list[dict[str, Any]]) -> dict[str, Any]:
    chat = {"type": "conversation_turn", "speaker": "user", "text": "noise"}
    return {"id": tid, "initial_state": {"persistent_facts": initial}, "events": [chat, *events]}


BUDGET = row(
    "budget",
    [fact("budget", "$200,000 available", id_="F-1")],
    [
        write(fact("decision", "Approved purchase, $50,000 remaining")),
        query("What is the budget?", ["$200,000", "approved purchase"], ["$120,000"]),
        write(
            fact("budget_corrected", "$120,000 total", supersedes="budget"),
            kind="supersession",
        ),
        write(
            fact("decision_corrected", "INVALID: was based on $200,000", supersedes="decision"),
            kind="supersession",
        ),
        query("What is the budget now?", ["$120,000", "$50,000 remaining", "over budget"], []),
        query("Remaining?", ["$120,000"], ["$200,000", "$50,000 remaining"]),
    ],
)


OTHER = row("other", [fact("budget", "$120,000 from another team")], [query("?", ["x"], [])])

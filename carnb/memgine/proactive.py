"""Proactive memory: at most one grounded reminder for the next action, or an explicit silence,
and the offline evaluation of that selector on labelled cases (docs/memgine.md, Proactive
memory).

The selector reads only the graph's ranking (:meth:`Memgine.query`): the candidates are the
best ``max_candidates`` valid facts for the request's ``query`` and ``recent`` lines. Each
candidate's relevance is weighted by what the runtime pressure (``trigger``) makes worth an
interruption: procedural entries under tool errors and repeated failures, knowledge and
constraints under uncertainty, high-risk actions and context shifts. The best weighted
candidate is injected when it reaches ``INJECT_UNDER_PRESSURE`` with a trigger set, or
``INJECT_UNPROMPTED`` without one; ``force`` injects the best candidate whatever its score.
Everything is deterministic and calls no model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from carnb.errors import InvalidParams

KNOWLEDGE = "knowledge"
PROCEDURAL = "procedural"
CONSTRAINT = "constraint"
# A fact saved with a tenant carries this tag prefix; the selector of another tenant skips it.
TENANT_TAG = "tenant:"

DEFAULT_CANDIDATES = 8
MAX_CANDIDATES = 64
MAX_RECENT = 32
MAX_CASES = 1000
# Weighted score a candidate needs to interrupt: with runtime pressure, and without any.
INJECT_UNDER_PRESSURE = 0.35
INJECT_UNPROMPTED = 0.7
# How much a trigger raises the weight of a kind of entry.
FAILURE_BOOST = 1.5  # procedural, under tool_error or repeated_failures >= 2
CAUTION_BOOST = 1.3  # knowledge and constraints, under uncertainty or a high-risk action
SHIFT_BOOST = 1.2  # knowledge, under a context shift
REMINDER_CHARS = 600

TRIGGER_FIELDS = {
    "repeated_failures": int,
    "tool_error": bool,
    "explicit_uncertainty": bool,
    "high_risk_action": bool,
    "context_shift": bool,
}

Query = Callable[[str, int], list[dict[str, Any]]]


@dataclass(frozen=True)
class Request:
    """One ``memory.intervene`` request, validated."""

    query: str
    recent: tuple[str, ...]
    trigger: Mapping[str, Any]
    force: bool
    max_candidates: int
    tenant_id: str | None

    @property
    def text(self) -> str:
        return " ".join(part for part in (self.query, *self.recent) if part)

    @property
    def pressure(self) -> bool:
        return any(bool(v) for k, v in self.trigger.items() if k != "repeated_failures") or (
            int(self.trigger.get("repeated_failures", 0)) >= 2
        )


def parse_request(raw: Any, field: str = "params") -> Request:
    """A request from JSON params (``memory.intervene``'s, or an evaluate case's ``request``)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InvalidParams(f"{field} must be an object")
    query = raw.get("query") or ""
    if not isinstance(query, str):
        raise InvalidParams(f"{field}.query must be a string")
    recent = raw.get("recent") or []
    if not isinstance(recent, list) or not all(isinstance(r, str) for r in recent):
        raise InvalidParams(f"{field}.recent must be a list of strings")
    if len(recent) > MAX_RECENT:
        raise InvalidParams(f"{field}.recent holds at most {MAX_RECENT} lines")
    trigger = raw.get("trigger") or {}
    if not isinstance(trigger, dict):
        raise InvalidParams(f"{field}.trigger must be an object")
    for name, value in trigger.items():
        want = TRIGGER_FIELDS.get(name)
        if want is None:
            raise InvalidParams(f"{field}.trigger.{name} is not a trigger field")
        ok = isinstance(value, bool) if want is bool else _is_count(value)
        if not ok:
            kind = "a boolean" if want is bool else "a non-negative integer"
            raise InvalidParams(f"{field}.trigger.{name} must be {kind}")
    force = raw.get("force", False)
    if not isinstance(force, bool):
        raise InvalidParams(f"{field}.force must be a boolean")
    most = raw.get("max_candidates", DEFAULT_CANDIDATES)
    if not _is_count(most) or not 1 <= most <= MAX_CANDIDATES:
        raise InvalidParams(f"{field}.max_candidates must be an integer from 1 to {MAX_CANDIDATES}")
    tenant = raw.get("tenant_id")
    if tenant is not None and not isinstance(tenant, str):
        raise InvalidParams(f"{field}.tenant_id must be a string")
    return Request(query, tuple(recent), dict(trigger), force, int(most), tenant)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def boost(kind: str, trigger: Mapping[str, Any]) -> float:
    """How much the trigger raises the weight of an entry of this kind."""
    factor = 1.0
    failing = bool(trigger.get("tool_error")) or int(trigger.get("repeated_failures", 0)) >= 2
    if kind == PROCEDURAL and failing:
        factor *= FAILURE_BOOST
    cautious = bool(trigger.get("explicit_uncertainty")) or bool(trigger.get("high_risk_action"))
    if kind in (KNOWLEDGE, CONSTRAINT) and cautious:
        factor *= CAUTION_BOOST
    if kind == KNOWLEDGE and trigger.get("context_shift"):
        factor *= SHIFT_BOOST
    return factor


def candidates(query: Query, request: Request) -> list[tuple[dict[str, Any], float]]:
    """The request's candidates with their weighted scores, best first (ties: rank order)."""
    if not request.text.strip():
        return []
    rows = query(request.text, request.max_candidates)
    out = []
    for row in rows:
        tenants = [t[len(TENANT_TAG) :] for t in row["tags"] if t.startswith(TENANT_TAG)]
        if tenants and request.tenant_id not in tenants:
            continue
        out.append((row, min(1.0, row["confidence"] * boost(row["kind"], request.trigger))))
    return sorted(out, key=lambda pair: -pair[1])


def decide(query: Query, request: Request, bank: Mapping[str, int]) -> dict[str, Any]:
    """``memory.intervene``'s answer: inject one reminder or stay silent, and why."""
    found = candidates(query, request)
    if not found:
        return {"decision": "silent", "reason": "no remembered fact matches the request",
                "candidates": 0, "bank": dict(bank)}  # fmt: skip
    row, weighted = found[0]
    needed = INJECT_UNDER_PRESSURE if request.pressure else INJECT_UNPROMPTED
    if weighted < needed and not request.force:
        reason = (
            f"the best candidate ({row['fact_id']}) scores {weighted:.2f}, below the "
            f"{needed:.2f} an interruption needs " + ("under this trigger" if request.pressure
                                                     else "without a trigger")
        )  # fmt: skip
        return {"decision": "silent", "reason": reason, "candidates": len(found),
                "bank": dict(bank)}  # fmt: skip
    return {
        "decision": "inject",
        "reminder": reminder(row),
        "selected": {
            "fact_id": row["fact_id"],
            "subject": row["subject"],
            "kind": row["kind"],
            "score": round(weighted, 6),
        },
        "candidates": len(found),
        "bank": dict(bank),
    }


def reminder(row: Mapping[str, Any]) -> str:
    """The reminder text: the fact itself, named, so the model can check it (grounded)."""
    text = f"Remember [{row['fact_id']}] {row['subject']}: {row['body']}"
    text = " ".join(text.split())
    return text if len(text) <= REMINDER_CHARS else text[: REMINDER_CHARS - 1] + "…"


# -- evaluation ---------------------------------------------------------------------------

MODES = ("selective", "always_inject", "passive_retrieval", "no_memory")


@dataclass(frozen=True)
class Case:
    id: str
    request: Request
    relevant: frozenset[str]


def parse_cases(raw: Any) -> list[Case]:
    if not isinstance(raw, list):
        raise InvalidParams("cases must be a list")
    if len(raw) > MAX_CASES:
        raise InvalidParams(f"cases holds at most {MAX_CASES} cases")
    out = []
    for i, case in enumerate(raw):
        if not isinstance(case, dict):
            raise InvalidParams(f"cases[{i}] must be an object")
        case_id = case.get("id")
        if not isinstance(case_id, str):
            raise InvalidParams(f"cases[{i}].id must be a string")
        relevant = case.get("relevant_fact_ids") or []
        if not isinstance(relevant, list) or not all(isinstance(r, str) for r in relevant):
            raise InvalidParams(f"cases[{i}].relevant_fact_ids must be a list of strings")
        request = parse_request(case.get("request"), f"cases[{i}].request")
        out.append(Case(case_id, request, frozenset(relevant)))
    return out


def exposed(query: Query, case: Case, mode: str, bank: Mapping[str, int]) -> list[str]:
    """The fact ids a mode puts before the model for this case."""
    if mode == "no_memory":
        return []
    found = candidates(query, case.request)
    if mode == "passive_retrieval":
        return [row["fact_id"] for row, _ in found]
    if mode == "always_inject":
        return [found[0][0]["fact_id"]] if found else []
    answer = decide(query, case.request, bank)
    return [answer["selected"]["fact_id"]] if answer["decision"] == "inject" else []


def evaluate(query: Query, cases: Sequence[Case], bank: Mapping[str, int]) -> dict[str, Any]:
    """Precision and recall of each mode over the cases (fact level: an exposed fact is a true
    positive when the case labels it relevant)."""
    out: dict[str, Any] = {"cases": len(cases)}
    for mode in MODES:
        interventions = tp = fp = fn = shown = 0
        for case in cases:
            ids = set(exposed(query, case, mode, bank))
            interventions += bool(ids)
            shown += len(ids)
            tp += len(ids & case.relevant)
            fp += len(ids - case.relevant)
            fn += len(case.relevant - ids)
        out[mode] = {
            "interventions": interventions,
            "true_positives": tp,
            "false_positives": fp,
            "false_negatives": fn,
            "precision": round(tp / (tp + fp), 6) if tp + fp else 0.0,
            "recall": round(tp / (tp + fn), 6) if tp + fn else 0.0,
            "interruption_rate": round(interventions / len(cases), 6) if cases else 0.0,
            "avg_candidates_exposed": round(shown / len(cases), 6) if cases else 0.0,
        }
    return out

"""Rendering of ``memory.build_context``: sections, line format and the token budget.

docs/memgine.md, Context: ``## Constraints`` (every constraint, never dropped), ``## Facts``, each
only when non-empty, separated by a blank line. Fact lines are ``- [fact_id] subject: body``
(a body's line breaks become spaces so one fact stays one line). The caller passes facts in
display order: least relevant (or, for the fast mode, oldest) first, so the most relevant (or
newest) is last. While the estimated size exceeds the budget, the first fact line is dropped;
the last one is always kept. Tokens are estimated as ``ceil(chars / 4)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

DEFAULT_BUDGET = 8000
RESERVED_TOKENS = 4096
WINDOW_SHARE = 0.4
MIN_BUDGET = 2000

CONSTRAINTS_HEADER = "## Constraints"
FACTS_HEADER = "## Facts"
# A short fact line, for sizing how many facts a budget can hold (see fact_slots).
SHORT_LINE = 48

# (fact_id, subject, body)
Line = tuple[str, str, str]


def budget_tokens(model_context_window: int | None) -> int:
    """8000 without a window, else ``max(2000, (window - 4096) * 0.4)`` (rounded down)."""
    if model_context_window is None:
        return DEFAULT_BUDGET
    return max(MIN_BUDGET, math.floor((model_context_window - RESERVED_TOKENS) * WINDOW_SHARE))


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def fact_line(fact_id: str, subject: str, body: str) -> str:
    line = f"- [{fact_id}] {subject}: {body}"
    if "\n" in line or "\r" in line:
        line = " ".join(line.split())
    return line


def constraints_block(constraints: Sequence[Line]) -> str:
    """The ``## Constraints`` section ("" without constraints)."""
    if not constraints:
        return ""
    return CONSTRAINTS_HEADER + "\n" + "\n".join(fact_line(*c) for c in constraints)


def fact_room(budget: int, constraints_chars: int) -> int:
    """Characters left for fact lines (each with its line break) once the constraints block,
    the ``## Facts`` header and the section separator take their share."""
    separator = 2 if constraints_chars else 0
    return budget * 4 - constraints_chars - separator - len(FACTS_HEADER)


def fact_slots(budget: int, constraints_chars: int, most: int) -> int:
    """How many fact lines are worth ranking: what the budget left after the constraints can
    hold at ``SHORT_LINE`` characters a line, between 1 and ``most``."""
    room = budget * 4 - constraints_chars - len(FACTS_HEADER) - 2
    return max(1, min(most, room // SHORT_LINE))


def render(constraint_block: str, facts: Sequence[Line], budget: int) -> str:
    """The context text: the constraints block whole, then as many trailing fact lines as fit."""
    lines = [fact_line(*f) for f in facts]
    if not lines:
        return constraint_block
    fixed = len(constraint_block) + (2 if constraint_block else 0) + len(FACTS_HEADER)
    total = fixed + sum(len(line) + 1 for line in lines)
    start = 0
    while start < len(lines) - 1 and math.ceil(total / 4) > budget:
        total -= len(lines[start]) + 1
        start += 1
    facts_block = FACTS_HEADER + "\n" + "\n".join(lines[start:])
    if constraint_block:
        return constraint_block + "\n\n" + facts_block
    return facts_block

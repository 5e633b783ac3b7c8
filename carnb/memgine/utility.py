"""Utility-aware retrieval (``memory.utility_get`` / ``memory.utility_set``): a graph's blend of
each fact's learned utility into the ranking order.

A fact's utility is an upper confidence bound over its record: the mean of its Beta posterior
``Beta(helped + 1, hurt + 1)`` plus ``exploration`` times ``sqrt(ln(1 + all uses) / (1 + its
uses))`` (not capped: it orders, it is no probability). A use is a reminder
``memory.intervene`` injected. carnb records no outcome of a use yet (no method reports
whether a reminder helped), so every posterior mean is the prior's 0.5 and the bound only
favours the facts reminded of least: with no use recorded the bound is 0.5 for every fact and
the order is the relevance order. With ``weight`` > 0 a fact's ordering key is ``(1 - weight)
* relevance + weight * utility`` (plus recency, as always); its relevance (``confidence``) and
the context's relevance rule are unchanged. ``weight`` 0 (the default) leaves the order
exactly as it is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from carnb.errors import InvalidParams

MAX_WEIGHT = 1.0
MAX_EXPLORATION = 4.0
DEFAULT_WEIGHT = 0.0
DEFAULT_EXPLORATION = 1.0


@dataclass(frozen=True, slots=True)
class Blend:
    """A graph's utility blend, clamped: ``weight`` in [0, 1], ``exploration`` in [0, 4]."""

    weight: float = DEFAULT_WEIGHT
    exploration: float = DEFAULT_EXPLORATION

    def as_dict(self) -> dict[str, float]:
        return {"utility_weight": self.weight, "utility_exploration": self.exploration}

    def utility(self, uses: int, all_uses: int) -> float:
        """The upper confidence bound of a fact used ``uses`` times of ``all_uses``."""
        mean = 0.5  # Beta(0 + 1, 0 + 1): no outcome is recorded
        return mean + self.exploration * math.sqrt(math.log1p(all_uses) / (1 + uses))

    def key(self, relevance: float, uses: int, all_uses: int) -> float:
        """The part of a fact's ordering key that relevance and utility make."""
        return (1 - self.weight) * relevance + self.weight * self.utility(uses, all_uses)


def clamp(value: Any, field: str, top: float) -> float:
    """A number for ``field`` clamped to [0, top]; a non-finite number is 0 (the reference's
    rule); anything but a number is :class:`InvalidParams`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidParams(f"{field} must be a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        return 0.0
    return min(top, max(0.0, number))


def applied(current: Blend, changes: Mapping[str, Any]) -> Blend:
    """``current`` with the fields ``changes`` gives (read-modify-write: an omitted or null
    field keeps its value), clamped."""
    weight, exploration = current.weight, current.exploration
    if changes.get("utility_weight") is not None:
        weight = clamp(changes["utility_weight"], "utility_weight", MAX_WEIGHT)
    if changes.get("utility_exploration") is not None:
        exploration = clamp(changes["utility_exploration"], "utility_exploration", MAX_EXPLORATION)
    return Blend(weight, exploration)

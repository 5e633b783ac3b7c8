"""Precondition operators and JSON equality."""

from __future__ import annotations

from typing import Any

import pytest

from carnb.agentir.model import Precondition
from carnb.agentir.values import MISSING, json_equal, precondition_failure


@pytest.mark.parametrize(
    ("op", "value", "current", "holds"),
    [
        ("eq", True, True, True),
        ("eq", True, 1, False),
        ("eq", 1, 1.0, True),
        ("eq", {"a": [1, 2]}, {"a": [1, 2]}, True),
        ("eq", None, MISSING, False),
        ("neq", "a", "b", True),
        ("neq", "a", "a", False),
        ("gt", 3, 5, True),
        ("gt", 3, 3, False),
        ("gte", 3, 3, True),
        ("lt", 3, 2.5, True),
        ("lte", 3, 4, False),
        ("gt", 3, "5", False),  # numeric operators fail on non-numbers
        ("gt", 0, True, False),
        ("exists", None, 0, True),
        ("exists", None, MISSING, False),
        ("not_exists", None, MISSING, True),
        ("not_exists", None, None, False),
        ("contains", "ell", "hello", True),
        ("contains", 2, [1, 2, 3], True),
        ("contains", True, [1], False),
        ("contains", "x", 5, False),
        ("matches", "x", "x", False),  # unknown operators fail
    ],
)
def test_operators(op: str, value: Any, current: Any, holds: bool) -> None:
    why = precondition_failure(Precondition("k", op, value), current)
    assert (why is None) is holds
    if not holds:
        assert "'k'" in why  # type: ignore[operator]


def test_json_equal_distinguishes_bool_from_number_deeply() -> None:
    assert not json_equal([True], [1])
    assert not json_equal({"a": False}, {"a": 0})
    assert json_equal([1, {"b": None}], [1.0, {"b": None}])

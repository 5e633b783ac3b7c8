"""JSON value semantics the IR needs: equality, precondition operators, a JSON Schema subset.

JSON distinguishes ``true`` from ``1``; Python does not, so equality is done here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .model import Precondition

MISSING: Any = object()  # a state lookup that found nothing


def json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def precondition_failure(pre: Precondition, current: Any) -> str | None:
    """Why ``pre`` does not hold when ``state[pre.key]`` is ``current`` (:data:`MISSING` when
    absent), or ``None`` when it holds. Unknown operators fail, as the spec requires."""
    key, op, value = pre.key, pre.operator, pre.value
    if op == "exists":
        return None if current is not MISSING else f"key '{key}' does not exist"
    if op == "not_exists":
        return None if current is MISSING else f"key '{key}' exists"
    if op not in ("eq", "neq", "gt", "lt", "gte", "lte", "contains"):
        return f"unknown operator '{op}' on key '{key}'"
    if current is MISSING:
        return f"key '{key}' has no value"
    if op == "eq":
        ok = json_equal(current, value)
    elif op == "neq":
        ok = not json_equal(current, value)
    elif op == "contains":
        if isinstance(current, str) and isinstance(value, str):
            ok = value in current
        elif isinstance(current, list):
            ok = any(json_equal(item, value) for item in current)
        else:
            ok = False
    else:
        left, right = _number(current), _number(value)
        if left is None or right is None:
            ok = False
        elif op == "gt":
            ok = left > right
        elif op == "lt":
            ok = left < right
        elif op == "gte":
            ok = left >= right
        else:
            ok = left <= right
    return None if ok else f"precondition {op} on key '{key}' does not hold"


def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _has_type(v: Any, kind: str) -> bool:
    if kind == "integer":
        return not isinstance(v, bool) and (
            isinstance(v, int) or (isinstance(v, float) and v.is_integer())
        )
    return _type_name(v) == kind


def schema_violations(schema: Mapping[str, Any], value: Any, path: str = "") -> list[str]:
    """Where ``value`` breaks ``schema`` (type, required, properties, items, enum,
    additionalProperties). Messages name the parameter path; empty means it conforms."""
    problems: list[str] = []
    label = f"parameter '{path}'" if path else "parameters"
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not any(_has_type(value, k) for k in kinds):
            expected = " or ".join(kinds)
            return [f"{label} has wrong type: expected {expected}, got {_type_name(value)}"]
    enum = schema.get("enum")
    if isinstance(enum, list) and not any(json_equal(value, e) for e in enum):
        problems.append(f"{label} is not one of the allowed values")
    if isinstance(value, Mapping):
        properties = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                where = f"{path}.{name}" if path else name
                problems.append(f"missing required parameter '{where}'")
        extra = schema.get("additionalProperties")
        for name, item in value.items():
            where = f"{path}.{name}" if path else str(name)
            if name in properties:
                problems.extend(schema_violations(properties[name], item, where))
            elif extra is False:
                problems.append(f"unexpected parameter '{where}'")
            elif isinstance(extra, Mapping):
                problems.extend(schema_violations(extra, item, where))
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            problems.extend(schema_violations(schema["items"], item, f"{path}[{i}]"))
    return problems

"""Typed access to JSON-RPC named params; every failure names the field (``-32602``)."""

from __future__ import annotations

from typing import Any

from carnb.errors import InvalidParams
from carnb.protocol.jsonrpc import json_type_name as _type_name

_MISSING = object()


def req_str(params: dict[str, Any], name: str, *, allow_empty: bool = False) -> str:
    value = params.get(name, _MISSING)
    if value is _MISSING or value is None:
        raise InvalidParams(f"{name} is required")
    if not isinstance(value, str):
        raise InvalidParams(f"{name} must be a string, got {_type_name(value)}")
    if not allow_empty and not value:
        raise InvalidParams(f"{name} must not be empty")
    return value


def opt_str(params: dict[str, Any], name: str, default: str | None = None) -> str | None:
    value = params.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise InvalidParams(f"{name} must be a string, got {_type_name(value)}")
    return value


def opt_bool(params: dict[str, Any], name: str, default: bool) -> bool:
    value = params.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidParams(f"{name} must be a boolean, got {_type_name(value)}")
    return value


def opt_int(
    params: dict[str, Any],
    name: str,
    default: int | None = None,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int | None:
    value = params.get(name)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParams(f"{name} must be an integer, got {_type_name(value)}")
    if minimum is not None and value < minimum:
        raise InvalidParams(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise InvalidParams(f"{name} must be at most {maximum}, got {value}")
    return value


def opt_number(params: dict[str, Any], name: str, default: float | None = None) -> float | None:
    value = params.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidParams(f"{name} must be a number, got {_type_name(value)}")
    return float(value)


def opt_str_list(params: dict[str, Any], name: str) -> list[str] | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidParams(f"{name} must be an array of strings")
    return value


def req_object(params: dict[str, Any], name: str) -> dict[str, Any]:
    value = params.get(name, _MISSING)
    if value is _MISSING or value is None:
        raise InvalidParams(f"{name} is required")
    if not isinstance(value, dict):
        raise InvalidParams(f"{name} must be an object, got {_type_name(value)}")
    return value


def req_list(params: dict[str, Any], name: str) -> list[Any]:
    value = params.get(name, _MISSING)
    if value is _MISSING or value is None:
        raise InvalidParams(f"{name} is required")
    if not isinstance(value, list):
        raise InvalidParams(f"{name} must be an array, got {_type_name(value)}")
    return value

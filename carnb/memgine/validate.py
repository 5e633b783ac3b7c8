"""Validation of memgine inputs: every check raises :class:`InvalidParams` naming the field.

Limits (documented in docs/memgine.md, Limits; generous for notes, small enough that one call cannot
make a graph unusable):
- ``body`` up to 1 MiB of UTF-8 (1,048,576 bytes) is stored; larger bodies are refused.
- ``subject`` up to 4 KiB, ``fact_id``/``kind``/``source`` up to 256 bytes, up to 64 ``tags`` of
  up to 256 bytes each.
- ``k`` is capped at 1000 results (``None`` means the default 5); ``model_context_window``
  must be a positive integer.
- A missing (``None``) required field is reported as ``invalid params: <field> is required``.
- A query longer than 64 KiB is cut there (only its first 32 distinct tokens count anyway).
"""

from __future__ import annotations

import math
from typing import Any

from carnb.errors import InvalidParams

MAX_BODY_BYTES = 1 << 20
MAX_SUBJECT_BYTES = 4096
MAX_NAME_BYTES = 256
MAX_TAGS = 64
MAX_K = 1000
DEFAULT_K = 5
MAX_QUERY_CHARS = 65536


def _utf8_len(value: str, field: str) -> int:
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidParams(
            f"{field} is not valid Unicode (it holds a lone surrogate at index {exc.start})"
        ) from exc


def text(value: Any, field: str, *, max_bytes: int, allow_empty: bool = False) -> str:
    """A string field: right type, non-blank unless ``allow_empty``, within ``max_bytes``."""
    if value is None:
        raise InvalidParams(f"{field} is required")
    if not isinstance(value, str):
        article = "a" if allow_empty else "a non-empty"
        raise InvalidParams(f"{field} must be {article} string, got {_type_name(value)}")
    if not allow_empty and not value.strip():
        raise InvalidParams(f"{field} must be a non-empty string")
    size = _utf8_len(value, field)
    if size > max_bytes:
        raise InvalidParams(
            f"{field} is {size} bytes; the limit is {max_bytes} bytes"
            + ("; split it into several facts" if field == "body" else "")
        )
    return value


def subject(value: Any) -> str:
    return text(value, "subject", max_bytes=MAX_SUBJECT_BYTES)


def body(value: Any) -> str:
    return text(value, "body", max_bytes=MAX_BODY_BYTES, allow_empty=True)


def name(value: Any, field: str) -> str:
    return text(value, field, max_bytes=MAX_NAME_BYTES)


def optional_name(value: Any, field: str) -> str | None:
    return None if value is None else name(value, field)


def tags(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise InvalidParams(f"tags must be a list of strings, got {_type_name(value)}")
    if len(value) > MAX_TAGS:
        raise InvalidParams(f"tags has {len(value)} entries; the limit is {MAX_TAGS}")
    out: list[str] = []
    for index, tag in enumerate(value):
        if not isinstance(tag, str):
            raise InvalidParams(f"tags[{index}] must be a string, got {_type_name(tag)}")
        _check_size(tag, f"tags[{index}]", MAX_NAME_BYTES)
        out.append(tag)
    return out


def supersedes(value: Any) -> list[str]:
    """Fact ids or subjects a new fact replaces: a list (or one string), at most ``MAX_TAGS``
    non-blank strings of at most ``MAX_SUBJECT_BYTES`` each."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        raise InvalidParams(
            f"supersedes must be a list of fact ids or subjects, got {_type_name(value)}"
        )
    if len(value) > MAX_TAGS:
        raise InvalidParams(f"supersedes has {len(value)} entries; the limit is {MAX_TAGS}")
    return [
        text(item, f"supersedes[{index}]", max_bytes=MAX_SUBJECT_BYTES)
        for index, item in enumerate(value)
    ]


def confidence(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidParams(f"confidence must be a number from 0 to 1, got {_type_name(value)}")
    number = float(value)
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise InvalidParams(f"confidence must be a number from 0 to 1, got {value!r}")
    return number


def k(value: Any) -> int:
    if value is None:
        return DEFAULT_K
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return min(int(value), MAX_K)
        raise InvalidParams(f"k must be an integer, got {_type_name(value)}")
    return min(value, MAX_K)


def query(value: Any) -> str:
    if value is None:
        raise InvalidParams("query is required")
    if not isinstance(value, str):
        raise InvalidParams(f"query must be a string, got {_type_name(value)}")
    text: str = value[:MAX_QUERY_CHARS]
    _utf8_len(text, "query")
    return text


def since(value: Any) -> float:
    """A point in time: seconds since the epoch."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise InvalidParams(f"since must be a time in seconds since the epoch, got {value!r}")
    return float(value)


def window(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidParams(
            f"model_context_window must be a positive integer (tokens), got {value!r}"
        )
    return value


def limit_offset(limit: Any, offset: Any) -> tuple[int | None, int]:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InvalidParams(f"limit must be a non-negative integer, got {limit!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidParams(f"offset must be a non-negative integer, got {offset!r}")
    return limit, offset


def _check_size(value: str, field: str, max_bytes: int) -> None:
    size = _utf8_len(value, field)
    if size > max_bytes:
        raise InvalidParams(f"{field} is {size} bytes; the limit is {max_bytes} bytes")


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__

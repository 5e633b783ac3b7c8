"""A tool schema from a Python function's signature and docstring (``@carnb.tool``).

Each parameter becomes a property typed from its annotation (``str`` string, ``int`` integer,
``float`` number, ``bool`` boolean, ``list[X]`` array of X, ``dict`` object, ``Literal[...]``
enum, ``X | None`` X or null); parameters without a default are ``required``. A function
without ``**kwargs`` gets ``additionalProperties: false``, so verify reports a parameter the
function would refuse. The docstring's first paragraph is the description; parameter
descriptions come from a Google-style ``Args:`` section or Sphinx ``:param name:`` lines.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, Union, get_args, get_origin

from carnb.errors import InvalidParams

from .model import ToolSchema
from .parse import parse_tool_schema

_SCALARS: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
_ARG_LINE = re.compile(r"^\s*\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_SPHINX = re.compile(r"^\s*:param\s+(?:[\w\[\], |]+\s+)?(\w+)\s*:\s*(.*)$")


def json_schema_of(annotation: Any) -> dict[str, Any]:
    """The JSON Schema of one annotation; ``{}`` (anything) when it has no JSON meaning."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return {}
    if annotation is None or annotation is type(None):
        return {"type": "null"}
    if annotation in _SCALARS:
        return {"type": _SCALARS[annotation]}
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (Union, types.UnionType):
        kinds = [json_schema_of(a) for a in args]
        names = [k.get("type") for k in kinds]
        if all(isinstance(n, str) for n in names) and len(kinds) == len(names):
            only_type = all(set(k) == {"type"} for k in kinds)
            if only_type:
                return {"type": names}
        return {}
    if annotation is list or origin is list or annotation is tuple or origin is tuple:
        items = json_schema_of(args[0]) if origin is list and args else {}
        return {"type": "array", "items": items} if items else {"type": "array"}
    if annotation is dict or origin is dict:
        return {"type": "object"}
    return {}


def _doc_parts(doc: str) -> tuple[str, dict[str, str]]:
    """(description, {parameter: description}) from a docstring."""
    text = inspect.cleandoc(doc)
    description = text.split("\n\n", 1)[0].strip() if text else ""
    described: dict[str, str] = {}
    in_args = False
    for line in text.splitlines():
        sphinx = _SPHINX.match(line)
        if sphinx:
            described[sphinx.group(1)] = sphinx.group(2).strip()
            continue
        if line.strip() in ("Args:", "Arguments:", "Parameters:"):
            in_args = True
            continue
        if in_args:
            if line and not line.startswith((" ", "\t")):
                in_args = False
                continue
            match = _ARG_LINE.match(line)
            if match:
                described[match.group(1)] = match.group(2).strip()
    if description.startswith((":param", "Args:")):
        description = ""
    return description, described


def schema_of_function(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: dict[str, Any] | None = None,
) -> ToolSchema:
    """The :class:`ToolSchema` of ``fn``; explicit ``name``/``description``/``parameters``
    win over what the function says. Raises :class:`InvalidParams` for a schema that is not
    valid (e.g. a malformed explicit ``parameters``)."""
    if not callable(fn):
        raise InvalidParams(f"a tool must be callable, got {type(fn).__name__}")
    doc_description, described = _doc_parts(inspect.getdoc(fn) or "")
    if parameters is None:
        parameters = _parameters_of(fn, described)
    tool_name = name if name is not None else getattr(fn, "__name__", "")
    if tool_name == "<lambda>":
        raise InvalidParams("a lambda has no name: pass name=")
    raw = {
        "name": tool_name,
        "description": doc_description if description is None else description,
        "parameters": parameters,
    }
    return parse_tool_schema(raw, "tool")


def _parameters_of(fn: Callable[..., Any], described: dict[str, str]) -> dict[str, Any]:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise InvalidParams(f"cannot read the signature of {fn!r}: {exc}") from None
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable forward references: fall back to the raw annotations
        hints = {}
    properties: dict[str, Any] = {}
    required: list[str] = []
    open_ended = False
    for param in signature.parameters.values():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            open_ended = True
            continue
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.POSITIONAL_ONLY):
            continue  # tools are called with named parameters only
        prop = json_schema_of(hints.get(param.name, param.annotation))
        if param.name in described:
            prop["description"] = described[param.name]
        properties[param.name] = prop
        if param.default is inspect.Parameter.empty:
            required.append(param.name)
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    if not open_ended:
        schema["additionalProperties"] = False
    return schema

"""Parse and validate agent IR wire objects into :mod:`carnb.agentir.model` types.

Every failure raises :class:`carnb.errors.InvalidParams` naming the offending field, e.g.
``invalid params: actions[3] (id "fetch").parameters must be an object``. Unknown fields are
ignored (the spec's stability rule); parsing never mutates its input.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from carnb.errors import InvalidParams

from .model import (
    DEFAULT_MAX_RETRIES,
    Action,
    ActionProposal,
    ActionType,
    Compensation,
    FailureBehavior,
    InvocationMode,
    Precondition,
    Reversibility,
    StateAssumption,
    ToolRateLimit,
    ToolSchema,
)

_E = TypeVar("_E", bound=StrEnum)

MAX_ACTIONS = 10_000  # hard cap on one proposal; verify's max_actions is the soft one
MAX_RETRIES_LIMIT = 2**32 - 1  # u32
MAX_TIMEOUT_MS = 2**63 - 1  # u64-ish bound, keeps asyncio arithmetic sane


def _fail(where: str, problem: str, field: str | None = None) -> InvalidParams:
    return InvalidParams(f"{_at(where, field)} {problem}")


def _at(where: str, field: str | None) -> str:
    """``where``, or its ``field``: the helpers below take the field apart so that the name of
    the place is only put together when it goes into an error message."""
    return where if field is None else f"{where}.{field}"


def _object(value: Any, where: str, field: str | None = None) -> dict[str, Any]:
    if type(value) is dict:  # what JSON decodes to; Mapping's check is ten times slower
        return dict(value)
    if not isinstance(value, Mapping):
        raise _fail(where, "must be an object", field)
    return dict(value)


def _string(value: Any, where: str, field: str | None = None, *, nonempty: bool = True) -> str:
    if not isinstance(value, str) or (nonempty and not value):
        problem = "must be a non-empty string" if nonempty else "must be a string"
        raise _fail(where, problem, field)
    return value


def _strings(value: Any, where: str, field: str | None = None) -> tuple[str, ...]:
    if isinstance(value, list) and not value:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(where, "must be an array of strings", field)
    return tuple(value)


def _int(value: Any, where: str, field: str | None = None, *, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(where, f"must be an integer between {low} and {high}", field)
    return value


def _bool(value: Any, where: str, field: str | None = None) -> bool:
    if not isinstance(value, bool):
        raise _fail(where, "must be a boolean", field)
    return value


@functools.cache
def _members(kind: type[StrEnum]) -> dict[str, StrEnum]:
    return {m.value: m for m in kind}


def _enum(kind: type[_E], value: Any, where: str, field: str | None = None) -> _E:
    members = _members(kind)
    member = members.get(value) if isinstance(value, str) else None
    if member is None:
        raise _fail(where, f"must be one of {', '.join(members)} (got {value!r})", field)
    return member  # type: ignore[return-value]  # _members(kind) maps to kind's members


def new_id() -> str:
    """12 hex characters from a UUIDv4, the spec's generated id."""
    return uuid.uuid4().hex[:12]


def parse_precondition(raw: Any, where: str) -> Precondition:
    obj = _object(raw, where)
    operator = obj.get("operator", "eq")
    return Precondition(
        key=_string(obj.get("key"), f"{where}.key"),
        operator=_string(operator, f"{where}.operator"),
        value=obj.get("value"),
        description=_string(obj.get("description", ""), f"{where}.description", nonempty=False),
    )


def _assumption(raw: Any, where: str) -> StateAssumption:
    obj = _object(raw, where)
    version = obj.get("read_version")
    return StateAssumption(
        key=_string(obj.get("key"), f"{where}.key"),
        expected_value=obj.get("expected_value"),
        read_version=None
        if version is None
        else _int(version, f"{where}.read_version", low=0, high=2**64 - 1),
    )


def _compensation(raw: Any, where: str) -> Compensation:
    obj = _object(raw, where)
    kind = obj.get("type")
    if kind == "tool":
        return Compensation(
            type="tool",
            tool=_string(obj.get("tool"), f"{where}.tool"),
            parameters=_object(obj.get("parameters", {}), f"{where}.parameters"),
        )
    if kind == "action_ref":
        return Compensation(
            type="action_ref", action_id=_string(obj.get("action_id"), f"{where}.action_id")
        )
    raise _fail(f"{where}.type", f"must be one of tool, action_ref (got {kind!r})")


def parse_action(raw: Any, index: int) -> Action:
    """One action; ``index`` is its position, used in error messages."""
    where = f"actions[{index}]"
    obj = _object(raw, where)
    if "id" in obj and obj["id"] is not None:
        action_id = _string(obj["id"], where, "id")
        where = f'{where} (id "{action_id}")'
    else:
        action_id = new_id()
    kind = _enum(ActionType, obj.get("type"), where, "type")
    tool = obj.get("tool")
    if kind is ActionType.TOOL_CALL or tool is not None:
        tool = _string(tool, where, "tool")
    parameters = _object(obj.get("parameters", {}), where, "parameters")
    if kind in (ActionType.STATE_WRITE, ActionType.STATE_READ):
        _string(parameters.get("key"), where, "parameters.key")
    preconditions = obj.get("preconditions", [])
    if not isinstance(preconditions, list):
        raise _fail(where, "must be an array", "preconditions")
    assumptions = obj.get("assumptions", [])
    if not isinstance(assumptions, list):
        raise _fail(where, "must be an array", "assumptions")
    compensation = obj.get("compensation")
    timeout = obj.get("timeout_ms")
    return Action(
        id=action_id,
        type=kind,
        tool=tool,
        parameters=parameters,
        preconditions=tuple(
            parse_precondition(p, f"{where}.preconditions[{i}]")
            for i, p in enumerate(preconditions)
        )
        if preconditions
        else (),
        expected_effects=_object(obj.get("expected_effects", {}), where, "expected_effects"),
        state_dependencies=_strings(obj.get("state_dependencies", []), where, "state_dependencies"),
        depends_on=_strings(obj.get("depends_on", []), where, "depends_on"),
        read_set=_strings(obj.get("read_set", []), where, "read_set"),
        write_set=_strings(obj.get("write_set", []), where, "write_set"),
        assumptions=tuple(
            _assumption(a, f"{where}.assumptions[{i}]") for i, a in enumerate(assumptions)
        )
        if assumptions
        else (),
        invocation_mode=_enum(
            InvocationMode, obj.get("invocation_mode", "one_shot"), where, "invocation_mode"
        ),
        reversibility=_enum(
            Reversibility, obj.get("reversibility", "irreversible"), where, "reversibility"
        ),
        compensation=None
        if compensation is None
        else _compensation(compensation, f"{where}.compensation"),
        idempotent=_bool(obj.get("idempotent", False), where, "idempotent"),
        max_retries=_int(
            obj.get("max_retries", DEFAULT_MAX_RETRIES),
            where,
            "max_retries",
            low=0,
            high=MAX_RETRIES_LIMIT,
        ),
        failure_behavior=_enum(
            FailureBehavior, obj.get("failure_behavior", "abort"), where, "failure_behavior"
        ),
        timeout_ms=None
        if timeout is None
        else _int(timeout, where, "timeout_ms", low=1, high=MAX_TIMEOUT_MS),
        metadata=_object(obj.get("metadata", {}), where, "metadata"),
    )


def parse_proposal(raw: Any, *, max_actions: int = MAX_ACTIONS) -> ActionProposal:
    """An ActionProposal: ``actions`` required, ids unique, at most ``max_actions`` of them."""
    obj = _object(raw, "proposal")
    if "actions" not in obj:
        raise _fail("proposal.actions", "is required")
    actions = obj["actions"]
    if not isinstance(actions, list):
        raise _fail("proposal.actions", "must be an array")
    if len(actions) > max_actions:
        raise _fail("proposal.actions", f"has {len(actions)} entries; at most {max_actions}")
    parsed = tuple(parse_action(a, i) for i, a in enumerate(actions))
    seen: dict[str, int] = {}
    for i, action in enumerate(parsed):
        if action.id in seen:
            raise _fail(
                f'actions[{i}] (id "{action.id}").id',
                f"duplicates actions[{seen[action.id]}]; ids must be unique",
            )
        seen[action.id] = i
    for i, action in enumerate(parsed):
        for target in action.depends_on:
            if target not in seen:
                raise _fail(
                    f'actions[{i}] (id "{action.id}").depends_on',
                    f"names '{target}', which is not an action of this proposal",
                )
    proposal_id = obj.get("id")
    timestamp = obj.get("timestamp")
    return ActionProposal(
        id=new_id() if proposal_id is None else _string(proposal_id, "proposal.id"),
        actions=parsed,
        source=_string(obj.get("source", "unknown"), "proposal.source", nonempty=False),
        timestamp=now_rfc3339() if timestamp is None else _string(timestamp, "proposal.timestamp"),
        context=_object(obj.get("context", {}), "proposal.context"),
    )


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


_SCHEMA_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})


def check_json_schema(schema: Any, where: str) -> dict[str, Any]:
    """Reject schemas using the keywords we validate (type, properties, required, items,
    enum, additionalProperties) in a malformed way, so verify never trips over them later."""
    obj = _object(schema, where)
    kind = obj.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not kinds or not all(isinstance(k, str) and k in _SCHEMA_TYPES for k in kinds):
            raise _fail(f"{where}.type", f"must be one of {', '.join(sorted(_SCHEMA_TYPES))}")
    if "required" in obj:
        _strings(obj["required"], f"{where}.required")
    if "enum" in obj and not isinstance(obj["enum"], list):
        raise _fail(f"{where}.enum", "must be an array")
    for name, sub in _object(obj.get("properties", {}), f"{where}.properties").items():
        check_json_schema(sub, f"{where}.properties.{name}")
    if "items" in obj:
        check_json_schema(obj["items"], f"{where}.items")
    extra = obj.get("additionalProperties")
    if extra is not None and not isinstance(extra, bool):
        check_json_schema(extra, f"{where}.additionalProperties")
    return obj


def parse_tool_schema(raw: Any, where: str = "tool") -> ToolSchema:
    """A ToolSchema / ToolDefinition (``tools.register`` entries)."""
    obj = _object(raw, where)
    name = _string(obj.get("name"), f"{where}.name")
    returns = obj.get("returns")
    ttl = obj.get("cache_ttl_secs")
    rate = obj.get("rate_limit")
    rate_limit = None
    if rate is not None:
        rate_obj = _object(rate, f"{where}.rate_limit")
        interval = rate_obj.get("interval_secs")
        if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
            raise _fail(f"{where}.rate_limit.interval_secs", "must be a positive number")
        rate_limit = ToolRateLimit(
            max_calls=_int(
                rate_obj.get("max_calls"), f"{where}.rate_limit.max_calls", low=0, high=2**32 - 1
            ),
            interval_secs=float(interval),
        )
    return ToolSchema(
        name=name,
        description=_string(obj.get("description", ""), f"{where}.description", nonempty=False),
        parameters=check_json_schema(obj.get("parameters", {}), f"{where}.parameters"),
        returns=None if returns is None else check_json_schema(returns, f"{where}.returns"),
        idempotent=_bool(obj.get("idempotent", False), f"{where}.idempotent"),
        cache_ttl_secs=None
        if ttl is None
        else _int(ttl, f"{where}.cache_ttl_secs", low=0, high=2**64 - 1),
        rate_limit=rate_limit,
    )

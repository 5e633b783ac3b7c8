"""Validation of ``browser.run`` scripts: the op table, checked before anything runs.

A script is an object (or a JSON string of one) ``{operations: [{op, ...}, ...]}``. Every
operation is checked against :data:`OPS` (required fields, types, allowed values); the first
problem raises :class:`~carnb.errors.InvalidParams` naming the operation's index and field, e.g.
``invalid params: operations[2].element_id is required for click``. Nothing here touches a
browser, so a bad script never half-runs. Unknown extra fields are ignored (docs/protocol.md).

The result is a list of plain dicts with defaults filled in, ready for :mod:`carnb.browser.ops`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from carnb.errors import InvalidParams
from carnb.protocol.jsonrpc import json_type_name as _type_name

MAX_OPERATIONS = 1000
MAX_WAIT_MS = 120_000
MIN_VIEWPORT, MAX_VIEWPORT = 64, 8192
ELEMENT_ID = re.compile(r"^el_(\d{1,9})$")
WAIT_CONDITIONS = ("page_loaded", "url_changed")
URL_SCHEMES = ("http", "https", "about", "data")
# Playwright's modifier names, and the spellings agents commonly use for them.
MODIFIERS = {
    "alt": "Alt",
    "option": "Alt",
    "control": "Control",
    "ctrl": "Control",
    "meta": "Meta",
    "cmd": "Meta",
    "command": "Meta",
    "super": "Meta",
    "shift": "Shift",
    "controlormeta": "ControlOrMeta",
}

Checker = Callable[[Any, str], Any]


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidParams(f"{where} must be a string, got {_type_name(value)}")
    return value


def _nonempty(value: Any, where: str) -> str:
    text = _string(value, where)
    if not text:
        raise InvalidParams(f"{where} must not be empty")
    return text


def _url(value: Any, where: str) -> str:
    url = _nonempty(value, where).strip()
    scheme, sep, _ = url.partition(":")
    if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        raise InvalidParams(
            f"{where} must be an absolute URL such as http://127.0.0.1:8000/, got {url!r}"
        )
    if scheme.lower() not in URL_SCHEMES:
        raise InvalidParams(
            f"{where} scheme {scheme!r} is not allowed; use one of {', '.join(URL_SCHEMES)}"
        )
    return url


def _element_id(value: Any, where: str) -> str:
    eid = _string(value, where)
    if not ELEMENT_ID.match(eid):
        raise InvalidParams(f"{where} must be an element id like el_3 (from observe), got {eid!r}")
    return eid


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidParams(f"{where} must be a number, got {_type_name(value)}")
    if not math.isfinite(value):
        raise InvalidParams(f"{where} must be a finite number")
    return float(value)


def _timeout(value: Any, where: str) -> int:
    ms = _number(value, where)
    if not 0 < ms <= MAX_WAIT_MS:
        raise InvalidParams(f"{where} must be between 1 and {MAX_WAIT_MS} ms, got {value}")
    return int(math.ceil(ms))


def _boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidParams(f"{where} must be true or false, got {_type_name(value)}")
    return value


def _condition(value: Any, where: str) -> str:
    cond = _string(value, where)
    if cond not in WAIT_CONDITIONS:
        raise InvalidParams(f"{where} must be one of {', '.join(WAIT_CONDITIONS)}, got {cond!r}")
    return cond


def _modifiers(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise InvalidParams(f"{where} must be an array of strings, got {_type_name(value)}")
    out: list[str] = []
    for i, item in enumerate(value):
        name = _string(item, f"{where}[{i}]")
        canonical = MODIFIERS.get(name.lower())
        if canonical is None:
            raise InvalidParams(
                f"{where}[{i}] {name!r} is not a modifier; use Alt, Control, Meta or Shift"
            )
        if canonical not in out:
            out.append(canonical)
    return out


# op -> {field: (required, checker, default)}
OPS: dict[str, dict[str, tuple[bool, Checker, Any]]] = {
    "navigate": {"url": (True, _url, None)},
    "observe": {},
    "click": {"element_id": (True, _element_id, None)},
    "type": {"element_id": (True, _element_id, None), "text": (True, _string, None)},
    "scroll": {"delta_y": (True, _number, None)},
    "keypress": {"key": (True, _nonempty, None), "modifiers": (False, _modifiers, [])},
    "wait": {"condition": (True, _condition, None), "timeout_ms": (False, _timeout, None)},
    "screenshot": {"full_page": (False, _boolean, False)},
}


def parse_script(script: object) -> Any:
    """Decode a JSON string script; anything else is returned as given."""
    if isinstance(script, (str, bytes, bytearray)):
        try:
            return json.loads(script)
        except ValueError as exc:
            raise InvalidParams(
                f'script is not valid JSON ({exc}); send {{"operations": [...]}}'
            ) from None
    return script


def validate_script(script: object) -> list[dict[str, Any]]:
    """Check a whole script and return its operations with defaults filled in.

    Raises :class:`InvalidParams` at the first problem, before anything runs.
    """
    if script is None:
        raise InvalidParams('script is required: {"operations": [{"op": ...}, ...]}')
    doc = parse_script(script)
    if not isinstance(doc, dict):
        raise InvalidParams(
            'script must be an object {"operations": [{"op": ...}, ...]} or a JSON string '
            f"of one, got {_type_name(doc)}"
        )
    if "operations" not in doc:
        raise InvalidParams('script.operations is required (an array of {"op": ...} objects)')
    ops = doc["operations"]
    if not isinstance(ops, list):
        raise InvalidParams(f"script.operations must be an array, got {_type_name(ops)}")
    if len(ops) > MAX_OPERATIONS:
        raise InvalidParams(
            f"script.operations has {len(ops)} entries; at most {MAX_OPERATIONS} per run"
        )
    return [_validate_op(i, raw) for i, raw in enumerate(ops)]


def _validate_op(index: int, raw: Any) -> dict[str, Any]:
    where = f"operations[{index}]"
    if not isinstance(raw, dict):
        raise InvalidParams(f"{where} must be an object with an op, got {_type_name(raw)}")
    if "op" not in raw:
        raise InvalidParams(f"{where}.op is required (one of {', '.join(OPS)})")
    name = raw["op"]
    if not isinstance(name, str):
        raise InvalidParams(f"{where}.op must be a string, got {_type_name(name)}")
    spec = OPS.get(name)
    if spec is None:
        raise InvalidParams(f"{where}.op {name!r} is unknown; expected one of {', '.join(OPS)}")
    op: dict[str, Any] = {"op": name}
    for field, (required, check, default) in spec.items():
        value = raw.get(field)
        if value is None:
            if required:
                raise InvalidParams(f"{where}.{field} is required for {name}")
            op[field] = list(default) if isinstance(default, list) else default
            continue
        op[field] = check(value, f"{where}.{field}")
    return op


def validate_viewport(width: object, height: object) -> tuple[int, int]:
    """Check ``width``/``height`` of a run: integers between 64 and 8192 pixels (None: default)."""
    out: list[int] = []
    for name, value, default in (("width", width, 1280), ("height", height, 720)):
        if value is None:
            value = default
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise InvalidParams(f"{name} must be an integer, got {_type_name(value)}")
        if not MIN_VIEWPORT <= value <= MAX_VIEWPORT:
            raise InvalidParams(
                f"{name} must be between {MIN_VIEWPORT} and {MAX_VIEWPORT} pixels, got {value}"
            )
        out.append(value)
    return out[0], out[1]

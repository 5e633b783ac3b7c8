"""JSON-RPC 2.0 messages for the CAR session protocol: text in, objects out, and back.

Theory of operation: :func:`parse_frame` turns one WebSocket text frame into exactly one of
:class:`Request` (has an ``id``; must be answered), :class:`Notification` (no ``id``; never
answered), :class:`Response` (the peer answering a request the server sent: ``result`` or
``error`` and no ``method``) or :class:`Invalid` (carries the ready error reply; the
connection stays open).
The ``*_text`` helpers are the one serialiser of frames: :func:`error_reply` answers any
:class:`~carnb.errors.CarnbError` with the code :data:`~carnb.errors.RPC_CODES` gives its type.
Nothing here does I/O or needs an event loop.

Only strict JSON is accepted: ``NaN``/``Infinity`` and numbers that overflow a double are parse
errors (they could be stored but never sent back), so are ``\\u`` escapes of lone surrogates
(they cannot be encoded as UTF-8 again), and so is nesting deeper than
:data:`MAX_DEPTH` (the limit serde_json, CAR's own parser, uses), which keeps every value a
client stores far from Python's recursion limit when it is encoded again.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from carnb.errors import (
    CarnbError,
    InternalError,
    InvalidParams,
    InvalidRequest,
    ParseError,
)

JsonId = int | str | float | None

MAX_DEPTH = 128

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _one_encoder() -> Callable[[Any], str]:
    """``_ENCODER.encode`` minus the set-up it repeats on every call: ``JSONEncoder.encode``
    builds a new C encoder for each value, which is half the cost of encoding a small reply.
    The C encoder is built once here, with the same settings, except that it keeps no table
    of the containers it is inside (a table shared between calls would keep the entries an
    encoding that failed half-way left behind): a value that contains itself fails with
    ``RecursionError`` instead of ``ValueError``, and every caller takes both. Where the C
    accelerator is missing, ``_ENCODER.encode`` itself."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return _ENCODER.encode
    encode = make(
        None,  # no container table (see above)
        _ENCODER.default,
        json.encoder.encode_basestring,  # ensure_ascii=False
        None,  # indent
        ":",
        ",",
        False,  # sort_keys
        False,  # skipkeys
        False,  # allow_nan
    )

    def dumps(value: Any) -> str:
        return "".join(encode(value, 0))

    return dumps


_dumps = _one_encoder()


# The messages made for every frame are plain dataclasses: a frozen one's ``__init__`` costs
# three times as much (it sets each field through ``object.__setattr__``). Nothing changes them
# once made.
@dataclass(slots=True)
class Request:
    id: JsonId
    method: str
    params: Any


@dataclass(slots=True)
class Notification:
    method: str
    params: Any


@dataclass(slots=True)
class Response:
    """The peer's answer to a request this server sent (``tools.execute``): ``error`` is the
    error object when it failed, else ``None`` and ``result`` holds the value."""

    id: JsonId
    result: Any = None
    error: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Invalid:
    """A frame that cannot be dispatched: the caller's ``error``, answered to ``id``."""

    error: CarnbError
    id: JsonId = None

    @property
    def reply(self) -> str:
        """The error frame to send back."""
        return error_reply(self.id, self.error)


Message = Request | Notification | Response | Invalid


def json_type_name(value: Any) -> str:
    """The JSON name of a decoded value's type, for error messages ("got array")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def error_object(code: int, message: str, data: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": int(code), "message": str(message)}
    if data is not None:
        err["data"] = data
    return err


def error_text(id: JsonId, code: int, message: str, data: Any = None) -> str:
    """Serialise an error reply. Never raises: ``data`` that is not JSON is dropped, and an id
    that cannot be sent back (it never can once :func:`parse_frame` accepted it) becomes null."""
    try:
        return _dumps({"jsonrpc": "2.0", "id": id, "error": error_object(code, message, data)})
    except (TypeError, ValueError, RecursionError):
        pass
    try:
        return _dumps({"jsonrpc": "2.0", "id": id, "error": error_object(code, message)})
    except (TypeError, ValueError, RecursionError):
        return _dumps({"jsonrpc": "2.0", "id": None, "error": error_object(code, message)})


def error_reply(id: JsonId, error: CarnbError) -> str:
    """Serialise a typed error as the reply to ``id`` (its code from ``RPC_CODES``)."""
    return error_text(id, error.code, error.message, error.data)


def result_text(id: JsonId, result: Any, *, in_pieces: bool = False) -> str:
    """Serialise a result reply. A result that is not JSON (NaN, sets, objects, nesting past the
    recursion limit) becomes an internal error reply naming the problem instead of a crash.

    ``in_pieces``: encode value by value (each string still in C) instead of in one C call, so
    a worker thread building a reply of megabytes hands the GIL back to the event loop often."""
    if in_pieces:
        return str(capped_result_text(id, result, None))
    try:
        return _dumps({"jsonrpc": "2.0", "id": id, "result": result})
    except (TypeError, ValueError, RecursionError) as exc:
        return _not_json(id, exc)


def capped_result_text(id: JsonId, result: Any, max_chars: int | None) -> str | None:
    """:func:`result_text` in pieces, or ``None`` as soon as it exceeds ``max_chars``
    characters (so an oversized reply is never built in full)."""

    def build(msg: dict[str, Any]) -> str | None:
        pieces: list[str] = []
        total = 0
        for piece in _ENCODER.iterencode(msg):
            total += len(piece)
            if max_chars is not None and total > max_chars:
                return None
            pieces.append(piece)
        return "".join(pieces)

    return _result_or_error(id, result, build)


def _result_or_error(
    id: JsonId, result: Any, build: Callable[[dict[str, Any]], str | None]
) -> str | None:
    try:
        return build({"jsonrpc": "2.0", "id": id, "result": result})
    except (TypeError, ValueError, RecursionError) as exc:
        return _not_json(id, exc)


def _not_json(id: JsonId, exc: Exception) -> str:
    return error_reply(id, InternalError(f"internal error: result is not JSON: {exc}"))


def encoded_size(value: Any) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON (what it costs to store or send)."""
    if isinstance(value, str) and value.isascii() and value.isprintable():
        # the common big value, counted without encoding it: only '"' and '\\' are escaped
        return len(value) + 2 + value.count('"') + value.count("\\")
    return len(_dumps(value).encode("utf-8"))


def notification_text(method: str, params: Any) -> str:
    return _dumps({"jsonrpc": "2.0", "method": method, "params": params})


def request_text(id: JsonId, method: str, params: Any = None) -> str:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        msg["params"] = params
    return _dumps(msg)


_NO_ID: Any = object()  # a request's "id" when it has none (null is an id)


def _valid_id(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float, str)) and not isinstance(value, bool))


class _NotStrictJson(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _NotStrictJson(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _NotStrictJson(f"number {text[:40]} is out of range")
    return value


def _too_deep(obj: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``obj`` nests arrays/objects more than ``limit`` deep (iterative, no recursion)."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


# A ``\uD800``..``\uDFFF`` escape: the only way a lone surrogate gets into a decoded frame
# (the socket already refused invalid UTF-8). A matching pair decodes to one character.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_lone_surrogate(obj: Any) -> bool:
    """Whether any string (key or value) in ``obj`` holds a lone surrogate (iterative)."""
    stack: list[Any] = [obj]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return True
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


# One decoder for every frame (json.loads with hooks would build a new one per call).
_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float)
_decode = _DECODER.decode
_raw_decode = _DECODER.raw_decode


def _loads(text: str) -> Any:
    """``_decode(text)``, parsing the text once. A frame that is one object from its first
    character, as every client sends them, skips ``decode``'s leading whitespace scan and, when
    the object ends the frame, its trailing one: ``decode`` calls ``raw_decode`` at index 0 for
    such a frame, so the value and every error are the same."""
    if text[:1] != "{":
        return _decode(text)
    obj, end = _raw_decode(text)
    if end != len(text):
        rest = text[end:].lstrip(" \t\n\r")  # JSON's whitespace, which decode skips too
        if rest:
            raise json.JSONDecodeError("Extra data", text, len(text) - len(rest))
    return obj


# The most JSON values a frame parsed off the loop may hold, counted by its commas, colons and
# brackets (strings holding them count too: the count is an upper bound). The C decoder holds
# the GIL for the whole frame, up to about 0.35 us per value, so this keeps one frame's decode
# (and the event loop's wait for it) under about 50 ms whatever the frame's shape. The largest
# proposal, 10,000 actions, takes about 110k.
MAX_FRAME_VALUES = 128 * 1024


def frame_values(text: str) -> int:
    """An upper bound of the JSON values in ``text`` (each C-speed ``str.count``)."""
    return text.count(",") + text.count(":") + text.count("[") + text.count("{")


def parse_frame(text: str, *, max_values: int | None = None) -> Message:
    """Classify one text frame. Never raises. With ``max_values``, a frame that may hold more
    values than that is refused before it is decoded."""
    if max_values is not None:
        values = frame_values(text)
        if values > max_values:
            return Invalid(
                InvalidRequest(
                    f"invalid request: the frame may hold {values} JSON values (counting its "
                    f"commas, colons and brackets); at most {max_values} per frame: send fewer "
                    "items per call, or bulky data as one string"
                )
            )
    try:
        obj = _loads(text)
    except (ValueError, RecursionError) as exc:
        detail = (
            f"nesting too deep: more than {MAX_DEPTH} levels"
            if isinstance(exc, RecursionError)
            else str(exc)
        )
        return Invalid(ParseError(f"parse error: frame is not valid JSON ({detail})"))
    # Cheap pre-checks: a frame with at most MAX_DEPTH brackets (so any frame of at most
    # MAX_DEPTH characters) cannot nest deeper than that.
    if len(text) > MAX_DEPTH and text.count("[") + text.count("{") > MAX_DEPTH and _too_deep(obj):
        return Invalid(
            ParseError(
                f"parse error: nesting too deep: arrays/objects nest more than {MAX_DEPTH} "
                "levels; flatten the value"
            )
        )
    # Like serde_json: a lone surrogate is not valid JSON (it could never be sent back as UTF-8).
    if "\\u" in text and _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(obj):
        return Invalid(
            ParseError(
                "parse error: frame is not valid JSON (a \\u escape encodes a lone UTF-16 "
                "surrogate; send the character itself or a complete surrogate pair)"
            )
        )
    return parse_object(obj)


def parse_object(obj: Any) -> Message:
    """Classify an already-decoded JSON value (see :func:`parse_frame`)."""
    if isinstance(obj, list):
        return Invalid(
            InvalidRequest(
                "invalid request: batches are not supported; send one JSON-RPC object per frame"
            )
        )
    if not isinstance(obj, dict):
        return Invalid(
            InvalidRequest(f"invalid request: expected a JSON-RPC object, got {type(obj).__name__}")
        )
    id_ = obj.get("id", _NO_ID)
    has_id = id_ is not _NO_ID
    if not has_id:
        id_ = None
    elif type(id_) is not int and type(id_) is not str and not _valid_id(id_):
        return Invalid(InvalidRequest("invalid request: id must be a string, number or null"))
    method = obj.get("method")
    if method is None:
        if has_id and ("result" in obj) != ("error" in obj):
            error = obj.get("error")
            if "error" in obj and not isinstance(error, dict):
                error = {"message": f"malformed error object: {json_type_name(error)}"}
            return Response(id_, obj.get("result"), error)
        return Invalid(InvalidRequest("invalid request: method is required"), id_)
    if not isinstance(method, str) or not method:
        return Invalid(InvalidRequest("invalid request: method must be a non-empty string"), id_)
    version = obj.get("jsonrpc", "2.0")
    if version != "2.0":
        return Invalid(InvalidRequest('invalid request: jsonrpc must be "2.0"'), id_)
    params = obj.get("params")
    if not has_id:
        return Notification(method, params)
    return Request(id_, method, params)


def params_object(params: Any) -> dict[str, Any]:
    """Named params as a dict: ``null``/absent is ``{}``; arrays and scalars are refused."""
    if params is None:
        return {}
    if isinstance(params, dict):
        return params
    raise InvalidParams(
        f"invalid params: params must be an object with named fields, got {type(params).__name__}"
    )

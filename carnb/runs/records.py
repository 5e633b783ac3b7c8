"""Run record shapes and the validation of what callers hand in (pure, no SQLite).

A run's trace is a list of records with a contiguous ``index`` (0, 1, 2, ...), which is also
the run's ``cursor`` after that record:

* ``{index: 0, record: "started", timestamp, intent, agent_id}``
* ``{index, record: "model_turn", timestamp, turn_index, assistant_text, requested_tool_calls,
  model_id, token_usage, duration_ms, inference?}``: one model inference of an agent loop
  (``runs.record_model_turn``). ``inference`` is what carnb itself saw when it served that
  inference (``infer``: the request and the reply, bounded; :mod:`carnb.app.recording`), never
  a field the caller sends. carnb writes a model turn of its own for an ``infer`` no model
  turn took (``turn_index`` null, ``inference.unattached`` true).
* ``{index, record: "turn", timestamp, turn: {...}}``: the turn object exactly as the caller sent
  it (``prompt``, ``tool``, ``parameters``, ``output``, anything else), so its own keys never
  collide with the record's.
* ``{index, record: "ended", timestamp, status, outcome?, reason?}``: ``status`` is the run's
  terminal status; ``completed`` carries the ``outcome`` as given, ``cancelled`` and
  ``incomplete`` carry a ``reason``.

The tag is ``record``, as the real daemon's ``RunRecord``.

Timestamps are ISO 8601 UTC strings with microseconds (``2025-01-02T03:04:05.678901Z``).
Validation errors are :class:`~carnb.errors.InvalidParams` naming the field and the fix.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from carnb.errors import InvalidParams

IN_PROGRESS: Final = "in_progress"
COMPLETED: Final = "completed"
CANCELLED: Final = "cancelled"
INCOMPLETE: Final = "incomplete"
STATUSES: Final = (IN_PROGRESS, COMPLETED, CANCELLED, INCOMPLETE)
TERMINAL: Final = frozenset({COMPLETED, CANCELLED, INCOMPLETE})

STARTED: Final = "started"
MODEL_TURN: Final = "model_turn"
TURN: Final = "turn"
ENDED: Final = "ended"
TAG: Final = "record"  # the key that says which kind of record it is

MAX_BATCH: Final = 256
MAX_TURN_BYTES: Final = 256 * 1024  # one turn, as compact UTF-8 JSON
MAX_OUTCOME_BYTES: Final = 256 * 1024
MAX_INTENT_CHARS: Final = 16 * 1024
MAX_KEY_CHARS: Final = 256
MAX_REASON_CHARS: Final = 4 * 1024


def new_run_id() -> str:
    """Opaque, unique, URL-safe."""
    return f"run-{uuid.uuid4().hex}"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _encode(value: Any, field: str) -> str:
    try:
        return dumps(value)
    except (TypeError, ValueError) as exc:
        raise InvalidParams(f"{field} is not JSON-serialisable ({exc})") from exc


def check_run_id(run_id: object) -> str:
    if not isinstance(run_id, str) or not run_id:
        raise InvalidParams("run_id is required and must be a non-empty string")
    return run_id


def check_intent(intent: object) -> str:
    if not isinstance(intent, str):
        raise InvalidParams("intent is required and must be a string")
    if len(intent) > MAX_INTENT_CHARS:
        raise InvalidParams(
            f"intent is {len(intent)} characters; the limit is "
            f"{MAX_INTENT_CHARS}: put long text in a turn instead"
        )
    return intent


def check_key(key: object) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS:
        raise InvalidParams(f"idempotency_key must be a string of 1..{MAX_KEY_CHARS} characters")
    return key


def check_reason(reason: object) -> str:
    if not isinstance(reason, str):
        raise InvalidParams("reason must be a string")
    return reason[:MAX_REASON_CHARS]


def encode_turns(turns: object) -> list[str]:
    """Validate a ``record_turns`` batch; return each turn as compact JSON text.

    All or nothing: the first bad turn raises and the caller writes none of the batch.
    """
    if not isinstance(turns, list):
        raise InvalidParams("turns is required and must be an array of turn objects")
    if not 1 <= len(turns) <= MAX_BATCH:
        raise InvalidParams(
            f"turns must hold 1..{MAX_BATCH} turns, got {len(turns)}: "
            "split larger batches into several calls",
            data={"count": len(turns), "max": MAX_BATCH},
        )
    out: list[str] = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise InvalidParams(
                f"turns[{i}] must be an object like {{prompt?, tool?, parameters?, output?}}"
            )
        text = _encode(turn, f"turns[{i}]")
        size = len(text.encode("utf-8"))
        if size > MAX_TURN_BYTES:
            raise InvalidParams(
                f"turns[{i}] is {size} bytes of JSON; the limit is {MAX_TURN_BYTES} per turn: "
                "truncate or summarise large outputs (nothing of this batch was recorded)",
                data={"index": i, "bytes": size, "max": MAX_TURN_BYTES},
            )
        out.append(text)
    return out


def check_outcome(outcome: object) -> dict[str, Any]:
    if not isinstance(outcome, dict):
        raise InvalidParams(
            'outcome is required and must be an object like {status: "success", summary: "..."}'
        )
    if not isinstance(outcome.get("status"), str) or not outcome["status"]:
        raise InvalidParams(
            "outcome.status is required and must be a non-empty string "
            '(e.g. "success" or "failure")'
        )
    size = len(_encode(outcome, "outcome").encode("utf-8"))
    if size > MAX_OUTCOME_BYTES:
        raise InvalidParams(f"outcome is {size} bytes of JSON; the limit is {MAX_OUTCOME_BYTES}")
    return outcome


# -- record bodies (stored as JSON; index/kind/timestamp are columns) ------------------------
def started_body(
    intent: str, agent_id: str, forked_from: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"intent": intent, "agent_id": agent_id}
    if forked_from is not None:
        body["forked_from"] = forked_from
    return body


def check_forked_from(value: object) -> dict[str, Any] | None:
    """A fork's parent as the store keeps it: ``{run_id, turn}`` (turn counts model turns from
    1), or None."""
    if value is None:
        return None
    if (
        not isinstance(value, dict)
        or not isinstance(value.get("run_id"), str)
        or isinstance(value.get("turn"), bool)
        or not isinstance(value.get("turn"), int)
    ):
        raise InvalidParams("forked_from must be {run_id: string, turn: integer}")
    return {"run_id": value["run_id"], "turn": value["turn"]}


def ended_body(
    status: str, *, outcome: dict[str, Any] | None = None, reason: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"status": status}
    if outcome is not None:
        body["outcome"] = outcome
    if reason is not None:
        body["reason"] = reason
    return body


def make_record(index: int, kind: str, ts: float, body: dict[str, Any]) -> dict[str, Any]:
    """The public record: ``{index, record: kind, timestamp, ...body}``."""
    rec: dict[str, Any] = {"index": index, TAG: kind, "timestamp": iso(ts)}
    rec.update(body)
    return rec


MODEL_TURN_FIELDS: Final = (
    "turn_index",
    "assistant_text",
    "requested_tool_calls",
    "model_id",
    "token_usage",
    "duration_ms",
)


def model_turn_body(
    params: dict[str, Any], inference: dict[str, Any] | None = None
) -> tuple[dict[str, Any], str]:
    """Validate a ``runs.record_model_turn`` call; the record body (the fields above only, and
    ``inference`` when the server recorded one; the caller bounded it) and its JSON text."""
    body: dict[str, Any] = {}
    index = params.get("turn_index")
    if index is not None and (isinstance(index, bool) or not isinstance(index, int) or index < 0):
        raise InvalidParams("turn_index must be an integer >= 0")
    body["turn_index"] = index
    text = params.get("assistant_text", "")
    if not isinstance(text, str):
        raise InvalidParams("assistant_text must be a string")
    body["assistant_text"] = text
    calls = params.get("requested_tool_calls", [])
    if not isinstance(calls, list) or not all(isinstance(c, dict) for c in calls):
        raise InvalidParams("requested_tool_calls must be an array of {id?, name, arguments}")
    body["requested_tool_calls"] = calls
    model = params.get("model_id")
    if model is not None and not isinstance(model, str):
        raise InvalidParams("model_id must be a string")
    body["model_id"] = model
    usage = params.get("token_usage")
    if usage is not None and not isinstance(usage, dict):
        raise InvalidParams("token_usage must be an object like {input_tokens, output_tokens}")
    body["token_usage"] = usage
    duration = params.get("duration_ms")
    if duration is not None and (
        isinstance(duration, bool) or not isinstance(duration, int | float) or duration < 0
    ):
        raise InvalidParams("duration_ms must be a number >= 0")
    body["duration_ms"] = duration
    if inference is not None:
        body["inference"] = inference
    text = _encode(body, "model turn")
    size = len(text.encode("utf-8"))
    if size > MAX_TURN_BYTES:
        raise InvalidParams(
            f"the model turn is {size} bytes of JSON; the limit is {MAX_TURN_BYTES}: "
            "truncate assistant_text (nothing was recorded)",
            data={"bytes": size, "max": MAX_TURN_BYTES},
        )
    return body, text


def run_summary(row: Mapping[str, Any]) -> dict[str, Any]:
    """The public summary of a run row: what ``runs.list`` and ``authorize`` return."""
    return {
        "run_id": row["run_id"],
        "agent_id": row["agent_id"],
        "intent": row["intent"],
        "status": row["status"],
        "started_at": iso(row["started_at"]),
        "ended_at": None if row["ended_at"] is None else iso(row["ended_at"]),
        "turn_count": row["turn_count"],
        "forked_from": None if row["forked_from"] is None else json.loads(row["forked_from"]),
    }

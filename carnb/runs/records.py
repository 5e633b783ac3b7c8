"""Run record shapes and the validation of what callers hand in (pure, no SQLite).

A run's trace is a list of records with a contiguous ``index`` (0, 1, 2, ...), which is also
the run's ``cursor`` after that record:

* ``{index: 0, kind: "started", timestamp, intent, agent_id}``
* ``{index, kind: "turn", timestamp, turn: {...}}``: the turn object exactly as the caller sent it
  (``prompt``, ``tool``, ``parameters``, ``output``, anything else), so its own keys never
  collide with the record's.
* ``{index, kind: "ended", timestamp, status, outcome?, reason?}``: ``status`` is the run's
  terminal status; ``completed`` carries the ``outcome`` as given, ``cancelled`` and
  ``incomplete`` carry a ``reason``.

Timestamps are ISO 8601 UTC strings with microseconds (``2025-01-02T03:04:05.678901Z``).
Validation errors are :class:`~carnb.errors.InvalidParams` naming the field and the fix.
"""

from __future__ import annotations

import json
import uuid
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
TURN: Final = "turn"
ENDED: Final = "ended"

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
def started_body(intent: str, agent_id: str) -> dict[str, Any]:
    return {"intent": intent, "agent_id": agent_id}


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
    """The public record: ``{index, kind, timestamp, ...body}``."""
    rec: dict[str, Any] = {"index": index, "kind": kind, "timestamp": iso(ts)}
    rec.update(body)
    return rec

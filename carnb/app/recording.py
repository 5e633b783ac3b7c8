"""What carnb records of an ``infer`` it serves, so that a run can be replayed and forked.

When a session with a current run calls ``infer``, :class:`InferenceRecorder` keeps what the
model was asked and what it answered until the session records the model turn of that
inference (``runs.record_model_turn`` on the same run), which then carries it as its
``inference`` field:

``{request: {model, system?, prompt?, messages, messages_kept?, unchanged?, tools?,
context_query?, ...}, context?, reply: {text, tool_calls, usage, stop_reason, model_used,
latency_ms}, truncated?}``

* ``messages_kept: k`` says the first ``k`` messages are those of the previous recorded request
  of the same run, and ``messages`` holds only the rest: an agent loop resends its whole
  conversation every turn, and storing it whole would grow the trace with the square of its
  turns. Likewise ``unchanged`` names the fields whose value is that of the previous recorded
  request (the tools, the system prompt). :func:`carnb.app.steps.model_steps` puts the
  requests back together.
* ``context`` is the memory context carnb injected for ``context_query``.
* Bounded: a string longer than :data:`~carnb.config.RECORD_TEXT_CHARS` is cut with a visible
  marker, and a record over :data:`~carnb.config.INFERENCE_RECORD_BYTES` of JSON loses its
  messages (``messages_omitted``); ``truncated: true`` says something was cut.
* Never a token: the launch's tokens are replaced by ``[redacted]`` wherever they appear.

An ``infer`` whose model turn the agent never records is kept as a ``model_turn`` record of
its own (its fields from the reply, ``turn_index`` null, the record's ``inference`` with
``unattached: true``) as soon as it is clear none will come: when the same session, in the same
run, next writes anything else (``runs.record_turns``, a proposal's or a decision's turns), asks
``infer`` again, starts another run or ends the run (``runs.complete``, ``runs.cancel``, its
connection closing). It therefore sits in the trace where it happened, before the tool turns that
followed it. :meth:`InferenceRecorder.unattached` hands it out; the run handlers write it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from carnb.config import INFERENCE_RECORD_BYTES, RECORD_TEXT_CHARS
from carnb.protocol.jsonrpc import encoded_size
from carnb.protocol.session import ClientSession

CUT = "…[truncated]"
REDACTED = "[redacted]"
# What the request keeps besides messages (the reply is rebuilt from the daemon's infer shape).
REPLY_FIELDS = ("text", "tool_calls", "usage", "stop_reason", "model_used", "latency_ms")


@dataclass
class _Pending:
    run_id: str
    record: dict[str, Any]
    request: dict[str, Any]  # the request, whole


@dataclass(frozen=True)
class Unattached:
    """An inference no model turn took: the fields of the ``model_turn`` record it becomes."""

    run_id: str
    fields: dict[str, Any]  # runs.record_model_turn's fields, from the reply
    inference: dict[str, Any]  # its ``inference`` (``unattached: true``)


def unattached_fields(record: Mapping[str, Any]) -> dict[str, Any]:
    """A model turn's fields from the (bounded) reply of an inference record."""
    reply = record.get("reply") or {}
    calls = reply.get("tool_calls")
    usage = reply.get("usage")
    latency = reply.get("latency_ms")
    return {
        "turn_index": None,
        "assistant_text": reply.get("text") if isinstance(reply.get("text"), str) else "",
        "requested_tool_calls": [c for c in calls if isinstance(c, dict)]
        if isinstance(calls, list)
        else [],
        "model_id": reply.get("model_used") if isinstance(reply.get("model_used"), str) else None,
        "token_usage": usage if isinstance(usage, dict) else None,
        "duration_ms": latency
        if isinstance(latency, int | float) and not isinstance(latency, bool) and latency >= 0
        else None,
    }


class Bounder:
    """Copies JSON values with long strings cut and secrets redacted; remembers if it cut."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = tuple(s for s in secrets if s)
        self.cut = False

    def bounded(self, value: Any) -> tuple[Any, int]:
        """``value`` made safe to keep, and about how many bytes of JSON it takes. A value
        whose JSON is short and holds no secret is kept as it is (one encoding, no copy)."""
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
        if len(text) <= RECORD_TEXT_CHARS and not any(s in text for s in self.secrets):
            return value, len(text)
        safe = self.copy(value)
        return safe, encoded_size(safe)

    def copy(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self.secrets:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            if len(value) > RECORD_TEXT_CHARS:
                self.cut = True
                return value[:RECORD_TEXT_CHARS] + CUT
            return value
        if isinstance(value, Mapping):
            return {str(k): self.copy(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.copy(v) for v in value]
        return value


def inference_record(
    request: Mapping[str, Any],
    reply: Mapping[str, Any],
    secrets: Iterable[str],
    previous: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The bounded record of one inference. ``previous`` is the run's previous recorded request
    (whole): only the new messages are kept, and a field it had with the same value is named in
    ``unchanged`` instead of stored again (a loop resends its tools every turn)."""
    bound = Bounder(secrets)
    before = previous or {}
    out_request: dict[str, Any] = {}
    unchanged: list[str] = []
    size = 0
    for key, value in request.items():
        if key in ("messages", "context"):
            continue
        if key in before and before[key] == value:
            unchanged.append(key)
            continue
        out_request[key], weight = bound.bounded(value)
        size += weight
    if unchanged:
        out_request["unchanged"] = unchanged
    messages = list(request.get("messages") or [])
    kept = _common_prefix(list(before.get("messages") or []), messages)
    if kept:
        out_request["messages_kept"] = kept
    out_request["messages"], weight = bound.bounded(messages[kept:])
    size += weight
    answered, weight = bound.bounded({k: reply.get(k) for k in REPLY_FIELDS})
    size += weight
    record: dict[str, Any] = {"request": out_request, "reply": answered}
    context = request.get("context")
    if isinstance(context, str) and context:
        record["context"], weight = bound.bounded(context)
        size += weight
    if size > INFERENCE_RECORD_BYTES:
        bound.cut = True
        out_request["messages_omitted"] = len(out_request.pop("messages"))
        out_request.pop("messages_kept", None)
        record.pop("context", None)
        if encoded_size(record) > INFERENCE_RECORD_BYTES:
            record = {"request": {"model": request.get("model")}, "reply": {}, "omitted": True}
    if bound.cut:
        record["truncated"] = True
    return record


def _common_prefix(before: list[Any], now: list[Any]) -> int:
    n = 0
    for a, b in zip(before, now, strict=False):
        if a != b:
            break
        n += 1
    return n


class InferenceRecorder:
    """Per session: the inference waiting for its model turn, and the run's last recorded
    request (for ``messages_kept``). Thread-safe: on PostgreSQL the run handlers that take an
    inference run in worker threads while ``infer`` keeps one on the loop."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled  # Settings.record_inference
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}
        self._requests: dict[str, tuple[str, dict[str, Any]]] = {}  # client id -> (run, request)

    def remember(
        self,
        session: ClientSession,
        request: Mapping[str, Any],
        reply: Mapping[str, Any],
        secrets: Iterable[str],
    ) -> Unattached | None:
        """Keep an inference of ``session``'s current run until its model turn is recorded.
        Returns the one it displaces (no model turn took it), to be written first."""
        run_id = session.current_run_id
        if run_id is None or not self.enabled:
            return None
        displaced = self.unattached(session)  # first: this request's delta refers to it
        with self._lock:
            base = self._requests.get(session.client_id)
        previous = base[1] if base is not None and base[0] == run_id else None
        record = inference_record(request, reply, secrets, previous)
        with self._lock:
            self._pending[session.client_id] = _Pending(run_id, record, dict(request))
        return displaced

    def take(self, session: ClientSession, run_id: str) -> dict[str, Any] | None:
        """The inference of ``session`` waiting for a model turn of ``run_id`` (once)."""
        with self._lock:
            pending = self._pending.get(session.client_id)
            if pending is None or pending.run_id != run_id:
                return None
            return self._taken(session, pending)

    def unattached(self, session: ClientSession) -> Unattached | None:
        """The inference of ``session`` still waiting for a model turn, taken (once) to be
        recorded as a model turn of its own: none will come now."""
        with self._lock:
            pending = self._pending.get(session.client_id)
            if pending is None:
                return None
            record = {**self._taken(session, pending), "unattached": True}
        return Unattached(pending.run_id, unattached_fields(record), record)

    def _taken(self, session: ClientSession, pending: _Pending) -> dict[str, Any]:
        del self._pending[session.client_id]
        # only a recorded request is what the next one's delta refers to
        if "messages_omitted" in pending.record["request"]:
            self._requests.pop(session.client_id, None)
        else:
            self._requests[session.client_id] = (pending.run_id, pending.request)
        return pending.record

    def waiting(self, session: ClientSession) -> bool:
        """Whether an inference of ``session`` waits for its model turn (one dict lookup)."""
        return session.client_id in self._pending

    def drop(self, session: ClientSession) -> None:
        with self._lock:
            self._pending.pop(session.client_id, None)
            self._requests.pop(session.client_id, None)

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

An ``infer`` whose model turn is never recorded (the next ``infer`` of the session comes first,
or the run ends) is not kept.
"""

from __future__ import annotations

import json
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
    """Per session: the inference waiting for its model turn, and the last recorded request's
    messages of each session's run (for ``messages_kept``)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled  # Settings.record_inference
        self._pending: dict[str, _Pending] = {}
        self._requests: dict[tuple[str, str], dict[str, Any]] = {}

    def remember(
        self,
        session: ClientSession,
        request: Mapping[str, Any],
        reply: Mapping[str, Any],
        secrets: Iterable[str],
    ) -> None:
        run_id = session.current_run_id
        if run_id is None or not self.enabled:
            return
        key = (session.client_id, run_id)
        record = inference_record(request, reply, secrets, self._requests.get(key))
        self._pending[session.client_id] = _Pending(run_id, record, dict(request))

    def take(self, session: ClientSession, run_id: str) -> dict[str, Any] | None:
        """The inference of ``session`` waiting for a model turn of ``run_id`` (once)."""
        pending = self._pending.get(session.client_id)
        if pending is None or pending.run_id != run_id:
            return None
        del self._pending[session.client_id]
        # only a recorded request is what the next one's delta refers to
        self._forget(session)
        if "messages_omitted" not in pending.record["request"]:
            self._requests[(session.client_id, run_id)] = pending.request
        return pending.record

    def drop(self, session: ClientSession) -> None:
        self._pending.pop(session.client_id, None)
        self._forget(session)

    def _forget(self, session: ClientSession) -> None:
        for key in [k for k in self._requests if k[0] == session.client_id]:
            del self._requests[key]

"""The exporter: meter events in, OTLP/HTTP spans out, never on the server loop.

:meth:`OtelExport.submit` is all the caller's thread does: one ``put_nowait`` on a bounded
queue (a full queue drops the event and counts it). The exporter's own thread turns events into
spans with opentelemetry-sdk and hands them to its ``BatchSpanProcessor``, which sends them in
batches from another thread of its own. A run is one trace: its root span (AGENT) opens at
``run_started`` and ends at ``run_ended``; model calls (LLM) and tool actions (TOOL) are its
children, exported as they happen. An endpoint that is down costs the run nothing: each batch
waits at most :data:`~carnb.config.OTEL_EXPORT_TIMEOUT_S`, its spans are counted dropped with
the error, and while the processor's queue is full new spans are dropped here and counted.

Credentials for the endpoint (Langfuse's ``Authorization`` header) come from the exporter's own
``OTEL_EXPORTER_OTLP_HEADERS`` / ``OTEL_EXPORTER_OTLP_TRACES_HEADERS``: carnb never reads,
stores or shows them, and :meth:`status` shows the endpoint without user info or query.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from carnb.config import (
    OTEL_BATCH_SPANS,
    OTEL_EXPORT_DELAY_S,
    OTEL_EXPORT_TIMEOUT_S,
    OTEL_OPEN_RUNS,
    OTEL_QUEUE_SPANS,
)
from carnb.otel import spans
from carnb.otel.endpoint import shown, traces_url

log = logging.getLogger("carnb.otel")

_STOP = object()


def _ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_SCOPE = InstrumentationScope("carnb")
_OK = Status(StatusCode.UNSET)


def _context(trace_id: int | None = None) -> SpanContext:
    """A new span's ids, drawn as the SDK's own ``RandomIdGenerator`` draws them."""
    return SpanContext(
        trace_id=trace_id if trace_id is not None else random.getrandbits(128),
        span_id=random.getrandbits(64),
        is_remote=False,
        trace_flags=_SAMPLED,
    )


@dataclass
class _OpenRun:
    """A run's root span until the run ends: its ids, start and attributes."""

    context: SpanContext
    name: str
    start: int
    attrs: spans.Attrs


class OtelExport:
    def __init__(
        self, endpoint: str, *, content: bool = False, timeout: float | None = None
    ) -> None:
        self.url = traces_url(endpoint)
        self.content = content
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=OTEL_QUEUE_SPANS)
        self._lock = threading.Lock()
        self.sent = 0
        self.dropped = 0
        self.last_error: str | None = None
        self._handed = 0  # spans given to the batch processor
        self._settled = 0  # ... of which its exporter has sent or given up on
        limit = OTEL_EXPORT_TIMEOUT_S if timeout is None else timeout
        counted = _Counting(self, OTLPSpanExporter(endpoint=self.url, timeout=limit))
        self._resource = Resource.create({"service.name": "carnb"})
        self._processor = BatchSpanProcessor(
            counted,
            max_queue_size=OTEL_QUEUE_SPANS,
            schedule_delay_millis=OTEL_EXPORT_DELAY_S * 1000,
            max_export_batch_size=OTEL_BATCH_SPANS,
            export_timeout_millis=limit * 1000,
        )
        self._roots: OrderedDict[str, _OpenRun] = OrderedDict()  # the runs whose trace is open
        self._thread = threading.Thread(target=self._work, name="carnb-otel", daemon=True)
        self._thread.start()

    # -- any thread ----------------------------------------------------------------------------
    def submit(self, event: Mapping[str, Any], content: Mapping[str, Any]) -> None:
        try:
            self._queue.put_nowait((event, content if self.content else None))
        except queue.Full:
            self._drop(1, None)

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "endpoint": shown(self.url),
                "content": self.content,
                "spans_sent": self.sent,
                "spans_dropped": self.dropped,
                "spans_waiting": self._queue.qsize() + self._handed - self._settled,
                "last_error": self.last_error,
            }

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every event submitted so far has been exported (or given up on)."""
        done = threading.Event()
        self._queue.put(done)
        if not done.wait(timeout):
            return False
        return bool(self._processor.force_flush(int(timeout * 1000)))

    def close(self) -> None:
        """End open runs' traces, send what is left (bounded by the export timeout), stop."""
        if not self._thread.is_alive():
            return
        self._queue.put(_STOP)
        self._thread.join(OTEL_EXPORT_TIMEOUT_S)
        self._processor.shutdown()  # type: ignore[no-untyped-call]

    # -- the exporter's thread -----------------------------------------------------------------
    def _drop(self, count: int, error: str | None) -> None:
        with self._lock:
            self.dropped += count
            if error is not None:
                self.last_error = error

    def settled(self, count: int, ok: bool, error: str | None) -> None:
        with self._lock:
            self._settled += count
            if ok:
                self.sent += count
            else:
                self.dropped += count
                self.last_error = error

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                now = _ns(time.time())
                for run in self._roots.values():
                    self._emit(run.name, run.context, None, run.attrs, run.start, now)
                self._roots.clear()
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            try:
                self._span(*item)
            except Exception:  # an odd event must not stop the export of the next
                log.exception("an event could not become a span")

    def _emit(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        attrs: spans.Attrs,
        start: int,
        end: int,
        status: Status = _OK,
    ) -> None:
        """Hand one finished span to the batch processor, unless its queue is full."""
        with self._lock:
            if self._handed - self._settled >= OTEL_QUEUE_SPANS:
                self.dropped += 1
                return
            self._handed += 1
        self._processor.on_end(
            ReadableSpan(
                name,
                context=context,
                parent=parent,
                resource=self._resource,
                attributes=attrs,
                kind=SpanKind.INTERNAL,
                status=status,
                start_time=start,
                end_time=max(end, start),
                instrumentation_scope=_SCOPE,
            )
        )

    def _span(self, event: Mapping[str, Any], content: Mapping[str, Any] | None) -> None:
        kind, data = event["kind"], event["data"]
        start, end = _ns(event["_started"]), _ns(event["_ts"])
        run_id = data.get("run_id")
        if kind == "run_started":
            self._open(run_id, data, content, start)
            return
        if kind == "run_ended":
            run = self._roots.pop(run_id, None) or self._open(run_id, data, None, start, False)
            attrs = {**run.attrs, **spans.run_end_attrs(data, content)}
            status = _OK
            if data.get("status") not in (None, "completed"):
                status = Status(StatusCode.ERROR, str(data.get("status")))
            self._emit(run.name, run.context, None, attrs, run.start, end, status)
            return
        if kind == "inference_metered":
            name, attrs = spans.llm_span(data, content)
            failed = False
        else:
            name, attrs, failed = spans.tool_span(kind, data, content)
        parent = None
        if isinstance(run_id, str):
            parent = (self._roots.get(run_id) or self._open(run_id, data, None, start)).context
        status = Status(StatusCode.ERROR, str(data.get("error_class"))) if failed else _OK
        context = _context(parent.trace_id if parent is not None else None)
        self._emit(name, context, parent, attrs, start, end, status)

    def _open(
        self,
        run_id: str,
        data: Mapping[str, Any],
        content: Mapping[str, Any] | None,
        start: int,
        keep: bool = True,
    ) -> _OpenRun:
        """A run's root span (one this exporter did not see start opens at its first event);
        beyond :data:`~carnb.config.OTEL_OPEN_RUNS` open runs the oldest is ended now."""
        name, attrs = spans.run_span({**data, "run_id": run_id}, content)
        run = _OpenRun(_context(), name, start, attrs)
        if keep:
            self._roots[run_id] = run
            while len(self._roots) > OTEL_OPEN_RUNS:
                _, oldest = self._roots.popitem(last=False)
                self._emit(oldest.name, oldest.context, None, oldest.attrs, oldest.start, start)
        return run


class _Counting(SpanExporter):
    """The OTLP exporter, counting what it sent and what it gave up on."""

    def __init__(self, owner: OtelExport, inner: SpanExporter) -> None:
        self._owner = owner
        self._inner = inner

    def export(self, batch: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(batch)
        except Exception as exc:
            result, error = SpanExportResult.FAILURE, f"{type(exc).__name__}: {exc}"
        else:
            error = f"{len(batch)} spans not accepted by {shown(self._owner.url)}"
        ok = result == SpanExportResult.SUCCESS
        self._owner.settled(len(batch), ok, None if ok else error)
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

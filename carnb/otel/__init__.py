"""OpenTelemetry export of runs (``pip install carnb[otel]``): every run a trace, its model
calls and tool actions spans with the GenAI and OpenInference attributes, sent over OTLP/HTTP
(Phoenix, Langfuse, any collector). opentelemetry is imported only under this package, and only
when an endpoint is set (:func:`open_export`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from carnb.errors import OtelUnavailable
from carnb.otel.endpoint import shown, traces_url

if TYPE_CHECKING:
    from carnb.otel.export import OtelExport


def open_export(endpoint: str, *, content: bool = False) -> OtelExport:
    """Start exporting to ``endpoint`` (checked first, so a bad URL fails before the import)."""
    traces_url(endpoint)
    try:
        from carnb.otel.export import OtelExport
    except ImportError:
        raise OtelUnavailable(
            "OpenTelemetry export needs the otel extra: pip install 'carnb[otel]'"
        ) from None
    return OtelExport(endpoint, content=content)


__all__ = ["OtelUnavailable", "open_export", "shown", "traces_url"]

"""Agent run tracing: the durable run store, its lifecycle and authorisation, and trace views.

Public surface: :class:`RunStore` (SQLite-backed runs and their records), :class:`Caller` (who is
asking), the status and action names, and :mod:`carnb.runs.timeline` renderers. Details in
:mod:`carnb.runs.store`, :mod:`carnb.runs.access` and :mod:`carnb.runs.records`.
"""

from carnb.errors import RunTerminal
from carnb.runs.access import (
    ACTIONS,
    CANCEL,
    COMPLETE,
    READ,
    RECORD_TURNS,
    SUBSCRIBE,
    Caller,
    as_caller,
    slug,
)
from carnb.runs.records import (
    CANCELLED,
    COMPLETED,
    IN_PROGRESS,
    INCOMPLETE,
    MAX_BATCH,
    MAX_TURN_BYTES,
    STATUSES,
    TERMINAL,
)
from carnb.runs.store import RunStore
from carnb.runs.timeline import TraceView, render_html, render_text

__all__ = [
    "ACTIONS",
    "CANCEL",
    "CANCELLED",
    "COMPLETE",
    "COMPLETED",
    "IN_PROGRESS",
    "INCOMPLETE",
    "MAX_BATCH",
    "MAX_TURN_BYTES",
    "READ",
    "RECORD_TURNS",
    "STATUSES",
    "SUBSCRIBE",
    "TERMINAL",
    "Caller",
    "RunStore",
    "RunTerminal",
    "TraceView",
    "as_caller",
    "render_html",
    "render_text",
    "slug",
]

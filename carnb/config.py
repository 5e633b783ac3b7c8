"""The settings of a launch and every default of the application and the transport, stated once.

:class:`Settings` is what a launch can be configured with (``python -m carnb serve`` flags and
``%config CarMagics`` map onto it). The constants below are the defaults and limits the server
and the application read: each is defined here and imported where it is used, so a limit has
one value and one name. A storage engine's own invariants (memgine's fact sizes, the browser's
script limits) stay in the engine that enforces them; what a launch passes to an engine comes
from here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from carnb.errors import CallerFault
from carnb.pgstore.setting import StoreSetting, from_environment, parse_store

MiB = 1024 * 1024

# -- transport (carnb.server) -----------------------------------------------------------------
BIND_ADDRESS = "127.0.0.1"  # the address the WebSocket server listens on
MAX_FRAME_BYTES = 4 * MiB  # one frame after session.auth; decoding one stays near 30 ms
MAX_FRAME_BYTES_BEFORE_AUTH = 64 * 1024  # session.auth itself is well under 1 KiB
PING_INTERVAL_S = 30.0  # keepalive pings; a peer silent this long after one is dropped
CLOSE_TIMEOUT_S = 3.0  # the closing handshake waits this long for the peer
AUTH_TIMEOUT_S = 10.0  # a connection must call session.auth within this many seconds
MAX_IN_FLIGHT = 64  # requests of one connection answered as tasks at once
MAX_QUEUED_NOTIFICATIONS = 1024  # frames waiting for a peer that reads slowly...
MAX_QUEUED_NOTIFICATION_CHARS = 16 * MiB  # ... and their characters (a run's turn may be 256 KiB)
# Longer frames are parsed on the bulk thread, in their session's turn, and refused unparsed when
# they may hold more than MAX_FRAME_VALUES values; shorter ones decode on the loop in a few
# milliseconds whatever their shape.
PARSE_OFF_LOOP_CHARS = 64 * 1024
MAX_REPLY_BYTES = 16 * MiB  # no reply is bigger (UTF-8 JSON); bigger answers are ReplyTooLarge

# -- sessions (a session's state limits live with it: carnb.protocol.session) ------------------
EVENTS_KEPT = 1000  # the host event log keeps this many events
COUNT_TIMEOUT_S = 1.0  # the panel waits this long for a busy graph's fact count

# -- tools and proposals ----------------------------------------------------------------------
TOOL_TIMEOUT_S = 300.0  # a tool call whose action sets no timeout_ms (the daemon's default)
TOOL_GRACE_S = 5.0  # a client's tool answer may come this long after its action's timeout_ms
TOOL_WORKERS = 8  # notebook tool calls running at once; more wait their turn
MAX_TOOLS = 1000  # per session
MAX_POLICIES = 1000  # per session
MAX_RUNNING_PROPOSALS = 16  # per session, below MAX_IN_FLIGHT (see app/handlers/proposals.py)
# A proposal of at most this many JSON values and characters of strings, with no policy in
# force, is prepared on the loop: tens of microseconds, less than a thread hop.
INLINE_PREPARE_NODES = 256
INLINE_PREPARE_CHARS = 64 * 1024
MAX_PENDING_CALLS = 1024  # requests one peer may owe the server at once
TURN_TEXT_CHARS = 16 * 1024  # output or error kept per recorded proposal turn

# -- supervision and approvals ----------------------------------------------------------------
DECISION_TIMEOUT_S = 30.0  # a supervised proposal with no verdict this long is rejected
ESCALATION_TIMEOUT_S = 600.0  # an escalated proposal waits this long for the approval ledger
LEDGER_LIST_MAX = 1000  # host.approvals returns at most this many approvals
SUPERVISOR_FN_TIMEOUT_S = 10.0  # a notebook supervisor function's answer; later is a deny

# -- models and chat --------------------------------------------------------------------------
MODEL_TIMEOUT_S = 120.0  # one inference, unless its model says otherwise
MODEL_WORKERS = 4  # Python model calls running at once; more wait their turn
MAX_MODELS = 100
MAX_MODEL_TEXT_CHARS = 1 * MiB  # a reply's text beyond this is a malformed reply
MAX_RUNNER_CALL_CHARS = 1 * MiB  # all a runner may send for one call, streamed or in its result
CHAT_ACK_TIMEOUT_S = 30.0  # the agent has this long to accept a chat turn
CHAT_EVENTS_KEPT = 10_000  # per chat of the notebook's session

# -- memory and runs --------------------------------------------------------------------------
MAX_QUERY_K = 100  # memory.query: facts may be 1 MiB each
# A write to a session's own in-memory graph runs on the loop up to this many characters of
# subject and body (indexing costs ~0.5 s per MiB of distinct words).
INLINE_WRITE_CHARS = 16 * 1024
MAX_STATUS_CHARS = 64 * 1024  # memory.update_status: a session's private status
TRACE_PAGE_RECORDS = 100  # runs.get_trace's default page
TRACE_PAGE_MAX_RECORDS = 1000
TRACE_PAGE_BYTES = 2 * MiB
# Time travel (app/recording.py, app/forks.py): what an infer's record keeps, and forks' bounds.
RECORD_TEXT_CHARS = 16 * 1024  # a string of a recorded infer request or reply
INFERENCE_RECORD_BYTES = 128 * 1024  # one recorded infer, as JSON (a model turn holds 256 KiB)
FORK_MAX_TURNS = 8  # model turns a fork drives after the turn it forks at, by default
FORK_TURN_LIMIT = 100  # the most a fork may be given
MAX_RUNNING_FORKS = 4  # per session

# -- metering and OpenTelemetry ----------------------------------------------------------------
METER_EVENTS_KEPT = 10_000  # events.query's window (lifetime totals are kept apart)
METER_RUNS_KEPT = 10_000  # runs whose token and cost totals are kept (the most recent)
OTEL_QUEUE_SPANS = 4096  # spans waiting for the exporter; more are dropped and counted
OTEL_BATCH_SPANS = 512  # spans per OTLP request
OTEL_EXPORT_DELAY_S = 0.5  # the exporter sends at least this often while spans wait
OTEL_EXPORT_TIMEOUT_S = 5.0  # one OTLP request, retries included, before its spans drop
OTEL_OPEN_RUNS = 10_000  # runs whose trace is open at once; the oldest is ended beyond it
# The OpenTelemetry GenAI conventions' switch for recording message and tool content.
CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _env_str(name: str) -> str | None:
    return os.environ.get(name) or None


# -- browser ----------------------------------------------------------------------------------
BROWSER_TIMEOUT_MS = 10_000  # one browser operation


def default_home() -> Path:
    """The data directory: ``$CARNB_HOME``, else ``~/.carnb``."""
    env = os.environ.get("CARNB_HOME")
    return Path(env).expanduser() if env else Path.home() / ".carnb"


@dataclass(frozen=True)
class Settings:
    """Everything a launch can be configured with (the CLI and ``%config CarMagics`` map here)."""

    bind_address: str = BIND_ADDRESS
    port: int = 0  # 0: any free port
    auth: bool = True
    allowed_origins: tuple[str, ...] = ()
    max_frame_bytes: int = MAX_FRAME_BYTES
    ping_interval: float | None = PING_INTERVAL_S
    home: Path = field(default_factory=default_home)
    connection_file: Path | None = None
    agents: tuple[str, ...] = ()
    chromium: str | None = None
    headless: bool = True
    browser_timeout_ms: int = BROWSER_TIMEOUT_MS
    memory: bool = True
    runs: bool = True
    browser: bool = True
    tool_timeout: float = TOOL_TIMEOUT_S
    # Where runs and graphs live: None/"sqlite" for files under home, or a postgresql:// URL
    # shared by a team's servers (default: $CARNB_STORE).
    store: str | None = field(default_factory=from_environment)
    model_timeout: float = MODEL_TIMEOUT_S
    # Keep each infer's request and reply in the session's current run (runs.replay, runs.fork).
    record_inference: bool = True
    decision_timeout: float = DECISION_TIMEOUT_S  # supervised proposals fail closed after it
    # OTLP/HTTP traces endpoint runs are exported to (None: no export; $CARNB_OTEL_ENDPOINT)
    otel_endpoint: str | None = field(default_factory=lambda: _env_str("CARNB_OTEL_ENDPOINT"))
    # export message and tool content too (default: the GenAI conventions' switch)
    otel_content: bool = field(default_factory=lambda: _env_flag(CAPTURE_CONTENT_ENV))
    # a JSON price table file (default: $CARNB_PRICES); carnb.prices() sets one at run time
    prices: Path | None = field(
        default_factory=lambda: Path(p) if (p := _env_str("CARNB_PRICES")) else None
    )

    def __post_init__(self) -> None:
        # accept str paths (Settings(home="~/x")) and expand ~ in both
        object.__setattr__(self, "home", Path(self.home).expanduser())
        if self.connection_file is not None:
            object.__setattr__(self, "connection_file", Path(self.connection_file).expanduser())
        if self.port < 0 or self.port > 65535:
            raise CallerFault(f"port must be between 0 and 65535, got {self.port}")
        self.store_setting  # noqa: B018 - refuse a bad store setting at once

    @property
    def store_setting(self) -> StoreSetting:
        return parse_store(self.store)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

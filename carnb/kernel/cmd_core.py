"""``%car server``, ``%car status``, ``%car auth`` and ``%car agent add|list``."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from carnb.kernel.render import EnvLines, KeyValues, Sections, Table

if TYPE_CHECKING:
    from carnb.kernel.engine import NotebookEngine
    from carnb.kernel.panel import StatusPanel
    from carnb.runtime import Runtime

SESSION_COLUMNS = [
    "session",
    "kind",
    "peer",
    "auth",
    "host",
    "agent",
    "namespace",
    "run",
    "browser",
    "connected",
]


def _age(ts: Any) -> str:
    if not isinstance(ts, (int, float)):
        return ""
    s = max(0, int(time.time() - ts))
    return f"{s}s ago" if s < 120 else f"{s // 60}m ago"


def session_rows(snaps: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            s["client_id"],
            s["kind"],
            s.get("peer") or "",
            s["authenticated"],
            s["is_host"],
            s.get("agent_id") or "",
            s.get("memory_namespace") or "",
            s.get("current_run_id") or "",
            s.get("browser_state") or "",
            _age(s.get("connected_at")),
        ]
        for s in snaps
    ]


class ServerInfo(Sections):
    """``%car server``: ``.url``, ``.env`` (real values) and ``.sessions`` for code."""

    def __init__(
        self, url: str, env: dict[str, str], sessions: list[dict[str, Any]], *parts: Any
    ) -> None:
        super().__init__(*parts)
        self.url = url
        self.env = env
        self.sessions = sessions


async def _snapshots(rt: Runtime) -> list[dict[str, Any]]:
    return rt.snapshots()


def server(nb: NotebookEngine, args: argparse.Namespace) -> ServerInfo:
    rt = nb.calls.runtime
    snaps = nb.calls.on_host(_snapshots(rt), what="%car server")
    s = rt.settings
    info = KeyValues(
        [
            ("url", rt.url),
            ("connection file", str(rt.connection_file or "")),
            ("auth", "on (token required)" if s.auth else "OFF: every local client is accepted"),
            (
                "allowed origins",
                ", ".join(s.allowed_origins) or "(none: no browser page may connect)",
            ),
            ("data directory", str(s.home)),
            ("store", rt.store_display),
            ("chromium", s.chromium or "auto: $CARNB_CHROMIUM, Playwright's, then PATH"),
            ("notebook session", rt.notebook().get("client_id") or ""),
        ],
        title="carnb session server",
    )
    env = rt.client_env()
    lines = EnvLines(
        env,
        show_tokens=args.show_tokens,
        title="a client process needs:",
        hint="tokens masked: `%car server --show-tokens` shows them",
    )
    table = Table(SESSION_COLUMNS, session_rows(snaps), title=f"{len(snaps)} connected session(s)")
    return ServerInfo(rt.url, env, snaps, info, lines, table)


def status(nb: NotebookEngine, args: argparse.Namespace) -> StatusPanel:
    panel = nb.ensure_panel()
    nb.calls.on_host(panel.aflush(), what="%car status")
    return panel


class AuthResult(KeyValues):
    def __init__(self, snap: dict[str, Any], reply: Any) -> None:
        self.snapshot = snap
        self.reply = reply
        super().__init__(
            [
                ("authenticated", snap["authenticated"]),
                ("host", snap["is_host"]),
                ("role", snap["role"]),
                ("agent", snap.get("agent_id") or "(none)"),
                ("namespace", snap.get("memory_namespace") or "(none)"),
                ("graph", snap.get("graph") or ""),
            ],
            title=f"notebook session {snap['client_id']}",
        )


def auth(nb: NotebookEngine, args: argparse.Namespace) -> AuthResult:
    rt = nb.calls.runtime
    params: dict[str, Any] = {}
    if args.token is not None:
        params["token"] = args.token
    else:
        params["host_token"] = args.host_token if args.host_token is not None else rt.host_token
    if args.agent is not None:
        params["agent_id"] = args.agent
    if args.namespace is not None:
        params["memory_namespace"] = args.namespace
    reply = nb.calls.call("session.auth", params, what="%car auth")
    return AuthResult(rt.notebook(), reply)


def agent_add(nb: NotebookEngine, args: argparse.Namespace) -> EnvLines:
    rt = nb.calls.runtime
    nb.calls.guard(lambda: rt.register_agent(args.name), what="%car agent add")
    env = rt.client_env(args.name)
    return EnvLines(
        env,
        show_tokens=args.show_tokens,
        title=f"agent {args.name} registered; its process needs:",
        hint=f"the token is masked: `%car agent add {args.name} --show-tokens` shows it; in "
        "code use the result's .env dict",
    )


def agent_list(nb: NotebookEngine, args: argparse.Namespace) -> Table:
    agents = nb.calls.call("agents.list", {}, what="%car agent list")
    rows = [
        [a.get("spec", {}).get("id"), a.get("status"), ", ".join(a.get("session_ids") or [])]
        for a in agents
    ]
    return Table(
        ["agent", "status", "sessions"],
        rows,
        title=f"{len(rows)} registered agent(s)",
        empty="no agents: `%car agent add NAME` registers one",
    )

"""``%car server``, ``%car status``, ``%car auth`` and ``%car agent add|list``."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from carnb.kernel.render import EnvLines, KeyValues, Sections, Table

if TYPE_CHECKING:
    from carnb.kernel.engine import NotebookEngine
    from carnb.kernel.panel import PanelSnapshot, StatusPanel
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
    snaps = nb.calls.on_loop(_snapshots(rt), what="%car server")
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


def status(nb: NotebookEngine, args: argparse.Namespace) -> StatusPanel | PanelSnapshot:
    panel = nb.ensure_panel()
    nb.calls.on_loop(panel.aflush(), what="%car status")
    return panel.snapshot() if args.snapshot else panel


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
    on_disk = nb.calls.guard(rt.agents_on_disk, what="%car agent add").get(args.name)
    nb.calls.guard(lambda: rt.register_agent(args.name), what="%car agent add")
    env = rt.client_env(args.name)
    verb = "registered"
    if on_disk is not None:
        verb = f"re-attached ({_disk_text(on_disk)} on disk)"
    return EnvLines(
        env,
        show_tokens=args.show_tokens,
        title=f"agent {args.name} {verb}; its process needs:",
        hint=f"the token is masked: `%car agent add {args.name} --show-tokens` shows it; in "
        "code use the result's .env dict",
    )


def _disk_text(found: dict[str, Any]) -> str:
    parts = ["memory graph"] if found.get("graph") else []
    if found.get("runs"):
        parts.append(f"{found['runs']} run(s)")
    return ", ".join(parts) or "nothing"


class AgentList(Table):
    """``%car agent list``: ``.agents`` is one dict per agent (``agent``, ``status``,
    ``sessions``, ``memory``, ``runs``)."""

    COLUMNS = ("agent", "status", "sessions", "memory", "runs")

    def __init__(self, agents: list[dict[str, Any]]) -> None:
        self.agents = agents
        super().__init__(
            list(self.COLUMNS),
            [[a[c] for c in self.COLUMNS] for a in agents],
            title=f"{len(agents)} agent(s)",
            empty="no agents: `%car agent add NAME` registers one",
        )


def agent_list(nb: NotebookEngine, args: argparse.Namespace) -> AgentList:
    """Registered agents (attached or idle) and agents only the data directory knows
    (``on disk``: `%car agent add NAME` re-attaches them with a new token)."""
    rt = nb.calls.runtime
    registered = nb.calls.call("agents.list", {}, what="%car agent list")
    disk = nb.calls.guard(rt.agents_on_disk, what="%car agent list")
    rows: dict[str, dict[str, Any]] = {}
    for a in registered:
        name = str(a.get("spec", {}).get("id"))
        rows[name] = {
            "agent": name,
            "status": a.get("status"),
            "sessions": ", ".join(a.get("session_ids") or []),
        }
    for name in disk:
        rows.setdefault(name, {"agent": name, "status": "on disk", "sessions": ""})
    for name, row in rows.items():
        found = disk.get(name, {})
        row["memory"] = "yes" if found.get("graph") else ""
        row["runs"] = found.get("runs", 0)
    return AgentList([rows[n] for n in sorted(rows)])

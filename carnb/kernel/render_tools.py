"""What ``%car tools``, ``%car policy`` and ``%%car propose`` show, and the panel's tools and
proposals section: each result renders itself as HTML (``carnb-`` classes, no colours of its
own) with a plain-text form. Every value is escaped."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from carnb.kernel.render import KeyValues, Renderable, Sections, Table
from carnb.kernel.style import Cell, cell, cell_text, esc, short_id, shorten, table_html


def params_summary(parameters: Any) -> str:
    """``a: integer, b?: string``: a JSON Schema object's properties, optional ones marked."""
    if not isinstance(parameters, dict):
        return ""
    props = parameters.get("properties")
    if not isinstance(props, dict):
        return ""
    required = set(parameters.get("required") or [])
    parts = []
    for name, spec in props.items():
        kind = spec.get("type", "any") if isinstance(spec, dict) else "any"
        if isinstance(spec, dict) and "enum" in spec:
            kind = "|".join(str(v) for v in spec["enum"])
        parts.append(f"{name}{'' if name in required else '?'}: {kind}")
    return ", ".join(parts)


def shared_text(tool: dict[str, Any]) -> str:
    shared = tool.get("shared")
    if shared is None:
        return "own (client)"
    if shared is True:
        return "notebook, shared with all"
    if shared is False:
        return "notebook only"
    return "notebook, shared with " + ", ".join(str(a) for a in shared)


class ToolsTable(Table):
    """Tools per session: ``.sessions`` (the runtime's data), ``.tools`` (names shown)."""

    COLUMNS = ("session", "agent", "tool", "parameters", "description", "from")

    def __init__(self, sessions: list[dict[str, Any]], *, title: str = "tools") -> None:
        self.sessions = sessions
        rows, names = [], []
        for s in sessions:
            for t in s["tools"]:
                names.append(t["name"])
                rows.append(
                    [
                        short_id(s["client_id"]),
                        s.get("agent_id") or ("notebook" if s.get("kind") == "notebook" else ""),
                        cell(t["name"], cls="carnb-tool"),
                        params_summary(t.get("parameters")),
                        t.get("description") or "",
                        shared_text(t),
                    ]
                )
        self.tools = list(dict.fromkeys(names))
        super().__init__(self.COLUMNS, rows, title=title, empty="no session has a tool")


class PolicyList(Table):
    """The notebook session's policies in registration order (``.policies``)."""

    def __init__(self, policies: list[dict[str, Any]]) -> None:
        self.policies = policies
        super().__init__(
            ("policy", "description"),
            [(p.get("name", ""), p.get("description", "")) for p in policies],
            title="policies of the notebook's session",
            empty="no policy (`%car policy add NAME --rule ...` adds one)",
        )


NOT_RUN = ("rejected", "skipped")  # statuses of actions that never ran (no time to show)


def _status(status: str) -> Cell:
    return cell(status, cls=f"carnb-status carnb-status-{status}")


def _ms(value: Any) -> str:
    return "" if value is None else f"{float(value):.1f} ms"


class Verification(Renderable):
    """A ``verify`` result: ``.valid``, ``.issues``, ``.conflicts``, ``.levels``, ``.result``."""

    def __init__(self, result: dict[str, Any]) -> None:
        self.result = result
        self.valid = bool(result.get("valid"))
        self.issues: list[dict[str, Any]] = list(result.get("issues") or [])
        self.conflicts: list[Sequence[str]] = list(result.get("conflicts") or [])
        self.levels: list[list[str]] = list(result.get("execution_levels") or [])

    def _validity(self) -> str:
        """``valid`` means no error: a write conflict is a warning, so say it beside yes."""
        if not self.valid:
            return "no"
        return "yes, with write conflicts (see below)" if self.conflicts else "yes"

    def _parts(self) -> Sections:
        errors = sum(1 for i in self.issues if i.get("severity") == "error")
        summary = KeyValues(
            [
                ("valid", self._validity()),
                ("issues", f"{len(self.issues)} ({errors} error(s))"),
                ("conflicts", len(self.conflicts)),
                ("levels", " → ".join("[" + ", ".join(lv) + "]" for lv in self.levels)),
            ],
            title="verification",
        )
        issues = Table(
            ("action", "severity", "tier", "message"),
            [
                (
                    i.get("action_id") or "",
                    cell(i.get("severity", ""), cls=f"carnb-severity-{i.get('severity', '')}"),
                    i.get("tier") or "",
                    i.get("message", ""),
                )
                for i in self.issues
            ],
            title="issues",
            empty="no issue",
        )
        conflicts = Table(
            ("action", "action", "key"),
            [tuple(c) for c in self.conflicts],
            title="write conflicts (no ordering between the writers)",
            empty="no conflict",
        )
        return Sections(summary, issues, conflicts)

    def text(self) -> str:
        return self._parts().text()

    def html(self) -> str:
        return f'<div class="carnb-verify">{self._parts().html()}</div>'


class ProposalOutcome(Table):
    """A ``proposal.submit`` result: ``.result``, ``.results`` (by action id), ``.cost``."""

    def __init__(self, result: dict[str, Any]) -> None:
        self.result = result
        self.results = {r["action_id"]: r for r in result.get("results") or []}
        self.cost: dict[str, Any] = dict(result.get("cost") or {})
        cost = self.cost
        title = (
            f"proposal {result.get('proposal_id', '')}: "
            f"{cost.get('actions_executed', 0)} executed, {cost.get('actions_rejected', 0)} "
            f"rejected, {cost.get('actions_skipped', 0)} skipped, "
            f"{cost.get('tool_calls', 0)} tool call(s), {_ms(cost.get('total_duration_ms'))}"
        )
        super().__init__(
            ("action", "status", "output", "time", "error"),
            [
                (
                    r["action_id"],
                    _status(str(r.get("status"))),
                    r.get("output"),
                    "" if r.get("status") in NOT_RUN else _ms(r.get("duration_ms")),
                    r.get("error") or "",
                )
                for r in self.results.values()
            ],
            title=title,
            empty="no action",
        )


class Proposed(Sections):
    """``%%car propose``: the verification, then (with ``--run``) the outcome."""

    def __init__(self, verification: Verification, outcome: ProposalOutcome | None) -> None:
        self.verification = verification
        self.outcome = outcome
        note = None if outcome is not None else _NotRun()
        super().__init__(verification, outcome if outcome is not None else note)


class _NotRun(Renderable):
    def text(self) -> str:
        return "not executed (add --run to execute it)"

    def html(self) -> str:
        return f'<div class="carnb-note">{esc(self.text())}</div>'


# -- the panel's section -------------------------------------------------------------------
PANEL_COLUMNS = ("session", "tools", "proposal", "actions")


def _took(a: dict[str, Any]) -> str:
    ran = a.get("duration_ms") is not None and a["status"] not in NOT_RUN
    return f" {_ms(a['duration_ms'])}" if ran else ""


def _name(a: dict[str, Any]) -> str:
    """The action's tool (or type); its shortened id when the events named neither (the plain
    text keeps the full id)."""
    return str(a.get("name") or shorten(str(a["action_id"]), 8))


def _action_title(a: dict[str, Any]) -> str:
    """The hover text: the action's id (the name shown is its tool), and its error if any."""
    title = f"action {a['action_id']}"
    return f"{title}: {a['error']}" if a.get("error") else title


def _actions_text(p: dict[str, Any]) -> str:
    parts = []
    for a in p["actions"]:
        took = _took(a)
        parts.append(f"{a.get('name') or a['action_id']} {a['status']}{took}")
    if p.get("dropped"):
        parts.append(f"+{p['dropped']} more")
    return "; ".join(parts)


def _actions_html(p: dict[str, Any]) -> str:
    spans = []
    for a in p["actions"]:
        took = _took(a)
        spans.append(
            f'<span class="carnb-action carnb-status-{esc(a["status"])}" '
            f'data-action="{esc(a["action_id"])}" data-status="{esc(a["status"])}" '
            f'title="{esc(_action_title(a))}">'
            f"{esc(_name(a))} {esc(a['status'])}{esc(took)}</span>"
        )
    if p.get("dropped"):
        spans.append(f"<span>+{p['dropped']} more</span>")
    return " ".join(spans)


def _proposal_cell(p: dict[str, Any] | None) -> Cell:
    if p is None:
        return Cell("", "")
    state = "running" if p["running"] else "last"
    pid = short_id(p["proposal_id"])
    return Cell(f"{p['proposal_id']} ({state})", f"{pid.html} <i>{state}</i>")


def _panel_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("tools") or r.get("proposal")]


def _panel_cells(r: dict[str, Any]) -> list[Any]:
    p = r.get("proposal")
    actions = Cell("", "") if p is None else Cell(_actions_text(p), _actions_html(p))
    return [short_id(r["client_id"]), ", ".join(r.get("tools") or []), _proposal_cell(p), actions]


def panel_tools_html(rows: list[dict[str, Any]]) -> str:
    """The sessions that have tools or a proposal: their tools and proposal, action by action."""
    shown = _panel_rows(rows)
    if not shown:
        return ""
    return table_html(
        PANEL_COLUMNS,
        [_panel_cells(r) for r in shown],
        title="tools and proposals",
        cls="carnb-tools",
        row_classes=[
            "carnb-running" if (r.get("proposal") or {}).get("running") else "" for r in shown
        ],
    )


def panel_tools_text(rows: list[dict[str, Any]]) -> str:
    shown = _panel_rows(rows)
    if not shown:
        return ""
    return Table(
        PANEL_COLUMNS,
        [[cell_text(c) for c in _panel_cells(r)] for r in shown],
        title="tools and proposals",
        width=400,
    ).text()

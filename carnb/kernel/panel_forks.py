"""The panel's fork lineage: each fork of a run listed under its parent, as ``%car run list``
does, with its status while it runs in the background and how it ended.

The panel learns of forks from the run store's records (``Runtime.watch_runs``, on the loop
thread): a ``started`` record with ``forked_from`` is a fork (``runs.fork``, from any session of
this server), its turns and model turns are counted as they are committed, and its ``ended``
record says how it ended (a completed fork by its outcome: ``success`` or ``failure``). So the
panel shows the forks started while it is open; ``%car run list`` shows every fork of an agent.
An ended fork stays listed for the panel's linger time; at most :data:`FORKS_KEPT` are kept.
Pure bookkeeping and rendering: no I/O, the clock is injected.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from carnb.kernel.linger import LINGER_SECONDS
from carnb.kernel.render import Table
from carnb.kernel.style import Cell, fork_point, short_id, table_html

FORKS_KEPT = 20
COLUMNS = ("run", "status", "forked from", "model turns", "turns")
FORK_MARK = "↳ "


@dataclass
class Fork:
    run_id: str
    parent: str  # the run it forks
    turn: int  # the model turn it forks at (the first is 1)
    agent_id: str | None
    status: str = "in progress"
    model_turns: int = 0
    turns: int = 0
    ended_at: float | None = None


class PanelForks:
    """The forks seen so far, by run id, in the order they started."""

    def __init__(
        self, linger: float = LINGER_SECONDS, clock: Callable[[], float] = time.time
    ) -> None:
        self.linger = linger
        self.clock = clock
        self._forks: dict[str, Fork] = {}

    def note(self, event: dict[str, Any]) -> bool:
        """Take one run store event (``{run_id, agent_id, record, cursor, status}``); True when
        a fork changed."""
        record = event.get("record") or {}
        kind = record.get("record")
        run_id = str(event.get("run_id") or "")
        if kind == "started":
            parent = record.get("forked_from")
            if not isinstance(parent, dict) or not isinstance(parent.get("run_id"), str):
                return False
            self._forks[run_id] = Fork(
                run_id, parent["run_id"], int(parent.get("turn") or 0), event.get("agent_id")
            )
            while len(self._forks) > FORKS_KEPT:
                del self._forks[next(iter(self._forks))]
            return True
        fork = self._forks.get(run_id)
        if fork is None:
            return False
        if kind == "model_turn":
            fork.model_turns += 1
        elif kind == "turn":
            fork.turns += 1
        elif kind == "ended":
            fork.status = _ended_status(record)
            fork.ended_at = self.clock()
        return True

    def shown(self) -> list[Fork]:
        """The forks to show now: running ones, and ended ones within the linger time."""
        now = self.clock()
        for run_id in [
            r
            for r, f in self._forks.items()
            if f.ended_at is not None and now - f.ended_at > self.linger
        ]:
            del self._forks[run_id]
        return list(self._forks.values())

    def next_expiry(self) -> float | None:
        """Seconds until the next ended fork is due to go, or None."""
        ends = [f.ended_at + self.linger for f in self._forks.values() if f.ended_at is not None]
        return max(0.0, min(ends) - self.clock()) if ends else None


def _ended_status(record: dict[str, Any]) -> str:
    outcome = record.get("outcome")
    if record.get("status") == "completed" and isinstance(outcome, dict):
        return str(outcome.get("status") or "completed")
    return str(record.get("status") or "ended")


@dataclass(frozen=True)
class Node:
    """One line of the lineage: a run with its depth under the run it forks."""

    run_id: str
    depth: int
    fork: Fork | None  # None: a run that is no fork (the root of a lineage)
    on_panel: bool  # a session row shows it (current or ended lately)
    ended: bool


def tree(runs: list[tuple[str, bool]], forks: list[Fork]) -> list[Node]:
    """The panel's runs ``(run id, ended)`` with each fork right under its parent (a fork of a
    fork under that fork), oldest fork first. The root of a fork whose lineage the panel shows
    no run of comes after them (``on_panel`` False)."""
    by_id = {f.run_id: f for f in forks}
    children: dict[str, list[Fork]] = {}
    for fork in forks:
        if fork.parent != fork.run_id:
            children.setdefault(fork.parent, []).append(fork)
    shown = dict(runs)
    out: list[Node] = []
    placed: set[str] = set()

    def walk(run_id: str, depth: int) -> None:
        if run_id in placed:
            return
        placed.add(run_id)
        fork = by_id.get(run_id)
        # a run no session row shows: not known to have ended
        ended = fork.ended_at is not None if fork is not None else shown.get(run_id, False)
        out.append(Node(run_id, depth, fork, run_id in shown, ended))
        for child in children.get(run_id, []):
            walk(child.run_id, depth + 1)

    def root(run_id: str) -> str:
        seen = {run_id}
        while run_id in by_id and by_id[run_id].parent not in seen:
            run_id = by_id[run_id].parent
            seen.add(run_id)
        return run_id

    for run_id, _ in runs:
        walk(root(run_id), 0)
    for fork in forks:
        walk(root(fork.run_id), 0)
    return out


def _rows(nodes: list[Node]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for node in nodes:
        rid = short_id(node.run_id)
        if node.depth:
            lead = "\u00a0\u00a0" * (node.depth - 1) + FORK_MARK
            rid = Cell(lead + rid.text, lead + rid.html)
        fork = node.fork
        if fork is None:
            state = "" if not node.on_panel else "ended" if node.ended else "in progress"
            rows.append([rid, state, "", "", ""])
        else:
            parent = fork_point(fork.parent, fork.turn)
            rows.append([rid, fork.status, parent, fork.model_turns, fork.turns])
    return rows


def _with_forks(nodes: list[Node]) -> list[Node]:
    """The lineages that hold a fork (a run without forks is not repeated here)."""
    keep: list[Node] = []
    group: list[Node] = []
    for node in [*nodes, Node("", 0, None, False, False)]:
        if node.depth == 0:
            if any(n.fork is not None for n in group):
                keep.extend(group)
            group = []
        group.append(node)
    return keep


def forks_html(runs: list[tuple[str, bool]], forks: list[Fork]) -> str:
    """The lineage table (nothing when no fork is shown)."""
    if not forks:
        return ""
    rows = _rows(_with_forks(tree(runs, forks)))
    return table_html(COLUMNS, rows, title="forks, under their parent", cls="carnb-forks")


def forks_text(runs: list[tuple[str, bool]], forks: list[Fork]) -> str:
    if not forks:
        return ""
    rows = _rows(_with_forks(tree(runs, forks)))
    return Table(COLUMNS, rows, title="forks, under their parent").text()


def trace_runs(runs: list[tuple[str, bool]], forks: list[Fork]) -> list[tuple[str, bool, str]]:
    """The runs the panel offers a live trace of: ``(run id, ended, label prefix)``, its runs
    with their forks under them (``↳ @TURN`` before a fork's id), and the run a fork's lineage
    starts from when no session row shows it."""
    return [
        (n.run_id, n.ended, "" if n.fork is None else f"{FORK_MARK}@{n.fork.turn} ")
        for n in tree(runs, forks)
    ]

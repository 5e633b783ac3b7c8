"""Sessions that left and runs that ended, kept for a while so the panel can show them greyed.

The panel sees only snapshots of the sessions connected now. :class:`Lingering` compares each
set of snapshots with the previous one: a session missing from the new set has ended (its last
snapshot is kept, with ``ended_at``); a session whose run id changed or vanished has ended that
run (the run id, its turn count and ``ended_at`` are kept). Both are forgotten ``linger`` seconds
later. Pure bookkeeping: no I/O, the clock is injected.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

LINGER_SECONDS = 300.0


@dataclass(frozen=True)
class EndedRun:
    run_id: str
    turns: Any
    ended_at: float
    agent_id: str | None = None
    settled: bool = False  # ``turns`` is the run's final count (read from the store)
    usage: Any = None  # the run's last known {calls, tokens_in, tokens_out, cost_usd, ...}


class Lingering:
    def __init__(
        self, linger: float = LINGER_SECONDS, clock: Callable[[], float] = time.time
    ) -> None:
        self.linger = linger
        self.clock = clock
        self._last: dict[str, dict[str, Any]] = {}
        self._sessions: dict[str, dict[str, Any]] = {}
        self._runs: dict[str, EndedRun] = {}

    def update(self, live: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Note ``live`` (this moment's snapshots); return the ended sessions still shown, newest
        first. Each live row and each ended row gets ``ended_run`` (an :class:`EndedRun` or
        None); ended rows get ``ended_at``."""
        now = self.clock()
        seen = {r["client_id"]: r for r in live}
        for cid, before in self._last.items():
            rid = before.get("current_run_id")
            after = seen.get(cid)
            if rid and (after is None or after.get("current_run_id") != rid):
                self._runs[cid] = EndedRun(
                    rid,
                    before.get("run_turns"),
                    now,
                    before.get("agent_id"),
                    usage=before.get("run_usage"),
                )
            if after is None and cid not in self._sessions:
                self._sessions[cid] = {
                    **before,
                    "me": False,
                    "ended_at": now,
                    "current_run_id": None,
                }
        for cid in seen:  # a client id that comes back is live again
            self._sessions.pop(cid, None)
        self._expire(now)
        self._last = {cid: dict(r) for cid, r in seen.items()}
        for row in live:
            row["ended_run"] = self._run_for(row)
        ended = sorted(self._sessions.values(), key=lambda r: -r["ended_at"])
        for row in ended:
            row["ended_run"] = self._run_for(row)
        return [dict(r) for r in ended]

    def unsettled(self) -> list[EndedRun]:
        """Ended runs whose turn count is still the last one a snapshot showed (turns recorded
        just before the run ended may be missing from it)."""
        return [r for r in self._runs.values() if not r.settled]

    def settle(self, run_id: str, turns: Any) -> None:
        """``turns`` is the final turn count of the ended run ``run_id``."""
        for cid, run in self._runs.items():
            if run.run_id == run_id:
                self._runs[cid] = replace(run, turns=turns, settled=True)

    def _run_for(self, row: dict[str, Any]) -> EndedRun | None:
        if row.get("current_run_id"):
            return None
        return self._runs.get(row["client_id"])

    def _expire(self, now: float) -> None:
        cutoff = now - self.linger
        self._sessions = {k: v for k, v in self._sessions.items() if v["ended_at"] > cutoff}
        self._runs = {k: v for k, v in self._runs.items() if v.ended_at > cutoff}

    def next_expiry(self) -> float | None:
        """Seconds until the next kept item is forgotten (None when nothing is kept)."""
        times = [float(r["ended_at"]) for r in self._sessions.values()]
        times += [r.ended_at for r in self._runs.values()]
        if not times:
            return None
        return max(0.0, min(times) + self.linger - self.clock())

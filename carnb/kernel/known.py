"""Values the notebook has seen or can list cheaply, for tab completion: agent names, run ids,
fact ids, ``el_N`` ids of the last observation, memory namespaces, tool names (of every
session) and the notebook session's policy names.

:class:`KnownValues` remembers ids from the results the magics returned (duck-typed: a result's
``.runs``, ``.facts``, ``.elements``, ``.run_id``) and adds what the runtime knows (registered
agents, agents on disk, recent runs). A lookup through the runtime is bounded by
``LOOKUP_TIMEOUT`` and any failure just means fewer suggestions.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from carnb.runtime import Runtime

log = logging.getLogger("carnb.kernel.known")

LOOKUP_TIMEOUT = 1.0
RECENT_RUNS = 20
KEEP = 200
_EL = re.compile(r"\[?(el_\d+)\]?")


class KnownValues:
    """Recently seen ids per kind, plus what the runtime can list quickly."""

    def __init__(
        self, runtime: Callable[[], Runtime | None], run_owner: Callable[[], str | None]
    ) -> None:
        self._runtime = runtime
        self._run_owner = run_owner
        self.seen: dict[str, list[str]] = {"run": [], "fact": [], "element": []}

    def remember(self, kind: str, values: list[str], *, replace: bool = False) -> None:
        old = [] if replace else self.seen.get(kind, [])
        merged = list(dict.fromkeys([*values, *old]))
        self.seen[kind] = merged[:KEEP]

    def note_result(self, result: Any) -> None:
        """Remember the ids a command's result carries (its rendering is not touched)."""
        try:
            elements = getattr(result, "elements", None)
            if isinstance(elements, list):  # the page changed: old el_N ids are stale
                ids = [m.group(1) for e in elements if (m := _EL.match(str(e)))]
                self.remember("element", ids, replace=True)
            facts = getattr(result, "facts", None)
            if isinstance(facts, list):
                self.remember("fact", [str(f["fact_id"]) for f in facts if f.get("fact_id")])
            runs = getattr(result, "runs", None)
            if isinstance(runs, list):
                self.remember("run", [str(r["run_id"]) for r in runs if r.get("run_id")])
            run_id = getattr(result, "run_id", None)
            if isinstance(run_id, str):
                self.remember("run", [run_id])
        except Exception as exc:  # never fail a command over completion data
            log.debug("could not note ids of a %s: %s", type(result).__name__, exc)

    def __call__(self, kind: str) -> list[str]:
        """The known values of ``kind`` (quick; never raises)."""
        rt = self._runtime()
        try:
            if kind == "agent":
                return self._agents(rt)
            if kind == "namespace":
                return self._namespaces(rt)
            if kind == "run":
                return self._runs(rt)
            if kind == "tool":
                return self._tools(rt)
            if kind == "policy":
                return self._policies(rt)
        except Exception as exc:
            log.debug("no %s values: %s", kind, exc)
        return list(self.seen.get(kind, []))

    def _agents(self, rt: Runtime | None) -> list[str]:
        if rt is None or not rt.running:
            return []
        return sorted({*rt.credentials.agents.ids(), *rt.agents_on_disk()})

    def _namespaces(self, rt: Runtime | None) -> list[str]:
        from carnb.runtime import graph_names

        if rt is None:
            return []
        return graph_names(rt.home / "graphs" / "namespaces")

    def _runs(self, rt: Runtime | None) -> list[str]:
        found = list(self.seen["run"])
        if rt is None or not rt.running:
            return found
        snap = rt.notebook()
        owner = snap.get("agent_id") or self._run_owner()
        current = snap.get("current_run_id")
        if current:
            found.insert(0, current)
        if owner:
            reply = rt.call(
                "runs.list", {"agent_id": owner, "limit": RECENT_RUNS}, timeout=LOOKUP_TIMEOUT
            )
            found += [str(r["run_id"]) for r in reply.get("runs") or []]
        return list(dict.fromkeys(found))

    def _tools(self, rt: Runtime | None) -> list[str]:
        found = list(self.seen.get("tool", []))
        if rt is None or not rt.running:
            return found
        sessions = rt.run_on_loop(rt.atools(), timeout=LOOKUP_TIMEOUT)
        found += sorted({t["name"] for s in sessions for t in s["tools"]})
        return list(dict.fromkeys(found))

    def _policies(self, rt: Runtime | None) -> list[str]:
        if rt is None or not rt.running:
            return list(self.seen.get("policy", []))
        reply = rt.call("policy.list", {}, timeout=LOOKUP_TIMEOUT)
        return list(dict.fromkeys(str(p["name"]) for p in reply.get("policies") or []))

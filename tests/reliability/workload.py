"""The load workload: one authenticated connection doing a checked mix of ``state.*``,
``memory.*`` and ``runs.*`` calls. Every reply is compared with what the protocol says it must
be; mismatches are collected (not raised) so one run reports all of them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from tests.reliability.harness import AClient, RpcFailed


@dataclass
class Tally:
    calls: int = 0
    failures: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.failures.append(what)


async def checked(c: AClient, tally: Tally, method: str, params: Any = None) -> Any:
    tally.calls += 1
    try:
        return await c.call(method, params, timeout=60)
    except RpcFailed as exc:
        tally.failures.append(f"{method}: error {exc.code} {exc.message}")
    except Exception as exc:  # a dropped connection or a timeout is a failure to report
        tally.failures.append(f"{method}: {type(exc).__name__}: {exc}")
    return None


async def plain_session(c: AClient, tag: str, tally: Tally) -> None:
    """A token-authenticated, unbound session: its own state, its own ephemeral graph, a
    ``name:`` run."""
    value = {"tag": tag, "n": [1, 2, 3], "s": "ü" * 10}
    r = await asyncio.gather(
        checked(c, tally, "state.set", {"key": "a", "value": value}),
        checked(c, tally, "state.set", {"key": "b", "value": tag, "tenant_id": "t"}),
        checked(c, tally, "memory.add_fact", {"subject": f"subj-{tag}", "body": f"alpha {tag}"}),
    )
    tally.check(r[0] == "ok" and r[1] == "ok", f"{tag} state.set -> {r[:2]}")
    tally.check(r[2] == 1, f"{tag} first add_fact -> {r[2]} (another session's facts leaked?)")
    got = await checked(c, tally, "state.get", {"key": "a"})
    tally.check(got == value, f"{tag} state.get -> {got!r}")
    tally.check(
        await checked(c, tally, "state.get", {"key": "b", "tenant_id": "t"}) == tag,
        f"{tag} tenant state",
    )
    tally.check(await checked(c, tally, "state.exists", {"key": "zz"}) is False, f"{tag} exists")
    tally.check(await checked(c, tally, "state.keys") == ["a"], f"{tag} state.keys")
    snap = await checked(c, tally, "state.snapshot", {"tenant_id": "t"})
    tally.check(snap == {"b": tag}, f"{tag} snapshot -> {snap!r}")
    n = await checked(
        c, tally, "memory.add_fact", {"subject": f"subj-{tag}", "body": f"beta {tag}"}
    )
    tally.check(n == 2, f"{tag} second add_fact -> {n}")
    tally.check(await checked(c, tally, "memory.fact_count") == 2, f"{tag} fact_count")
    hits = await checked(c, tally, "memory.query", {"query": f"beta {tag}", "k": 5})
    tally.check(
        isinstance(hits, list)
        and bool(hits)
        and hits[0]["body"] == f"beta {tag}"
        and all(h["subject"] == f"subj-{tag}" for h in hits),
        f"{tag} query -> {hits!r}",
    )
    run = await checked(c, tally, "runs.start", {"intent": f"load {tag}", "agent_name": f"L {tag}"})
    if not isinstance(run, dict):
        return
    rid = run["run_id"]
    first, second = await asyncio.gather(
        checked(c, tally, "runs.record_turns", {"run_id": rid, "turns": [{"prompt": "p1"}]}),
        checked(
            c,
            tally,
            "runs.record_turns",
            {"run_id": rid, "turns": [{"prompt": "p2"}, {"prompt": "p3"}]},
        ),
    )
    bases = sorted((x["base_index"], x["count"]) for x in (first, second) if isinstance(x, dict))
    tally.check(bases in ([(1, 1), (2, 2)], [(1, 2), (3, 1)]), f"{tag} turn indexes {bases}")
    done = await checked(
        c, tally, "runs.complete", {"run_id": rid, "outcome": {"status": "success"}}
    )
    tally.check(done == {"run_id": rid, "ok": True}, f"{tag} complete -> {done!r}")
    trace = await checked(c, tally, "runs.get_trace", {"run_id": rid})
    tally.check(
        isinstance(trace, dict)
        and trace.get("status") == "completed"
        and [r["index"] for r in trace["records"]] == [0, 1, 2, 3, 4],
        f"{tag} trace -> {trace!r}",
    )


async def agent_session(c: AClient, agent: str, tag: str, tally: Tally) -> None:
    """A session bound to a registered agent: writes to the shared persistent graph and a run."""
    fid = f"{tag}-fact"
    n = await checked(
        c,
        tally,
        "memory.add_fact",
        {"subject": f"load {agent}", "body": f"unique{tag} marker", "fact_id": fid},
    )
    tally.check(isinstance(n, int) and n >= 1, f"{tag} agent add_fact -> {n!r}")
    hits = await checked(c, tally, "memory.query", {"query": f"unique{tag}", "k": 3})
    tally.check(
        isinstance(hits, list) and bool(hits) and hits[0]["fact_id"] == fid,
        f"{tag} agent query -> {hits!r}",
    )
    tally.check(await checked(c, tally, "state.set", {"key": "k", "value": tag}) == "ok", tag)
    tally.check(await checked(c, tally, "state.get", {"key": "k"}) == tag, f"{tag} agent state")
    run = await checked(c, tally, "runs.start", {"intent": f"agent load {tag}"})
    if not isinstance(run, dict):
        return
    tally.check(run.get("agent_id") == agent, f"{tag} run owner {run!r}")
    rid = run["run_id"]
    rec = await checked(
        c,
        tally,
        "runs.record_turns",
        {"run_id": rid, "turns": [{"prompt": f"{tag}-{i}"} for i in range(4)]},
    )
    tally.check(
        isinstance(rec, dict) and rec.get("base_index") == 1 and rec.get("count") == 4,
        f"{tag} agent turns -> {rec!r}",
    )
    done = await checked(
        c, tally, "runs.complete", {"run_id": rid, "outcome": {"status": "success", "summary": tag}}
    )
    tally.check(done == {"run_id": rid, "ok": True}, f"{tag} agent complete -> {done!r}")

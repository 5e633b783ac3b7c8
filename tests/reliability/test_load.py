"""Load: 500 concurrent authenticated connections against a `python -m carnb serve` process, each
doing a checked mix of state.*, memory.* and runs.* calls; every reply right, no connection
dropped, and the server's memory back to a plateau after the clients leave (several rounds)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.reliability.harness import FIGURES, AClient, add, mib, note
from tests.reliability.workload import Tally, agent_session, plain_session

pytestmark = pytest.mark.reliability

CONNECTIONS = 500
ROUNDS = 4
AGENTS = [f"ag{i}" for i in range(10)]
AGENT_EVERY = 5  # every 5th connection is bound to an agent (persistent graph, agent runs)
OPEN_CONCURRENCY = 100  # the listen backlog is 100: open in waves instead of one burst
# After the first round (allocator warm-up), the RSS after each later round may exceed the
# RSS after round 1 by at most this much: steady growth per round means a leak.
RSS_TOLERANCE = 24 * 1024 * 1024


class HostWatch:
    """A host connection subscribed to host events, counting attach/detach of sessions."""

    def __init__(self, client: AClient) -> None:
        self.c = client

    @classmethod
    async def open(cls, url: str, host_token: str) -> HostWatch:
        c = await AClient.open(url)
        await c.call("session.auth", {"host_token": host_token})
        await c.call("server.handshake", {"protocol_version": 3})
        await c.call("host.subscribe")
        return cls(c)

    def count(self, kind: str) -> int:
        return sum(
            1
            for n in self.c.notifications
            if n["method"] == "host.event" and n["params"]["kind"] == kind
        )

    async def wait_for(self, kind: str, n: int, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while self.count(kind) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.count(kind)


async def one_round(
    url: str, info: dict[str, Any], rnd: int, tally: Tally, peak: list[int], sample: Any
) -> list[AClient]:
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)

    async def open_one(i: int) -> AClient:
        async with gate:
            c = await AClient.open(url)
            if i % AGENT_EVERY == 0:
                agent = AGENTS[(i // AGENT_EVERY) % len(AGENTS)]
                got = await c.call(
                    "session.auth", {"token": info["agents"][agent], "agent_id": agent}
                )
                tally.check(got.get("agent_id") == agent, f"auth {agent} -> {got}")
            else:
                got = await c.call("session.auth", {"token": info["token"]})
                tally.check(got == {"ok": True, "auth_enabled": True}, f"auth -> {got}")
            tally.calls += 1
            return c

    clients = await asyncio.gather(*(open_one(i) for i in range(CONNECTIONS)))
    peak.append(sample())

    async def work(i: int, c: AClient) -> None:
        tag = f"r{rnd}c{i}"
        if i % AGENT_EVERY == 0:
            agent = AGENTS[(i // AGENT_EVERY) % len(AGENTS)]
            await agent_session(c, agent, tag, tally)
        else:
            await plain_session(c, tag, tally)

    await asyncio.gather(*(work(i, c) for i, c in enumerate(clients)))
    peak.append(sample())
    return list(clients)


def test_500_connections_every_reply_right_and_memory_bounded(start_server) -> None:
    srv = start_server(*[a for name in AGENTS for a in ("--agent", name)])
    rss: dict[str, Any] = {"start": srv.rss(), "peak": [], "after": []}

    async def main() -> Tally:
        tally = Tally()
        host = await HostWatch.open(srv.url, srv.host_token)
        for rnd in range(ROUNDS):
            peaks: list[int] = []
            clients = await one_round(srv.url, srv.info, rnd, tally, peaks, srv.rss)
            # all 500 are open at once: the server holds every one of them
            established = [
                k
                for k in srv.ps.net_connections(kind="tcp")
                if k.status == "ESTABLISHED" and k.laddr.port == srv.port
            ]
            tally.check(
                len(established) >= CONNECTIONS,
                f"round {rnd}: server holds {len(established)} connections",
            )
            dropped = [c for c in clients if c.ws.close_code is not None]
            tally.check(not dropped, f"round {rnd}: {len(dropped)} connections dropped")
            note(
                "load: connections held at once (max)",
                max(FIGURES.get("load: connections held at once (max)", 0), len(established)),
            )
            await asyncio.gather(*(c.close() for c in clients))
            want = (rnd + 1) * CONNECTIONS  # every session seen attaching, then detaching
            got = await host.wait_for("session.detached", want)
            tally.check(got == want, f"round {rnd}: {got} of {want} sessions detached")
            tally.check(
                host.count("session.attached") == want,
                f"round {rnd}: attached {host.count('session.attached')}",
            )
            await asyncio.sleep(0.5)
            rss["peak"].append(max(peaks))
            rss["after"].append(srv.rss())
        tally.check(host.c.ws.close_code is None, "the host event subscriber was dropped")
        await host.c.close()
        return tally

    t0 = time.monotonic()
    tally = asyncio.run(main())
    elapsed = time.monotonic() - t0
    add("load: connections opened", CONNECTIONS * ROUNDS)
    add("load: calls made (checked)", tally.calls)
    note(
        "load: server RSS MiB start/peak/after rounds",
        (
            f"{mib(rss['start'])} / {max(mib(x) for x in rss['peak'])} / "
            f"{[mib(x) for x in rss['after']]} ({elapsed:.1f} s)"
        ),
    )
    assert tally.failures == [], tally.failures[:20]
    assert srv.alive()
    after = rss["after"]
    growth = [b - after[0] for b in after[1:]]
    assert max(growth) <= RSS_TOLERANCE, (
        f"server RSS keeps growing after clients leave: {[mib(x) for x in after]} MiB by round"
    )
    assert "Traceback" not in srv.log_text(), srv.log_text()[-3000:]

"""Hostile memory content against a live `python -m carnb serve`: a client stores a
fact of 32 very long words (1 MiB, the kind of thing scraped text holds) and big facts that wait
to be indexed, then queries new words. Each query once froze the whole server for ~30 s (a
quadratic vocabulary scan holding the GIL). A bystander session keeps timing ``state.get``
round trips meanwhile: they stay short, and so do the attacker's queries."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from tests.reliability.harness import AClient, note

pytestmark = pytest.mark.reliability

LONG_WORDS = 32
BODY_BYTES = 1 << 20  # memgine's body limit
QUERIES = 12
MIN_ROUND_TRIPS = 50
BIG_PENDING = 8
# Generous bounds for a loaded 2-core machine; the attack took ~30 s per query before the fix.
MAX_ROUND_TRIP_S = 1.0
MAX_QUERY_S = 2.0
_LETTERS = bytes(97 + b % 26 for b in range(256))


def planted_body(rng: random.Random) -> str:
    chars = (BODY_BYTES - (LONG_WORDS - 1)) // LONG_WORDS
    return " ".join(rng.randbytes(chars).translate(_LETTERS).decode() for _ in range(LONG_WORDS))


def test_planted_long_words_do_not_freeze_the_server(start_server) -> None:
    srv = start_server()
    rng = random.Random(15)

    async def scenario() -> tuple[list[float], list[float]]:
        attacker = await AClient.open(srv.url)
        bystander = await AClient.open(srv.url)
        for c in (attacker, bystander):
            await c.call("session.auth", {"token": srv.token})
        await bystander.call("state.set", {"key": "probe", "value": 1})
        round_trips: list[float] = []
        done = asyncio.Event()

        async def watch() -> None:
            while not done.is_set() or len(round_trips) < MIN_ROUND_TRIPS:
                start = time.monotonic()
                assert await bystander.call("state.get", {"key": "probe"}, timeout=60) == 1
                round_trips.append(time.monotonic() - start)
                await asyncio.sleep(0.005)

        async def attack() -> list[float]:
            try:
                for i in range(40):
                    params = {"subject": f"s{i}", "body": f"note {i}"}
                    await attacker.call("memory.add_fact", params)
                params = {"subject": "scraped", "body": planted_body(rng)}
                await attacker.call("memory.add_fact", params)
                for i in range(BIG_PENDING):
                    body = f"marker{i} " + planted_body(rng)
                    params = {"subject": f"big{i}", "body": body[:BODY_BYTES]}
                    await attacker.call("memory.add_fact", params)
                took = []
                for i in range(QUERIES):
                    start = time.monotonic()
                    query = f"novel{chr(97 + i)}word other{chr(97 + i)}thing marker3"
                    found = await attacker.call("memory.query", {"query": query}, timeout=120)
                    took.append(time.monotonic() - start)
                    assert found and found[0]["subject"] == "big3"
                return took
            finally:
                done.set()

        watcher = asyncio.create_task(watch())
        queries = await attack()
        await watcher
        await attacker.close()
        await bystander.close()
        return queries, round_trips

    queries, round_trips = asyncio.run(scenario())
    note("memory hostile: slowest query under planted keys (ms)", round(max(queries) * 1000, 1))
    note(
        "memory hostile: bystander state.get max ms over round trips",
        f"{max(round_trips) * 1000:.1f} over {len(round_trips)}",
    )
    assert max(queries) < MAX_QUERY_S, queries
    assert round_trips and max(round_trips) < MAX_ROUND_TRIP_S, max(round_trips)
    assert srv.alive()

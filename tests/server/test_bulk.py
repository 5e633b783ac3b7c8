"""The bulk thread's lane: jobs run one at a time, their sessions in turn."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from carnb.app.bulk import run_bulk


def test_a_session_with_many_jobs_delays_anothers_by_one_job_of_its_own() -> None:
    ran: list[str] = []
    running = threading.Lock()

    def job(name: str) -> str:
        assert running.acquire(blocking=False), "two bulk jobs ran at once"
        try:
            time.sleep(0.005)
            ran.append(name)
            return name
        finally:
            running.release()

    async def main() -> int:
        greedy = [asyncio.create_task(run_bulk("greedy", job, f"g{i}")) for i in range(20)]
        other = [asyncio.create_task(run_bulk("other", job, f"o{i}")) for i in range(3)]
        await asyncio.sleep(0.02)  # both queues are full and a job is running
        seen = len(ran)
        assert await run_bulk("late", job, "late") == "late"
        await asyncio.gather(*greedy, *other)
        return seen

    seen = asyncio.run(main())
    # the newcomer waited for the running job and at most one job of each other session
    assert ran.index("late") - seen <= 3, (seen, ran)
    # while both had work, greedy never ran twice in a row
    last_other = max(ran.index(f"o{i}") for i in range(3))
    both = [name[0] for name in ran[1 : last_other + 1] if name != "late"]
    assert "gg" not in "".join(both), ran
    assert sorted(ran) == sorted([f"g{i}" for i in range(20)] + ["o0", "o1", "o2", "late"])


def test_errors_reach_their_caller_and_a_cancelled_job_is_skipped() -> None:
    ran: list[str] = []
    gate = threading.Event()

    def blocker() -> None:
        gate.wait(5)
        ran.append("blocker")

    def boom() -> None:
        raise ValueError("bad frame")

    def never() -> None:
        ran.append("never")

    async def main() -> None:
        first = asyncio.create_task(run_bulk("a", blocker))
        await asyncio.sleep(0.01)
        skipped = asyncio.create_task(run_bulk("a", never))
        failing = asyncio.create_task(run_bulk("b", boom))
        await asyncio.sleep(0.01)
        skipped.cancel()
        gate.set()
        await first
        with pytest.raises(ValueError, match="bad frame"):
            await failing
        assert await run_bulk("c", lambda: "still serving") == "still serving"

    asyncio.run(main())
    assert ran == ["blocker"]

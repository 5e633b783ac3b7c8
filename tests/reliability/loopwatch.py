"""The loop watchdog: a bystander client that keeps timing ``state.get`` round trips while an
attack runs, so a test can say "nobody else noticed" in numbers (p99 and worst round trip).

    async with LoopWatch(url, token) as watch:   # or: with LoopWatch(url, token) as watch:
        await attack()
    assert watch.p99() < 0.1, watch.summary()

The bystander runs in a process of its own (spawned), so what it measures is the server, not
the test process's own work (an attacker in the test decoding megabytes of replies holds the
test's GIL and loop). Round trips are sequential, one every ``interval`` seconds; a frozen
server loop shows as one long round trip, which is what p99 and ``worst`` expose.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

from tests.reliability.harness import AClient

_SPAWN = multiprocessing.get_context("spawn")


def _watch(url: str, token: str, interval: float, stop: Any, out: Connection) -> None:
    samples: list[float] = []
    errors: list[str] = []

    async def main() -> None:
        client = await AClient.open(url)
        await client.call("session.auth", {"token": token})
        await client.call("state.set", {"key": "watch", "value": {"alive": True}})
        out.send("ready")
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                value = await client.call("state.get", {"key": "watch"}, timeout=30)
            except Exception as exc:  # a failed bystander is a finding, not a crash
                errors.append(f"{type(exc).__name__}: {exc}")
                break
            samples.append(time.perf_counter() - t0)
            if value != {"alive": True}:
                errors.append(f"state.get answered {value!r}")
            await asyncio.sleep(interval)
        await client.close()

    try:
        asyncio.run(main())
    except Exception as exc:
        errors.append(f"watchdog failed: {type(exc).__name__}: {exc}")
        out.send("ready")  # unblock a waiting start()
    out.send((samples, errors))


class LoopWatch:
    def __init__(self, url: str, token: str, *, interval: float = 0.01) -> None:
        self.url = url
        self.token = token
        self.interval = interval
        self.samples: list[float] = []
        self.errors: list[str] = []
        self._stop = _SPAWN.Event()
        self._conn, child = _SPAWN.Pipe(duplex=False)
        self._proc = _SPAWN.Process(
            target=_watch, args=(url, token, interval, self._stop, child), daemon=True
        )

    # -- plain and async context manager -------------------------------------------------
    def start(self) -> LoopWatch:
        self._proc.start()
        if not self._conn.poll(60):
            raise TimeoutError("the watchdog did not start within 60 s")
        self._conn.recv()  # "ready"
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._conn.poll(60):
            self.samples, self.errors = self._conn.recv()
        else:
            self.errors.append("the watchdog did not report within 60 s")
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()

    def __enter__(self) -> LoopWatch:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> LoopWatch:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    # -- figures ---------------------------------------------------------------------------
    def p99(self) -> float:
        if not self.samples:
            return float("inf")
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]

    def worst(self) -> float:
        return max(self.samples, default=float("inf"))

    def summary(self) -> str:
        return (
            f"{len(self.samples)} round trips, p99 {self.p99() * 1000:.1f} ms, "
            f"worst {self.worst() * 1000:.1f} ms, errors {self.errors[:3]}"
        )

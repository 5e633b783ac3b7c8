"""The loop watchdog: a bystander client that keeps timing ``state.get`` round trips while an
attack runs, so a test can say "nobody else noticed" in numbers (p99 and worst round trip).

    async with LoopWatch(url, token) as watch:
        await attack()
    assert watch.p99() < 0.1, watch.summary()

Round trips are sequential (one request in flight), one every ``interval`` seconds; a frozen
server loop shows as one long round trip, which is what p99 and ``worst`` expose.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType

from tests.reliability.harness import AClient


class LoopWatch:
    def __init__(self, url: str, token: str, *, interval: float = 0.01) -> None:
        self.url = url
        self.token = token
        self.interval = interval
        self.samples: list[float] = []
        self.errors: list[str] = []
        self._client: AClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def __aenter__(self) -> LoopWatch:
        self._client = await AClient.open(self.url)
        await self._client.call("session.auth", {"token": self.token})
        await self._client.call("state.set", {"key": "watch", "value": {"alive": True}})
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
        if self._client is not None:
            await self._client.close()

    async def _run(self) -> None:
        assert self._client is not None
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                value = await self._client.call("state.get", {"key": "watch"}, timeout=30)
            except Exception as exc:  # a failed bystander is a finding, not a crash
                self.errors.append(f"{type(exc).__name__}: {exc}")
                return
            self.samples.append(time.perf_counter() - t0)
            if value != {"alive": True}:
                self.errors.append(f"state.get answered {value!r}")
            await asyncio.sleep(self.interval)

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

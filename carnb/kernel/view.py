"""What the widgets may use of the runtime: calls as the notebook's session, session snapshots,
change notification and scheduling on the host loop. :class:`carnb.runtime.Runtime` satisfies
:class:`RuntimeView`; typing the panel and the explorer against it keeps them off the services,
the sessions and the engines."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Coroutine
from typing import Any, Protocol


class RuntimeView(Protocol):
    @property
    def running(self) -> bool: ...

    @property
    def url(self) -> str: ...

    def call(self, method: str, params: Any = None, *, timeout: float | None = 120) -> Any: ...

    async def acall(self, method: str, params: Any = None) -> Any: ...

    def notebook(self) -> dict[str, Any]: ...

    async def asnapshots(self) -> list[dict[str, Any]]: ...

    def watch(self, on_change: Callable[[], None]) -> Callable[[], None]: ...

    def run_on_host(self, coro: Coroutine[Any, Any, Any], timeout: float | None = 120) -> Any: ...

    def submit(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]: ...

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None: ...

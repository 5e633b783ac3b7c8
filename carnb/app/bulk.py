"""One worker thread for the server's bulk work: building large replies and reading trace pages.

Why one: the event loop shares the GIL with every worker thread, and each thread that is busy
at the same time adds up to a switch interval to every GIL hand-off the loop needs, so four
threads encoding megabytes at once slow every other client's round trip several-fold. Bulk
jobs therefore wait their turn in one queue (first come, first served); the loop competes with
at most one of them.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="carnb-bulk")


async def run_bulk(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` on the bulk thread and wait for it without blocking the loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_EXECUTOR, functools.partial(fn, *args))

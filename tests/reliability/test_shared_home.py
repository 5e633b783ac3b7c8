"""Two carnb processes on one data directory: a large ``memory.load`` in one
froze the other's loop for seconds (its fast memory calls waited for SQLite's write lock on the
loop thread), then its writes failed with a bare "database is locked".

Now no memory call waits for the database on the loop, a load commits in bounded batches (so the
other process's writes get in between), and a write lock held too long by someone else is a clear
error naming the graph. Shown against two live ``python -m carnb serve`` processes, and against a
real kernel whose cell ticks every 10 ms through the in-kernel server while the attack runs."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.harness import AClient, RpcFailed, ServerProc, note
from tests.reliability.test_memory_graphs import MAX_HOLD_S, LoopWatch, bound_client

pytestmark = pytest.mark.reliability

LOADED = 100_000  # facts in the file the other process loads
NAMESPACE = "shared"
WRITE_EVERY_S = 0.02
MAX_KERNEL_GAP_S = 0.2  # a cell ticking every 10 ms sees no gap over 200 ms


def write_big_file(home: Path) -> str:
    folder = home / "memory" / "namespaces" / NAMESPACE
    folder.mkdir(parents=True, exist_ok=True)
    facts = [
        {"fact_id": f"L{i}", "subject": f"topic {i % 1000}", "body": f"loaded fact {i} word{i}"}
        for i in range(LOADED)
    ]
    (folder / "big.json").write_text(json.dumps({"facts": facts}))
    return "big.json"


def side(tmp_path: Path, name: str) -> Path:
    """A folder for one server's connection file and log (two servers share one home)."""
    folder = tmp_path / name
    folder.mkdir()
    return folder


class Writer:
    """Adds a fact every ``WRITE_EVERY_S`` to the shared graph; keeps latencies and errors."""

    def __init__(self, client: AClient, tag: str) -> None:
        self.client, self.tag = client, tag
        self.acked: list[str] = []
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.stop = asyncio.Event()

    async def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            fid = f"{self.tag}-{i}"
            start = time.perf_counter()
            try:
                await self.client.call(
                    "memory.add_fact",
                    {"fact_id": fid, "subject": "writer", "body": f"written {fid}"},
                    timeout=60,
                )
                self.acked.append(fid)
            except RpcFailed as exc:
                self.errors.append(str(exc.message))
            self.latencies.append(time.perf_counter() - start)
            i += 1
            await asyncio.sleep(WRITE_EVERY_S)


async def load_beside_writer(loader_url: str, loader_token: str, writer: Writer) -> float:
    """Load the big file through one process while ``writer`` writes through the other."""
    loader = await bound_client(loader_url, loader_token, NAMESPACE)
    task = asyncio.create_task(writer.run())
    await asyncio.sleep(0.3)
    start = time.perf_counter()
    count = await loader.call("memory.load", {"path": "big.json"}, timeout=300)
    took = time.perf_counter() - start
    assert count == LOADED
    await asyncio.sleep(0.3)
    writer.stop.set()
    await task
    await loader.close()
    return took


def test_load_in_one_process_does_not_freeze_the_other(start_server, tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = write_big_file(home)
    assert path == "big.json"
    a = start_server(home=home, side_dir=side(tmp_path, "a"))
    b = start_server(home=home, side_dir=side(tmp_path, "b"))

    async def scenario() -> tuple[LoopWatch, Writer, float, int]:
        w = await bound_client(b.url, b.token, NAMESPACE)
        writer = Writer(w, "b")
        async with LoopWatch(b.url, b.token) as watch:
            took = await load_beside_writer(a.url, a.token, writer)
        # both processes see one graph: the load plus every write acknowledged after it began
        count = await w.call("memory.fact_count")
        check = await bound_client(a.url, a.token, NAMESPACE)
        assert await check.call("memory.fact_count") == count
        last = writer.acked[-1]
        found = await check.call("memory.query", {"query": f"written {last}", "k": 1})
        assert found and found[0]["fact_id"] == last
        found = await w.call("memory.query", {"query": "word77777", "k": 1})
        assert found and found[0]["fact_id"] == "L77777"
        await check.close()
        await w.close()
        return watch, writer, took, count

    watch, writer, took, count = asyncio.run(scenario())
    note("shared home: load of 100k facts in the other process (s)", round(took, 2))
    note("shared home: bystander beside it", watch.summary())
    note(
        "shared home: writer beside it: acked / errors / slowest (ms)",
        f"{len(writer.acked)} / {len(writer.errors)} / {max(writer.latencies) * 1000:.0f}",
    )
    assert watch.worst() < MAX_HOLD_S, watch.summary()
    assert writer.errors == [], writer.errors[:3]
    assert max(writer.latencies) < 1.0, max(writer.latencies)  # about one batch, not the load
    assert LOADED < count <= LOADED + len(writer.acked)


def test_write_lock_held_elsewhere_is_a_clear_error_and_frees_the_loop(start_server) -> None:
    srv = start_server()

    async def scenario() -> tuple[LoopWatch, str, float, list[Any]]:
        c = await bound_client(srv.url, srv.token, NAMESPACE)
        assert await c.call("memory.add_fact", {"subject": "s", "body": "before the lock"}) == 1
        graph = next((srv.home / "graphs" / "namespaces").glob(f"{NAMESPACE}.sqlite3"))
        other = sqlite3.connect(graph, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holding the write lock, for too long
        try:
            async with LoopWatch(srv.url, srv.token) as watch:
                start = time.perf_counter()
                try:
                    await c.call("memory.add_fact", {"subject": "s", "body": "blocked"}, timeout=60)
                except RpcFailed as exc:
                    message = str(exc.message)
                else:
                    raise AssertionError("a write went through a held write lock")
                waited = time.perf_counter() - start
                found = await c.call("memory.query", {"query": "before"})  # reads still work
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert await c.call("memory.add_fact", {"subject": "s", "body": "after the lock"}) == 2
        await c.close()
        return watch, message, waited, found

    watch, message, waited, found = asyncio.run(scenario())
    note("shared home: error for a write lock held elsewhere", message)
    note("shared home: bystander while the write waited", watch.summary())
    assert watch.worst() < MAX_HOLD_S, watch.summary()
    assert [f["body"] for f in found] == ["before the lock"]
    assert NAMESPACE in message and "another" in message and "nothing was written" in message
    assert "database is locked" not in message
    assert waited < 15


@pytest.fixture
def kernel_on(tmp_path: Path) -> Iterator[Any]:
    pytest.importorskip("ipykernel")
    from tests.reliability.test_kernel_server import Kernel

    kernels: list[Kernel] = []

    def start(home: Path) -> Kernel:
        k = Kernel(home)
        kernels.append(k)
        reply, out = k.execute("%load_ext carnb")
        assert reply["status"] == "ok", k.text(out)
        return k

    yield start
    for k in kernels:
        k.close()


@pytest.mark.kernel
def test_kernel_cell_keeps_ticking_while_another_process_loads(
    start_server, kernel_on, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    write_big_file(home)
    k = kernel_on(home)
    reply, out = k.execute(
        "import carnb, json\nrt = carnb.current()\n"
        "print(json.dumps({'url': rt.url, 'file': str(rt.connection_file)}))"
    )
    assert reply["status"] == "ok", k.text(out)
    where = json.loads(k.text(out).strip().splitlines()[-1])
    token = json.loads(Path(where["file"]).read_text())["token"]
    other: ServerProc = start_server(home=home, side_dir=side(tmp_path, "other"))
    flag = tmp_path / "done"
    ticker = k.kc.execute(
        "import json, os, time\n"
        "rt.call('state.set', {'key': 'tick', 'value': 0})\n"
        "gaps, last, t0 = [], time.perf_counter(), time.perf_counter()\n"
        f"while not os.path.exists({str(flag)!r}) and time.perf_counter() - t0 < 180:\n"
        "    rt.call('state.get', {'key': 'tick'}, timeout=60)\n"
        "    time.sleep(0.01)\n"
        "    now = time.perf_counter(); gaps.append(now - last); last = now\n"
        "print(json.dumps({'worst': max(gaps), 'ticks': len(gaps)}))"
    )

    async def scenario() -> tuple[Writer, float]:
        w = await bound_client(where["url"], token, NAMESPACE)
        writer = Writer(w, "k")
        took = await load_beside_writer(other.url, other.token, writer)
        await w.close()
        return writer, took

    try:
        writer, took = asyncio.run(scenario())
    finally:
        flag.touch()
    reply, out = k.wait(ticker, timeout=240)
    assert reply["status"] == "ok", k.text(out)
    ticks = json.loads(k.text(out).strip().splitlines()[-1])
    note("shared home (kernel): load in the other process (s)", round(took, 2))
    note(
        "shared home (kernel): cell ticks / worst gap (ms)",
        f"{ticks['ticks']} / {ticks['worst'] * 1000:.0f}",
    )
    assert writer.errors == [], writer.errors[:3]
    assert ticks["worst"] < MAX_KERNEL_GAP_S, ticks

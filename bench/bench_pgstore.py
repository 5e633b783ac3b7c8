"""Benchmark carnb servers on a PostgreSQL store beside the SQLite default, in one run.

Usage: ``.venv/bin/python bench/bench_pgstore.py [--quick]``

Starts a throw-away PostgreSQL from the machine's binaries (``tests/postgres.py``;
``tools/ensure-postgresql`` installs them) and real ``python -m carnb serve`` processes
(``--no-auth``, loopback). Measures:

* append-to-notification delay: a client appends one turn through server A, a subscriber on
  server B receives the ``runs.trace.event``; from the send to the receipt. PostgreSQL: A and B
  are two servers (goal <= 50 ms median). SQLite cannot share live runs between servers, so its
  figure is A = B, one server.
* record throughput: 4 servers, one writer each (its own run, batches of 10 turns), all on one
  store: PostgreSQL, and for comparison 4 servers on one SQLite file on the local disk.

Prints a Markdown table and writes ``bench/results/pgstore.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(ROOT), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

from _util import Rpc, median, pct, save, table  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from tests.postgres import TempPostgres  # noqa: E402

AGENT = {"agent_id": "bench"}


class Server:
    """`python -m carnb serve --no-auth` with its data in ``home``."""

    def __init__(self, home: Path, *args: str) -> None:
        home.mkdir(parents=True, exist_ok=True)
        conn = home / f"conn-{time.monotonic_ns()}.json"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "carnb", "serve", "--no-auth", "--home", str(home)]
            + ["--connection-file", str(conn), *args],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        self.proc.stdout.readline()
        if not line.startswith("carnb serving on "):
            raise RuntimeError(f"serve did not start: {line!r}")
        self.url = line.removeprefix("carnb serving on ")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


def notification_delays(writer_url: str, watcher_url: str, n: int) -> list[float]:
    """Seconds from sending a one-turn append through one server to its trace event on the
    other, ``n`` times, one at a time."""
    rpc = Rpc(writer_url, AGENT)
    run_id = rpc("runs.start", {"intent": "delay"})["run_id"]
    received: dict[int, float] = {}
    ws = connect(watcher_url, compression=None, max_size=None).__enter__()
    ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "session.auth", "params": AGENT}))
    ws.recv(timeout=10)
    ws.send(
        json.dumps(
            {"jsonrpc": "2.0", "id": 2, "method": "runs.subscribe", "params": {"run_id": run_id}}
        )
    )
    while "id" not in json.loads(ws.recv(timeout=10)):
        pass
    done = threading.Event()

    def watch() -> None:
        while not done.is_set() or len(received) < n:
            try:
                msg = json.loads(ws.recv(timeout=10))
            except TimeoutError:
                return
            if msg.get("method") == "runs.trace.event":
                received[msg["params"]["cursor"]] = time.perf_counter()
                if len(received) >= n:
                    return

    t = threading.Thread(target=watch)
    t.start()
    sent: dict[int, float] = {}
    for i in range(n):
        t0 = time.perf_counter()
        r = rpc("runs.record_turns", {"run_id": run_id, "turns": [{"i": i}]})
        sent[r["base_index"]] = t0
        while r["base_index"] not in received and time.perf_counter() - t0 < 5:
            time.sleep(0.0005)
    done.set()
    t.join(15)
    ws.close()
    rpc.close()
    return [received[c] - sent[c] for c in sent if c in received]


def throughput(urls: list[str], seconds: float, batch: int = 10) -> float:
    """Records per second appended by one writer per server, together."""
    counts = [0] * len(urls)
    stop = time.perf_counter() + seconds

    def write(k: int) -> None:
        rpc = Rpc(urls[k], AGENT)
        run_id = rpc("runs.start", {"intent": f"throughput {k}"})["run_id"]
        turns = [{"prompt": "p" * 200, "output": "o" * 800, "j": j} for j in range(batch)]
        while time.perf_counter() < stop:
            counts[k] += rpc("runs.record_turns", {"run_id": run_id, "turns": turns})["count"]
        rpc.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=write, args=(k,)) for k in range(len(urls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n, seconds = (60, 2.0) if args.quick else (300, 5.0)
    rows: list[tuple[str, str, str, bool | None]] = []
    data: dict[str, Any] = {}
    with TempPostgres() as pg, tempfile.TemporaryDirectory(prefix="carnb-bench-") as tmp:
        url = pg.create_database("bench")
        store = ("--store", url)
        homes = [Path(tmp) / f"pg{k}" for k in range(4)]
        servers = [Server(h, *store) for h in homes]
        sqlite_home = Path(tmp) / "sqlite"
        sqlite_servers = [Server(sqlite_home) for _ in range(4)]
        try:
            d_pg = notification_delays(servers[0].url, servers[1].url, n)
            d_sq = notification_delays(sqlite_servers[0].url, sqlite_servers[0].url, n)
            data["delay_ms"] = {
                "postgresql_cross_server": [x * 1000 for x in d_pg],
                "sqlite_same_server": [x * 1000 for x in d_sq],
            }
            rows.append(
                (
                    "append -> notification, PostgreSQL, A -> subscriber on B (median / p95)",
                    f"{median(d_pg) * 1000:.1f} / {pct(d_pg, 95) * 1000:.1f} ms",
                    "<= 50 ms median",
                    median(d_pg) <= 0.05,
                )
            )
            rows.append(
                (
                    "append -> notification, SQLite, one server (median / p95)",
                    f"{median(d_sq) * 1000:.1f} / {pct(d_sq, 95) * 1000:.1f} ms",
                    "(reference)",
                    None,
                )
            )
            tp_pg = throughput([s.url for s in servers], seconds)
            tp_sq = throughput([s.url for s in sqlite_servers], seconds)
            data["throughput_records_per_s"] = {"postgresql_4": tp_pg, "sqlite_4": tp_sq}
            rows.append(
                (
                    "records/s, 4 servers on one PostgreSQL (10-turn batches)",
                    f"{tp_pg:,.0f}",
                    "",
                    None,
                )
            )
            rows.append(
                ("records/s, 4 servers on one SQLite file (local disk)", f"{tp_sq:,.0f}", "", None)
            )
        finally:
            for s in servers + sqlite_servers:
                s.close()
    save("pgstore", data)
    print(table(rows, "Team store: PostgreSQL beside SQLite (`bench/bench_pgstore.py`)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

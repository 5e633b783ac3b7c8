"""Kernel figures: what `%load_ext carnb` costs in a real ipykernel, and the round trip an
external client sees while a cell is blocked.

* load: wall time of `%load_ext carnb` measured inside fresh kernels (a new process each time,
  so imports are cold: the figure a user sees), median and max; plus `%reload_ext carnb` in one
  kernel (warm imports: unload + load), median.
* blocked: an external WebSocket client sends `state.get` every 20 ms while a cell runs
  `time.sleep(S)`, while a cell spins in a pure-Python loop (with Python's default thread
  switch interval, and with `CarMagics.switch_interval = 0.001`), and (baseline) while the
  kernel is idle; answered / sent, median and p99 round trip. The machine's load average is
  recorded: other processes competing for 2 cores show up as tail latency.

    .venv/bin/python bench/bench_kernel.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import ROOT, median, pct, save, table  # noqa: E402

LOAD_GOAL_MS = 300.0
P99_GOAL_MS = 20.0


class Kernel:
    def __init__(self, home: str) -> None:
        from jupyter_client.manager import KernelManager

        env = {
            **os.environ,
            "CARNB_HOME": home,
            "PYTHONPATH": str(ROOT),
            "CAR_NO_VERSION_WARNING": "1",
        }
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(env=env, cwd=str(ROOT))
        self.kc = self.km.blocking_client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def submit(self, code: str) -> str:
        return self.kc.execute(code)

    def wait(self, msg_id: str, timeout: float = 120) -> str:
        out = ""
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise TimeoutError("cell did not finish") from None
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                out += msg["content"]["text"]
            elif msg["msg_type"] == "error":
                raise RuntimeError("\n".join(msg["content"]["traceback"]))
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return out

    def run(self, code: str, timeout: float = 120) -> str:
        return self.wait(self.submit(code), timeout)

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=False)


TIMED_LOAD = (
    "import time as _t\n_t0 = _t.perf_counter()\n"
    "get_ipython().run_line_magic('load_ext', 'carnb')\n"
    "print('LOAD_MS', (_t.perf_counter() - _t0) * 1000)"
)
TIMED_RELOAD = (
    "_t0 = _t.perf_counter()\nget_ipython().run_line_magic('reload_ext', 'carnb')\n"
    "print('LOAD_MS', (_t.perf_counter() - _t0) * 1000)"
)


def load_ms(out: str) -> float:
    line = next(ln for ln in out.splitlines() if ln.startswith("LOAD_MS"))
    return float(line.split()[1])


def measure_load(kernels: int, reloads: int) -> dict[str, Any]:
    cold, warm = [], []
    for i in range(kernels):
        with tempfile.TemporaryDirectory(prefix="carnb-bench-") as home:
            k = Kernel(home)
            try:
                cold.append(load_ms(k.run(TIMED_LOAD)))
                if i == 0:
                    for _ in range(reloads):
                        warm.append(load_ms(k.run(TIMED_RELOAD)))
            finally:
                k.close()
    return {"cold_ms": cold, "reload_ms": warm}


def pinger(
    url: str, token: str, stop: threading.Event, every: float, out: list[float | None]
) -> None:
    req = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "state.get", "params": {"key": "k"}})
    with connect(url, open_timeout=10) as ws:
        ws.send(
            json.dumps(
                {"jsonrpc": "2.0", "id": 0, "method": "session.auth", "params": {"token": token}}
            )
        )
        ws.recv(timeout=10)
        while not stop.is_set():
            t0 = time.perf_counter()
            ws.send(req)
            try:
                ws.recv(timeout=2)
                out.append((time.perf_counter() - t0) * 1000)
            except TimeoutError:
                out.append(None)
                break  # replies would now be out of step; count the rest as unanswered
            time.sleep(every)


BUSY = "_e = time.time() + {s}\nwhile time.time() < _e:\n    pass"


def _connect_info(k: Kernel) -> dict[str, str]:
    out = k.run(
        "import json; print(json.dumps({'url': carnb.current().url, "
        "'token': carnb.current().token}))"
    )
    return dict(json.loads(out.strip().splitlines()[-1]))


def _ping_during(
    k: Kernel, info: dict[str, str], cell: str | None, seconds: float
) -> dict[str, Any]:
    stop, lat = threading.Event(), []  # type: ignore[var-annotated]
    msg = k.submit(cell) if cell else None
    time.sleep(0.3)
    t = threading.Thread(target=pinger, args=(info["url"], info["token"], stop, 0.02, lat))
    t.start()
    time.sleep(max(0.5, seconds - 0.8))
    stop.set()
    t.join(10)
    if msg:
        k.wait(msg)
    answered = [x for x in lat if x is not None]
    return {
        "sent": len(lat),
        "answered": len(answered),
        "median_ms": median(answered),
        "p99_ms": pct(answered, 99),
        "max_ms": max(answered) if answered else float("nan"),
    }


def measure_blocked(seconds: float) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="carnb-bench-") as home:
        k = Kernel(home)
        try:
            k.run("%load_ext carnb\nimport time, carnb")
            info = _connect_info(k)
            results["idle kernel"] = _ping_during(k, info, None, seconds)
            results["cell in time.sleep"] = _ping_during(k, info, f"time.sleep({seconds})", seconds)
            results["cell in a busy Python loop"] = _ping_during(
                k, info, BUSY.format(s=seconds), seconds
            )
            k.run("%config CarMagics.switch_interval = 0.001\n%reload_ext carnb")
            info = _connect_info(k)
            results["busy loop, CarMagics.switch_interval = 0.001"] = _ping_during(
                k, info, BUSY.format(s=seconds), seconds
            )
        finally:
            k.close()
    return results


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="fewer kernels, shorter cells (< 60 s)")
    args = ap.parse_args()
    kernels, reloads, seconds = (3, 5, 3.0) if args.quick else (7, 15, 10.0)
    load_avg_before = load_average()
    load = measure_load(kernels, reloads)
    blocked = measure_blocked(seconds)
    cold, warm = load["cold_ms"], load["reload_ms"]
    rows: list[tuple[str, str, str, bool | None]] = [
        (
            f"`%load_ext carnb`, fresh kernel (median of {len(cold)})",
            f"{median(cold):.0f} ms",
            f"<= {LOAD_GOAL_MS:.0f} ms",
            median(cold) <= LOAD_GOAL_MS,
        ),
        (f"`%load_ext carnb`, fresh kernel (max of {len(cold)})", f"{max(cold):.0f} ms", "", None),
        (f"`%reload_ext carnb`, warm (median of {len(warm)})", f"{median(warm):.0f} ms", "", None),
    ]
    for label, r in blocked.items():
        all_answered = r["answered"] == r["sent"] and r["sent"] > 0
        rows.append(
            (f"{label}: answered / sent", f"{r['answered']} / {r['sent']}", "all", all_answered)
        )
        rows.append(
            (
                f"{label}: round trip median / p99",
                f"{r['median_ms']:.2f} / {r['p99_ms']:.2f} ms",
                f"p99 <= {P99_GOAL_MS:.0f} ms",
                r["p99_ms"] <= P99_GOAL_MS,
            )
        )
    print(table(rows, "kernel: `%load_ext` and answers while a cell is blocked"))
    print()
    print(
        f"{'quick' if args.quick else 'full'} run; python {platform.python_version()}, "
        f"{os.cpu_count()} cpus, load average {load_avg_before} at start; state.get every "
        f"20 ms; cells of {seconds:.0f} s. The load time is measured inside fresh kernels "
        "(cold imports)."
    )
    save(
        "kernel",
        {
            "quick": args.quick,
            "load": load,
            "blocked": blocked,
            "cell_seconds": seconds,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_at_start": load_avg_before,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

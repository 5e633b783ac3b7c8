"""Benchmark the OpenTelemetry export: the work it adds where records are written (the server loop
or a store thread), and how long a 1,000-turn run takes to reach the endpoint; and the lifetime
cost read from the run store, with a bystander's round trips meanwhile.

Usage: ``.venv/bin/python bench/bench_otel.py [--quick]``

The endpoint is a local OTLP/HTTP receiver in a process of its own (stdlib ``http.server``
decoding each request with opentelemetry-proto and counting its spans), so the figures are
carnb's and the exporter's, not a viewer's. Ratios are against a baseline in the same run: the
meter without an exporter, and the same run with export off. Prints a Markdown table and
writes ``bench/results/otel.json``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest,
)

from bench._util import Rpc, median, pct, save, table  # noqa: E402
from carnb.app.metering import Meter  # noqa: E402
from carnb.config import Settings  # noqa: E402
from carnb.otel import open_export  # noqa: E402
from carnb.runtime import Runtime  # noqa: E402

PER_SPAN_GOAL_US = 50.0
RUN_GOAL_S = 2.0


def serve_receiver() -> None:
    """The receiver's process: POST /v1/traces counts the spans of each request, GET /count
    says how many arrived; prints its port, then serves until killed."""
    spans = 0
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            nonlocal spans
            body = self.rfile.read(int(self.headers["Content-Length"]))
            request = ExportTraceServiceRequest.FromString(body)
            with lock:
                spans += sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
            self._answer(b"")

        def do_GET(self) -> None:  # noqa: N802
            with lock:
                self._answer(str(spans).encode())

        def _answer(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


class Receiver:
    """An OTLP/HTTP traces endpoint on 127.0.0.1 that counts the spans it is sent, in its own
    process (as Phoenix or a collector is), so its work is not the exporter's."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--receiver"], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        port = int(self.proc.stdout.readline())
        self.base = f"http://127.0.0.1:{port}"
        self.url = f"{self.base}/v1/traces"

    @property
    def spans(self) -> int:
        with urllib.request.urlopen(f"{self.base}/count", timeout=10) as reply:
            return int(reply.read())

    def wait_for(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.spans < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def tool_record(i: int) -> dict[str, Any]:
    turn = {"action_id": f"a{i}", "tool": "search", "status": "succeeded", "duration_ms": 3}
    return {
        "run_id": "run-bench",
        "agent_id": "bench",
        "cursor": i,
        "status": "in_progress",
        "record": {
            "index": i,
            "record": "turn",
            "timestamp": "2026-01-01T00:00:00.000000Z",
            "turn": turn,
        },
    }


def per_event_us(meter: Meter, n: int) -> float:
    records = [tool_record(i) for i in range(n)]
    started = time.perf_counter()
    for r in records:
        meter.on_record(r)
    return (time.perf_counter() - started) / n * 1e6


def section_loop_cost(quick: bool, receiver: Receiver) -> tuple[list[Any], dict[str, Any]]:
    """What one record costs the thread that writes it, without and with the exporter."""
    n = 5_000 if quick else 20_000
    plain, exported = [], []
    for _ in range(5):
        plain.append(per_event_us(Meter(), n))
        meter = Meter()
        export = open_export(receiver.url)
        meter.add_sink(export)
        exported.append(per_event_us(meter, n))
        export.flush(30)
        export.close()
    base, with_export = median(plain), median(exported)
    added = max(0.0, with_export - base)
    rows = [
        ("meter, no exporter: per record", f"{base:.2f} us", "baseline", None),
        ("meter with exporter: per record", f"{with_export:.2f} us", "", None),
        (
            "export work where the record is written, per span",
            f"{added:.2f} us ({with_export / base:.2f}x the meter alone)",
            f"<= {PER_SPAN_GOAL_US:g} us",
            added <= PER_SPAN_GOAL_US,
        ),
    ]
    return rows, {"records": n, "meter_us": base, "with_export_us": with_export}


def one_run(rt: Runtime, turns: int) -> str:
    rid: str = rt.call("runs.start", {"intent": "bench", "agent_name": "bench"})["run_id"]
    for i in range(turns // 2):
        rt.call(
            "runs.record_model_turn",
            {
                "run_id": rid,
                "model_id": "bench-model",
                "assistant_text": "thinking",
                "token_usage": {"input_tokens": 800, "output_tokens": 160},
                "duration_ms": 5,
            },
        )
        rt.call(
            "runs.record_turns",
            {"run_id": rid, "turns": [{"action_id": f"a{i}", "tool": "search", "status": "ok"}]},
        )
    rt.call("runs.complete", {"run_id": rid, "outcome": {"status": "success"}})
    return rid


def section_run(quick: bool, receiver: Receiver) -> tuple[list[Any], dict[str, Any]]:
    """A 1,000-turn run from its start to its last span at the endpoint, beside the same run
    with export off; the two alternate, and each figure is the median of its rounds."""
    turns, rounds = 1_000, 3 if quick else 5
    off_s: list[float] = []
    on_s: list[float] = []
    exported_s: list[float] = []
    arrived = True
    with tempfile.TemporaryDirectory(prefix="carnb-bench-otel-") as tmp:
        for i in range(rounds):
            off = Runtime(Settings(home=Path(tmp) / f"off{i}", browser=False, memory=False))
            off.start()
            try:
                started = time.perf_counter()
                one_run(off, turns)
                off_s.append(time.perf_counter() - started)
            finally:
                off.close()
            on = Runtime(
                Settings(
                    home=Path(tmp) / f"on{i}",
                    browser=False,
                    memory=False,
                    otel_endpoint=receiver.url,
                )
            ).start()
            try:
                before = receiver.spans
                started = time.perf_counter()
                one_run(on, turns)
                on_s.append(time.perf_counter() - started)
                arrived = receiver.wait_for(before + turns + 1, 60) and arrived
                exported_s.append(time.perf_counter() - started)
            finally:
                on.close()
    baseline, recorded, exported = median(off_s), median(on_s), median(exported_s)
    rows = [
        (f"{turns}-turn run recorded, export off", f"{baseline:.2f} s", "baseline", None),
        (
            f"{turns}-turn run recorded, export on",
            f"{recorded:.2f} s ({recorded / baseline:.2f}x)",
            "",
            None,
        ),
        (
            f"{turns}-turn run: start to its last span at the endpoint",
            f"{exported:.2f} s (worst {max(exported_s):.2f} s)"
            + ("" if arrived else " (spans missing)"),
            f"<= {RUN_GOAL_S:g} s",
            arrived and exported <= RUN_GOAL_S,
        ),
    ]
    return rows, {"turns": turns, "off_s": off_s, "on_s": on_s, "exported_s": exported_s}


def section_lifetime_cost(quick: bool) -> tuple[list[Any], dict[str, Any]]:
    """``events.cost_by_agent`` sums every model turn of the store (in a worker thread, a chunk
    at a time): its time, and a bystander's round trips on the same server meanwhile."""
    turns = 5_000 if quick else 50_000
    with tempfile.TemporaryDirectory(prefix="carnb-bench-cost-") as tmp:
        rt = Runtime(Settings(home=Path(tmp), browser=False, memory=False)).start()
        try:
            rid = rt.call("runs.start", {"intent": "bench", "agent_name": "bench"})["run_id"]
            usage = {"input_tokens": 800, "output_tokens": 100}
            for i in range(turns):
                rt.call(
                    "runs.record_model_turn",
                    {"run_id": rid, "model_id": f"m{i % 3}", "token_usage": usage},
                )
            reader = Rpc(rt.url, {"host_token": rt.host_token})
            bystander = Rpc(rt.url, {"token": rt.token})
            gaps: list[float] = []
            done = threading.Event()

            def ping() -> None:
                while not done.is_set():
                    t0 = time.perf_counter()
                    bystander("state.get", {"key": "x"})
                    gaps.append((time.perf_counter() - t0) * 1000)
                    time.sleep(0.005)

            pinger = threading.Thread(target=ping)
            pinger.start()
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                rows = reader("events.cost_by_agent")
                times.append(time.perf_counter() - t0)
            done.set()
            pinger.join()
            reader.close()
            bystander.close()
            assert rows[0]["calls"] == turns, rows
        finally:
            rt.close()
    worst = max(gaps)
    rows_out = [
        (f"events.cost_by_agent over {turns:,} model turns", f"{median(times):.3f} s", "", None),
        (
            "a bystander's round trip meanwhile: p99 / max",
            f"{pct(gaps, 99):.1f} / {worst:.1f} ms",
            "max < 100 ms",
            worst < 100,
        ),
    ]
    return rows_out, {"turns": turns, "cost_s": times, "bystander_max_ms": worst}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--receiver", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.receiver:
        serve_receiver()
        return 0
    receiver = Receiver()
    try:
        loop_rows, loop_data = section_loop_cost(args.quick, receiver)
        run_rows, run_data = section_run(args.quick, receiver)
    finally:
        receiver.close()
    cost_rows, cost_data = section_lifetime_cost(args.quick)
    print(table(loop_rows + run_rows, "OpenTelemetry export (local OTLP/HTTP receiver)"))
    print()
    print(table(cost_rows, "Lifetime cost from the run store"))
    save("otel", {"loop": loop_data, "run": run_data, "cost": cost_data})
    return 0


if __name__ == "__main__":
    sys.exit(main())

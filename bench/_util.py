"""Shared bench helpers: statistics, Markdown tables, results files, spawning servers."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(rows: list[tuple[str, str, str, bool | None]], title: str) -> str:
    out = [f"### {title}", "", "| measure | value | goal | ok |", "| --- | --- | --- | --- |"]
    for measure, value, goal, ok in rows:
        mark = "" if ok is None else ("yes" if ok else "NO")
        out.append(f"| {measure} | {value} | {goal} | {mark} |")
    return "\n".join(out)


def save(area: str, data: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{area}.json").write_text(json.dumps(data, indent=2))


class Serve:
    """`python -m carnb serve` in a subprocess, with a throwaway home."""

    def __init__(self, *args: str) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="carnb-bench-")
        conn = Path(self.tmp.name) / "conn.json"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "carnb",
                "serve",
                "--home",
                self.tmp.name,
                "--connection-file",
                str(conn),
                *args,
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        self.proc.stdout.readline()
        self.url = line.removeprefix("carnb serving on ")
        self.info = json.loads(conn.read_text())

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)
        self.tmp.cleanup()


class Rpc:
    """A blocking JSON-RPC client on one WebSocket connection, authenticated with `auth`."""

    def __init__(self, url: str, auth: dict[str, Any]) -> None:
        self.ws = connect(url, compression=None, max_size=None).__enter__()
        self.i = 0
        self("session.auth", auth)

    def __call__(self, method: str, params: dict[str, Any] | None = None) -> Any:
        self.i += 1
        self.ws.send(
            json.dumps({"jsonrpc": "2.0", "id": self.i, "method": method, "params": params})
        )
        reply = json.loads(self.ws.recv(timeout=120))
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply["result"]

    def close(self) -> None:
        self.ws.close()

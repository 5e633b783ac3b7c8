"""StateBench state correctness: the dev split replayed into carnb over the wire and
into CAR's real Rust memgine (`car-runtime` 0.7.0, embedded, in its own venv) in the same run,
beside the floor (every still-valid fact, unranked). Two variants: each timeline in a fresh graph,
and each timeline buried under every other timeline's facts written earlier. Reports leak,
coverage and `build_context` latency side by side; the scoring is in `statebench_replay.py`.

    .venv/bin/python bench/bench_statebench.py [--quick] [--data PATH]

--quick: every 7th timeline (still buried under all the others). The data defaults to
$STATEBENCH_DEV, else ../shared/data/statebench/dev.jsonl beside the repository. The peer venv
(`bench/.peer-venv`) is made on first use; if `car-runtime==0.7.0` cannot be installed the
peer's rows say "unavailable". The peer gets a new runtime per query (see
`statebench_peer.py`); carnb gets one connection per graph.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import ROOT, Rpc, Serve, save  # noqa: E402
from statebench_replay import (  # noqa: E402
    VARIANTS,
    Answer,
    Fact,
    Tally,
    Timeline,
    Variant,
    floor_tally,
    load_timelines,
    quick_subset,
    replay,
    tally_answers,
)

log = logging.getLogger("carnb.bench.statebench")

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "statebench" / "dev.jsonl"
PEER_VENV = ROOT / "bench" / ".peer-venv"
PEER_PACKAGE = "car-runtime==0.7.0"
PEER_SCRIPT = ROOT / "bench" / "statebench_peer.py"
MIN_COVERAGE = 98.0
LEAK_SLACK = 2.0
BURIED_MAX_MEDIAN_CHARS = 2000


class CarnbGraph:
    """One graph of a running carnb: an unbound connection's own ephemeral graph."""

    def __init__(self, url: str, token: str) -> None:
        self.rpc = Rpc(url, {"token": token})

    def add(self, fact: Fact) -> None:
        params: dict[str, Any] = {
            "subject": fact.subject,
            "body": fact.body,
            "kind": "constraint" if fact.constraint else "pattern",
            "fact_id": fact.ref,
        }
        if fact.supersedes:
            params["supersedes"] = list(fact.supersedes)
        self.rpc("memory.add_fact", params)

    def prepare(self) -> None:
        pass

    def build_context(self, prompt: str) -> str:
        return str(self.rpc("memory.build_context", {"query": prompt}))

    def close(self) -> None:
        self.rpc.close()


def run_carnb(
    targets: Sequence[Timeline], everything: Sequence[Timeline], variant: Variant
) -> Tally:
    server = Serve()
    try:
        token = str(server.info["token"])
        answers = replay(targets, everything, variant, lambda: CarnbGraph(server.url, token))
        return tally_answers(targets, answers)
    finally:
        server.close()


def peer_python() -> Path | None:
    """The peer venv's python with car-runtime 0.7.0 importable; made on first use."""
    python = PEER_VENV / "bin" / "python"
    check = [str(python), "-c", "import importlib.metadata as m; print(m.version('car-runtime'))"]
    if python.exists():
        probe = subprocess.run(check, capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == "0.7.0":
            return python
    try:
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", PEER_PACKAGE],
            check=True,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        log.warning("peer venv unavailable: %s", getattr(exc, "stderr", None) or exc)
        return None
    probe = subprocess.run(check, capture_output=True, text=True)
    return python if probe.returncode == 0 else None


def run_peer(
    python: Path, data: Path, targets: Sequence[Timeline], variant: Variant, quick: bool
) -> Tally:
    ids = [t.id for t in targets] if quick else []
    proc = subprocess.run(
        [str(python), str(PEER_SCRIPT), str(data), variant, *ids],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "CAR_FFI_NO_DAEMON_WARNING": "1"},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"peer worker failed: {proc.stderr[-2000:]}")
    answers = [Answer(**json.loads(line)) for line in proc.stdout.splitlines() if line]
    if len(answers) != sum(len(t.queries) for t in targets):
        raise RuntimeError(f"peer worker answered {len(answers)} queries")
    return tally_answers(targets, answers)


def fmt(value: float, digits: int = 1) -> str:
    return "n/a" if value != value else f"{value:.{digits}f}"


def render(results: dict[str, Tally | None], floor: Tally, n_timelines: int, n_queries: int) -> str:
    """The side-by-side table plus the issue's goals for carnb."""
    out = [
        "### StateBench dev split (`bench/bench_statebench.py`)",
        "",
        f"{n_timelines} timelines, {n_queries} queries; leak = share of queries with "
        f"`must_not_mention` phrases ({floor.leak_queries}) where one appears; coverage = share "
        f"of answerable `must_mention` phrases ({floor.answerable}) that appear. carnb's latency "
        "includes the WebSocket round trip; car-runtime's is in process.",
        "",
        "| engine | graph | leak % | coverage % | context median chars | build_context median ms |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, tally in results.items():
        engine, variant = name.split(" ", 1)
        if tally is None:
            out.append(f"| {engine} | {variant} |" + " unavailable |" * 4)
            continue
        out.append(
            f"| {engine} | {variant} | {fmt(tally.leak_pct)} | {fmt(tally.coverage_pct)} | "
            f"{fmt(tally.median_chars, 0)} | {fmt(tally.median_ms, 2)} |"
        )
    out.append(
        f"| floor | every valid fact | {fmt(floor.leak_pct)} | {fmt(floor.coverage_pct)} | "
        f"{fmt(floor.median_chars, 0)} | |"
    )
    fresh, buried = results["carnb fresh"], results["carnb buried"]
    leak_goal = floor.leak_pct + LEAK_SLACK
    out += ["", "| goal (carnb) | ok |", "| --- | --- |"]
    for variant, tally in (("fresh", fresh), ("buried", buried)):
        if tally is None:
            continue
        out.append(
            f"| {variant}: coverage >= {MIN_COVERAGE:.0f}% | "
            f"{'yes' if tally.coverage_pct >= MIN_COVERAGE else 'NO'} |"
        )
        out.append(
            f"| {variant}: leak <= floor + {LEAK_SLACK:.0f} points ({fmt(leak_goal)}%) | "
            f"{'yes' if tally.leak_pct <= leak_goal else 'NO'} |"
        )
    if buried is not None:
        out.append(
            f"| buried: median context <= {BURIED_MAX_MEDIAN_CHARS:,} characters | "
            f"{'yes' if buried.median_chars <= BURIED_MAX_MEDIAN_CHARS else 'NO'} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="every 7th timeline")
    ap.add_argument(
        "--data", type=Path, default=Path(os.environ.get("STATEBENCH_DEV", DEFAULT_DATA))
    )
    args = ap.parse_args(argv)
    if not args.data.exists():
        return f"### StateBench dev split\n\nskipped: {args.data} not found (set STATEBENCH_DEV)"
    everything = load_timelines(args.data)
    targets = quick_subset(everything) if args.quick else everything
    results: dict[str, Tally | None] = {}
    seconds: dict[str, float] = {}
    for variant in VARIANTS:
        t0 = time.monotonic()
        results[f"carnb {variant}"] = run_carnb(targets, everything, variant)
        seconds[f"carnb {variant}"] = time.monotonic() - t0
    python = peer_python()
    for variant in VARIANTS:
        t0 = time.monotonic()
        name = f"car-runtime {variant}"
        results[name] = (
            None if python is None else run_peer(python, args.data, targets, variant, args.quick)
        )
        seconds[name] = time.monotonic() - t0
    floor = floor_tally(targets)
    save(
        "statebench" + ("_quick" if args.quick else ""),
        {
            "data": str(args.data),
            "timelines": len(targets),
            "floor": floor.as_dict(),
            **{
                name: None if t is None else {**t.as_dict(), "replay_s": seconds[name]}
                for name, t in results.items()
            },
        },
    )
    return render(results, floor, len(targets), sum(len(t.queries) for t in targets))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(main())

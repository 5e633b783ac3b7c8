"""StateBench replay into CAR's real Rust memgine: `car-runtime` 0.7.0 in embedded mode, used as a
black box (`CarRuntime().add_fact` / `build_context`). Runs inside the peer's own venv
(`bench/.peer-venv`, made by `bench_statebench.py`), never in carnb's.

    bench/.peer-venv/bin/python bench/statebench_peer.py DATA VARIANT [TIMELINE_ID ...]

Replays the named timelines (all without names) of the `dev.jsonl` at DATA, each into a new
`CarRuntime` (VARIANT fresh) or after every other timeline's facts (buried), and writes one JSON
line per query: `{"timeline", "query", "context", "ms"}`. The engine has no supersession, so it
gets every fact, superseded or not, as a user of it would write them.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import car_runtime  # the peer venv's 0.7.0, never carnb's
from statebench_replay import VARIANTS, Fact, load_timelines, replay


class RustGraph:
    """A graph of embedded CarRuntimes: each holds its own in-process memgine.

    One runtime's `build_context` leaves out facts an earlier call of the same runtime already
    returned (a second identical call gives ""; after one more fact, only that fact). Every
    query is scored on its own, so each gets a new runtime holding the facts written so far, and
    only its `build_context` call is timed.
    """

    def __init__(self) -> None:
        self.facts: list[Fact] = []
        self.rt: Any = None

    def add(self, fact: Fact) -> None:
        self.facts.append(fact)

    def prepare(self) -> None:
        self.rt = car_runtime.CarRuntime()
        for f in self.facts:
            self.rt.add_fact(f.subject, f.body, "constraint" if f.constraint else "pattern")

    def build_context(self, prompt: str) -> str:
        return str(self.rt.build_context(prompt))

    def close(self) -> None:
        self.facts.clear()
        self.rt = None


def main(argv: list[str]) -> int:
    data, variant, *ids = argv
    if variant not in VARIANTS:
        raise SystemExit(f"variant must be one of {VARIANTS}, not {variant!r}")
    os.environ.setdefault("CAR_FFI_NO_DAEMON_WARNING", "1")
    everything = load_timelines(Path(data))
    wanted = set(ids)
    targets = [t for t in everything if t.id in wanted] if wanted else everything
    for answer in replay(targets, everything, variant, RustGraph):
        line = {"timeline": answer.timeline, "query": answer.query}
        sys.stdout.write(json.dumps({**line, "context": answer.context, "ms": answer.ms}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

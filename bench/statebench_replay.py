"""StateBench at the memory layer: timelines as fact writes and queries, replay into an engine,
score the context strings it builds.

Standard library only: the Rust peer's worker imports this module from its own venv.

A timeline's facts are its `initial_state.persistent_facts`, then the `writes` of its
`state_write` / `supersession` events, in order. A write's `supersedes` names a StateBench key
(every earlier fact with that key) or a StateBench fact id; it becomes the harness ids of those
earlier facts. Each fact gets a harness id `<prefix>-<n>` that is unique within a run, so a buried
graph holding many timelines never confuses two facts.

Scoring one query's context (phrases match case-insensitively, whitespace collapsed):
- leak: some `must_not_mention` phrase appears (only queries with such phrases count);
- coverage: of the `must_mention` phrases that a fact still valid at the query holds
  ("answerable"), the share that appears. A phrase only a superseded fact holds is not
  answerable: an engine must never return that fact (11 such phrases in the dev split);
- the floor: the same for a context of every still-valid fact, unranked.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

Variant = Literal["fresh", "buried"]
VARIANTS: tuple[Variant, ...] = ("fresh", "buried")


@dataclass(frozen=True)
class Fact:
    ref: str  # harness fact id, unique within a run
    subject: str  # StateBench key
    body: str  # StateBench value
    constraint: bool
    supersedes: tuple[str, ...] = ()  # refs of earlier facts this one replaces

    def line(self) -> str:
        return f"{self.subject}: {self.body}"


@dataclass(frozen=True)
class Query:
    prompt: str
    must_mention: tuple[str, ...]
    must_not_mention: tuple[str, ...]
    facts_before: int  # how many of the timeline's facts were written before this query


@dataclass(frozen=True)
class Timeline:
    id: str
    facts: tuple[Fact, ...]
    queries: tuple[Query, ...]

    def steps(self) -> Iterator[Fact | Query]:
        """Facts and queries in timeline order."""
        written = 0
        for query in self.queries:
            while written < query.facts_before:
                yield self.facts[written]
                written += 1
            yield query
        yield from self.facts[written:]

    def valid_facts(self, facts_before: int) -> list[Fact]:
        """The facts written before a point that no fact written before it supersedes."""
        written = self.facts[:facts_before]
        gone = {ref for f in written for ref in f.supersedes}
        return [f for f in written if f.ref not in gone]


def _supersedes(raw: object) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list):
        return [str(x) for x in raw]
    raise ValueError(f"supersedes must be a string, a list or null, not {raw!r}")


def parse_timeline(row: dict[str, Any], prefix: str) -> Timeline:
    """One `dev.jsonl` row as a Timeline whose fact refs start with `prefix`."""
    facts: list[Fact] = []
    bench_ids: list[str] = []  # the StateBench id of each fact, by position
    queries: list[Query] = []

    def add(write: dict[str, Any]) -> None:
        refs: list[str] = []
        for target in _supersedes(write.get("supersedes")):
            by_key = [f.ref for f in facts if f.subject == target]
            by_id = [f.ref for f, i in zip(facts, bench_ids, strict=True) if i == target]
            refs.extend(by_key or by_id)
        facts.append(
            Fact(
                ref=f"{prefix}-{len(facts)}",
                subject=str(write["key"]),
                body=str(write["value"]),
                constraint=bool(write.get("is_constraint")),
                supersedes=tuple(dict.fromkeys(refs)),
            )
        )
        bench_ids.append(str(write.get("id", "")))

    for pf in row["initial_state"]["persistent_facts"]:
        add(pf)
    for event in row["events"]:
        if event["type"] in ("state_write", "supersession"):
            for write in event["writes"]:
                add(write)
        elif event["type"] == "query":
            truth = event["ground_truth"]
            queries.append(
                Query(
                    prompt=str(event["prompt"]),
                    must_mention=tuple(truth.get("must_mention") or ()),
                    must_not_mention=tuple(truth.get("must_not_mention") or ()),
                    facts_before=len(facts),
                )
            )
    return Timeline(id=str(row["id"]), facts=tuple(facts), queries=tuple(queries))


def load_timelines(path: Path) -> list[Timeline]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [parse_timeline(row, f"t{i}") for i, row in enumerate(rows)]


def quick_subset(timelines: Sequence[Timeline], every: int = 7) -> list[Timeline]:
    """A fixed spread-out subset: every `every`-th timeline."""
    return list(timelines[::every])


def buried_prelude(all_timelines: Sequence[Timeline], target: Timeline) -> list[Fact]:
    """Every fact of every other timeline, in dataset order: written before the target's."""
    return [f for t in all_timelines if t.id != target.id for f in t.facts]


# --- scoring ---------------------------------------------------------------------------------

_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    return _SPACE.sub(" ", text).strip().casefold()


def mentions(text: str, phrase: str) -> bool:
    return normalise(phrase) in normalise(text)


def floor_context(facts: Iterable[Fact]) -> str:
    """Every given fact, one line each, no ranking: what an engine that returns all the still-valid
    facts would show."""
    return "\n".join(f"- {f.line()}" for f in facts)


@dataclass(frozen=True)
class QueryScore:
    leak_applies: bool  # the query has must_not_mention phrases
    leaked: tuple[str, ...]  # must_not_mention phrases found
    answerable: tuple[str, ...]  # must_mention phrases some still-valid fact holds
    covered: tuple[str, ...]  # answerable phrases found


def score(context: str, query: Query, valid: Sequence[Fact]) -> QueryScore:
    """Score one context for one query; `valid` are the timeline's facts still valid at the
    query (`Timeline.valid_facts`)."""
    answerable = tuple(p for p in query.must_mention if any(mentions(f.line(), p) for f in valid))
    return QueryScore(
        leak_applies=bool(query.must_not_mention),
        leaked=tuple(p for p in query.must_not_mention if mentions(context, p)),
        answerable=answerable,
        covered=tuple(p for p in answerable if mentions(context, p)),
    )


@dataclass
class Tally:
    """Scores summed over queries."""

    leak_queries: int = 0
    leaking: int = 0
    answerable: int = 0
    covered: int = 0
    ms: list[float] = field(default_factory=list)
    chars: list[int] = field(default_factory=list)  # each context's length

    def add(self, s: QueryScore, ms: float | None = None, chars: int | None = None) -> None:
        if s.leak_applies:
            self.leak_queries += 1
            self.leaking += bool(s.leaked)
        self.answerable += len(s.answerable)
        self.covered += len(s.covered)
        if ms is not None:
            self.ms.append(ms)
        if chars is not None:
            self.chars.append(chars)

    @property
    def leak_pct(self) -> float:
        return 100 * self.leaking / self.leak_queries if self.leak_queries else float("nan")

    @property
    def coverage_pct(self) -> float:
        return 100 * self.covered / self.answerable if self.answerable else float("nan")

    @property
    def median_ms(self) -> float:
        return statistics.median(self.ms) if self.ms else float("nan")

    @property
    def median_chars(self) -> float:
        return statistics.median(self.chars) if self.chars else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {
            "leak_pct": self.leak_pct,
            "coverage_pct": self.coverage_pct,
            "build_context_median_ms": self.median_ms,
            "context_median_chars": self.median_chars,
            "leak_queries": self.leak_queries,
            "leaking": self.leaking,
            "answerable": self.answerable,
            "covered": self.covered,
            "queries_timed": len(self.ms),
        }


def floor_tally(timelines: Iterable[Timeline]) -> Tally:
    tally = Tally()
    for t in timelines:
        for q in t.queries:
            valid = t.valid_facts(q.facts_before)
            context = floor_context(valid)
            tally.add(score(context, q, valid), chars=len(context))
    return tally


# --- replay ----------------------------------------------------------------------------------


class Graph(Protocol):
    """One memory graph of an engine under test."""

    def add(self, fact: Fact) -> None: ...

    def prepare(self) -> None:
        """Untimed work before a query's `build_context`."""

    def build_context(self, prompt: str) -> str: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Answer:
    timeline: str
    query: int  # index into the timeline's queries
    context: str
    ms: float  # build_context wall time


def replay(
    timelines: Sequence[Timeline],
    all_timelines: Sequence[Timeline],
    variant: Variant,
    new_graph: Callable[[], Graph],
) -> Iterator[Answer]:
    """Each timeline into a graph of its own (fresh), or after the facts of every other timeline of
    `all_timelines` (buried); yield the context built for each query."""
    for t in timelines:
        graph = new_graph()
        try:
            if variant == "buried":
                for f in buried_prelude(all_timelines, t):
                    graph.add(f)
            qi = 0
            for step in t.steps():
                if isinstance(step, Fact):
                    graph.add(step)
                    continue
                graph.prepare()
                t0 = time.perf_counter()
                context = graph.build_context(step.prompt)
                ms = (time.perf_counter() - t0) * 1000
                yield Answer(t.id, qi, context, ms)
                qi += 1
        finally:
            graph.close()


def tally_answers(timelines: Sequence[Timeline], answers: Iterable[Answer]) -> Tally:
    by_id = {t.id: t for t in timelines}
    tally = Tally()
    for a in answers:
        t = by_id[a.timeline]
        q = t.queries[a.query]
        tally.add(score(a.context, q, t.valid_facts(q.facts_before)), a.ms, len(a.context))
    return tally

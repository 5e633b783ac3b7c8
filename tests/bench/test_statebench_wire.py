"""The StateBench harness against a real carnb server: its facts, ids and graphs reach the engine
as the figures assume (scores themselves are the engine's business, not asserted here)."""

from __future__ import annotations

from bench_statebench import CarnbGraph
from statebench_replay import parse_timeline, replay, tally_answers

from carnb.runtime import Runtime
from tests.bench.timelines import BUDGET, OTHER


class ProbedGraph(CarnbGraph):
    """Before closing, records which facts `memory.query` finds for `probe`."""

    probe = ""
    found: list[list[str]] = []

    def close(self) -> None:
        rows = self.rpc("memory.query", {"query": self.probe, "k": 5})
        ProbedGraph.found.append([r["fact_id"] for r in rows])
        super().close()


def test_fresh_graphs_hold_only_their_timeline_with_the_harness_ids(runtime: Runtime) -> None:
    ts = [parse_timeline(BUDGET, "t0"), parse_timeline(OTHER, "t1")]
    ProbedGraph.probe, ProbedGraph.found = "120,000", []
    answers = list(replay(ts, ts, "fresh", lambda: ProbedGraph(runtime.url, runtime.token)))
    assert [(a.timeline, a.query) for a in answers] == [
        ("budget", 0),
        ("budget", 1),
        ("budget", 2),
        ("other", 0),
    ]
    assert "[t0-0] budget: $200,000 available" in answers[0].context
    assert "$120,000" not in answers[0].context  # written after the first query
    # the correction (sent with `supersedes`) is in the first graph, the other fact in its own
    assert ProbedGraph.found[0][0] == "t0-2"
    assert ProbedGraph.found[1] == ["t1-0"]
    tally = tally_answers(ts, answers)
    assert tally.answerable == 4
    assert len(tally.ms) == 4


def test_buried_graph_holds_every_other_timeline_first(runtime: Runtime) -> None:
    ts = [parse_timeline(BUDGET, "t0"), parse_timeline(OTHER, "t1")]
    ProbedGraph.probe, ProbedGraph.found = "another team", []
    answers = list(replay(ts[:1], ts, "buried", lambda: ProbedGraph(runtime.url, runtime.token)))
    assert len(answers) == 3
    assert len(ProbedGraph.found) == 1  # one graph for the one target
    assert ProbedGraph.found[0][0] == "t1-0"  # the other timeline's fact, found by its own words

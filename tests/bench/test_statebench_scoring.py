"""StateBench replay and scoring on tiny synthetic timelines: what the issue-13 figures rest on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench_statebench import render
from statebench_replay import (
    Answer,
    Fact,
    QueryScore,
    Tally,
    Timeline,
    buried_prelude,
    floor_context,
    floor_tally,
    load_timelines,
    parse_timeline,
    quick_subset,
    replay,
    score,
    tally_answers,
)

from tests.bench.timelines import BUDGET, OTHER, fact, row, write


def test_facts_in_order_with_supersedes_resolved_to_harness_ids() -> None:
    t = parse_timeline(BUDGET, "t3")
    assert [(f.ref, f.subject) for f in t.facts] == [
        ("t3-0", "budget"),
        ("t3-1", "decision"),
        ("t3-2", "budget_corrected"),
        ("t3-3", "decision_corrected"),
    ]
    assert [f.supersedes for f in t.facts] == [(), (), ("t3-0",), ("t3-1",)]
    assert [q.facts_before for q in t.queries] == [2, 4, 4]


def test_supersedes_by_statebench_id_list_every_same_key_fact_and_unknown_target() -> None:
    t = parse_timeline(
        row(
            "ids",
            [fact("design", "cards", id_="F-D1"), fact("design", "tiles", id_="F-D2")],
            [
                write(fact("design_v2", "list", id_="F-D3", supersedes="F-D1")),
                write(fact("design", "grid", supersedes=["design", "nowhere"])),
                write(fact("rule_1", "never ship on Friday", supersedes="F-D3")),
            ],
        ),
        "x",
    )
    assert [f.supersedes for f in t.facts] == [(), (), ("x-0",), ("x-0", "x-1"), ("x-2",)]
    assert [f.constraint for f in t.facts] == [False, False, False, False, True]


def test_steps_put_each_query_after_exactly_the_facts_written_before_it() -> None:
    t = parse_timeline(BUDGET, "t")
    kinds = [s.ref if isinstance(s, Fact) else s.prompt for s in t.steps()]
    assert kinds == [
        "t-0",
        "t-1",
        "What is the budget?",
        "t-2",
        "t-3",
        "What is the budget now?",
        "Remaining?",
    ]


def test_valid_facts_at_a_point_ignore_later_supersessions() -> None:
    t = parse_timeline(BUDGET, "t")
    assert [f.ref for f in t.valid_facts(2)] == ["t-0", "t-1"]
    assert [f.ref for f in t.valid_facts(4)] == ["t-2", "t-3"]


def test_score_leak_and_coverage_case_and_space_insensitive() -> None:
    t = parse_timeline(BUDGET, "t")
    q = t.queries[2]
    valid = t.valid_facts(q.facts_before)
    clean = score("The budget is $120,000   TOTAL.", q, valid)
    assert clean == QueryScore(True, (), ("$120,000",), ("$120,000",))
    leaky = score("now $120,000; before: $50,000\nREMAINING", q, valid)
    assert leaky.leaked == ("$50,000 remaining",)
    assert leaky.covered == ("$120,000",)
    missing = score("no numbers here", q, valid)
    assert missing.answerable == ("$120,000",)
    assert missing.covered == ()


def test_a_phrase_only_a_superseded_or_no_fact_holds_is_not_answerable() -> None:
    t = parse_timeline(BUDGET, "t")
    q = t.queries[1]  # "$50,000 remaining" only in the superseded decision; "over budget" nowhere
    s = score("anything", q, t.valid_facts(q.facts_before))
    assert s.answerable == ("$120,000",)
    assert not s.leak_applies


def test_tally_counts_leaks_per_query_and_coverage_per_phrase() -> None:
    tally = Tally()
    tally.add(QueryScore(True, ("a", "b"), ("x", "y"), ("x",)), 2.0)
    tally.add(QueryScore(True, (), ("z",), ("z",)), 4.0)
    tally.add(QueryScore(False, (), ("w",), ()), 9.0)
    assert tally.leak_pct == pytest.approx(50.0)
    assert tally.coverage_pct == pytest.approx(50.0)
    assert tally.median_ms == 4.0


def test_floor_is_every_valid_fact_and_leaks_when_a_superseding_fact_quotes_the_old_value() -> None:
    t = parse_timeline(BUDGET, "t")
    assert floor_context(t.valid_facts(4)) == (
        "- budget_corrected: $120,000 total\n- decision_corrected: INVALID: was based on $200,000"
    )
    floor = floor_tally([t])
    # query 1 leaks nothing, query 3 leaks "$200,000" (quoted by decision_corrected)
    assert (floor.leak_queries, floor.leaking) == (2, 1)
    assert (floor.answerable, floor.covered) == (4, 4)


class ListGraph:
    """A test double engine: returns every still-valid fact it was given, one per line."""

    opened: list[ListGraph] = []

    def __init__(self) -> None:
        self.facts: list[Fact] = []
        self.prepared_at: list[int] = []  # facts held at each prepare()
        self.closed = False
        ListGraph.opened.append(self)

    def add(self, fact: Fact) -> None:
        self.facts.append(fact)

    def prepare(self) -> None:
        self.prepared_at.append(len(self.facts))

    def build_context(self, prompt: str) -> str:
        gone = {ref for f in self.facts for ref in f.supersedes}
        return floor_context(f for f in self.facts if f.ref not in gone)

    def close(self) -> None:
        self.closed = True


def test_fresh_replay_uses_one_new_graph_per_timeline_and_scores_like_the_floor() -> None:
    ts = [parse_timeline(BUDGET, "t0"), parse_timeline(OTHER, "t1")]
    ListGraph.opened = []
    answers = list(replay(ts, ts, "fresh", ListGraph))
    assert [(a.timeline, a.query) for a in answers] == [
        ("budget", 0),
        ("budget", 1),
        ("budget", 2),
        ("other", 0),
    ]
    assert [len(g.facts) for g in ListGraph.opened] == [4, 1]
    assert [g.prepared_at for g in ListGraph.opened] == [[2, 4, 4], [1]]
    assert all(g.closed for g in ListGraph.opened)
    assert "$120,000" not in answers[0].context  # written after the first query
    assert tally_answers(ts, answers).as_dict() | {"build_context_median_ms": 0} == (
        floor_tally(ts).as_dict() | {"build_context_median_ms": 0, "queries_timed": 4}
    )


def test_buried_replay_writes_every_other_timeline_first() -> None:
    ts = [parse_timeline(BUDGET, "t0"), parse_timeline(OTHER, "t1")]
    assert [f.ref for f in buried_prelude(ts, ts[0])] == ["t1-0"]
    ListGraph.opened = []
    answers = list(replay(ts[:1], ts, "buried", ListGraph))
    assert [f.ref for f in ListGraph.opened[0].facts] == ["t1-0", "t0-0", "t0-1", "t0-2", "t0-3"]
    # the other team's "$120,000" is in the graph before the first query: a leak there
    first = tally_answers(ts, answers[:1])
    assert first.leaking == 1


def test_load_timelines_prefixes_by_position_and_quick_subset_spreads(tmp_path: Path) -> None:
    path = tmp_path / "dev.jsonl"
    rows = [BUDGET, OTHER] * 8
    path.write_text("\n".join(json.dumps({**r, "id": f"{r['id']}{i}"}) for i, r in enumerate(rows)))
    ts = load_timelines(path)
    assert [t.facts[0].ref for t in ts[:3]] == ["t0-0", "t1-0", "t2-0"]
    assert [t.id for t in quick_subset(ts)] == ["budget0", "other7", "budget14"]
    assert isinstance(ts[0], Timeline)


def tally(leaking: int, covered: int, chars: int = 100) -> Tally:
    t = Tally(leak_queries=100, leaking=leaking, answerable=100, covered=covered)
    t.ms.append(1.0)
    t.chars.append(chars)
    return t


def test_goals_follow_the_issue_and_an_unavailable_peer_says_so() -> None:
    floor = tally(30, 100)
    results: dict[str, Tally | None] = {
        "carnb fresh": tally(32, 98),
        "carnb buried": tally(31, 99, chars=1900),
        "car-runtime fresh": None,
        "car-runtime buried": None,
    }
    text = render(results, floor, 3, 4)
    assert (
        "| car-runtime | buried | unavailable | unavailable | unavailable | unavailable |" in text
    )
    assert "| fresh: coverage >= 98% | yes |" in text
    assert "| fresh: leak <= floor + 2 points (32.0%) | yes |" in text
    assert "| buried: coverage >= 98% | yes |" in text
    assert "| buried: median context <= 2,000 characters | yes |" in text
    assert "| carnb | buried | 31.0 | 99.0 | 1900 | 1.00 |" in text
    results["carnb fresh"] = tally(33, 97)
    results["carnb buried"] = tally(40, 91, chars=31_000)
    text = render(results, floor, 3, 4)
    assert "| fresh: coverage >= 98% | NO |" in text
    assert "| fresh: leak <= floor + 2 points (32.0%) | NO |" in text
    assert "| buried: leak <= floor + 2 points (32.0%) | NO |" in text
    assert "| buried: median context <= 2,000 characters | NO |" in text


def test_the_tally_keeps_each_context_length() -> None:
    t = parse_timeline(BUDGET, "t")
    answers = [Answer(t.id, i, "x" * (10 * (i + 1)), 1.0) for i in range(len(t.queries))]
    tallied = tally_answers([t], answers)
    assert tallied.chars == [10, 20, 30] and tallied.median_chars == 20
    assert tallied.as_dict()["context_median_chars"] == 20

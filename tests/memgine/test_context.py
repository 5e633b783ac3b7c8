"""build_context and build_context_fast: sections, order, budgets, trimming."""

from __future__ import annotations

import math

import pytest

from carnb.errors import InvalidParams
from carnb.memgine import Memgine
from carnb.memgine.context import budget_tokens, estimate_tokens
from carnb.memgine.engine import CONTEXT_FACTS, RECENT_FACTS


def lines_of(text: str, header: str) -> list[str]:
    """The ``- [...]`` lines of one section."""
    if header not in text:
        return []
    section = text.split(header + "\n", 1)[1].split("\n\n", 1)[0]
    return section.splitlines()


def test_sections_in_order_with_fact_lines(graph: Memgine) -> None:
    graph.add_fact("db", "never drop the users table", "constraint")
    graph.add_fact("deploy", "deploys happen on tuesday")
    graph.add_fact("style", "prefer small pull requests", "constraint")
    text = graph.build_context("when do deploys happen")
    assert text == (
        "## Constraints\n"
        "- [ws-1] db: never drop the users table\n"
        "- [ws-3] style: prefer small pull requests\n"
        "\n"
        "## Facts\n"
        "- [ws-2] deploy: deploys happen on tuesday"
    )


def test_constraints_are_always_included_even_without_a_match(graph: Memgine) -> None:
    graph.add_fact("db", "never drop the users table", "constraint")
    graph.add_fact("deploy", "deploys happen on tuesday")
    everything = (
        "## Constraints\n- [ws-1] db: never drop the users table\n\n"
        "## Facts\n- [ws-2] deploy: deploys happen on tuesday"
    )
    # every valid fact fits the budget, so the unmatched one is shown too (after constraints)
    assert graph.build_context("xylophone") == everything
    assert graph.build_context("") == everything


def test_empty_sections_are_left_out(graph: Memgine) -> None:
    assert graph.build_context("anything") == ""
    graph.add_fact("deploy", "deploys happen on tuesday")
    assert graph.build_context("tuesday") == "## Facts\n- [ws-1] deploy: deploys happen on tuesday"
    assert graph.build_context_fast("tuesday").startswith("## Facts\n")


def test_facts_ascend_by_relevance_most_relevant_last(graph: Memgine) -> None:
    graph.add_fact("a", "kafka consumer lag alert")  # matches all three words
    graph.add_fact("b", "kafka topic retention")  # one word
    graph.add_fact("c", "consumer groups rebalance on kafka restarts")  # two words
    facts = lines_of(graph.build_context("kafka consumer lag"), "## Facts")
    assert [line[:8] for line in facts] == ["- [ws-2]", "- [ws-3]", "- [ws-1]"]


def test_budget_formula() -> None:
    assert budget_tokens(None) == 8000
    assert budget_tokens(10_000) == math.floor((10_000 - 4096) * 0.4)
    assert budget_tokens(5_000) == 2000
    assert budget_tokens(128_000) == math.floor((128_000 - 4096) * 0.4)


def test_least_relevant_facts_are_dropped_first(graph: Memgine) -> None:
    filler = " padding" * 300  # about 2,400 characters, 600 tokens per fact
    graph.add_fact("f1", "zeta" + filler)
    graph.add_fact("f2", "zeta eta" + filler)
    graph.add_fact("f3", "zeta eta theta" + filler)
    graph.add_fact("f4", "zeta eta theta iota" + filler)
    full = graph.build_context("zeta eta theta iota")
    assert len(lines_of(full, "## Facts")) == 4
    small = graph.build_context("zeta eta theta iota", model_context_window=1)  # 2000 tokens
    kept = lines_of(small, "## Facts")
    assert [line.split("]")[0] for line in kept] == ["- [ws-2", "- [ws-3", "- [ws-4"]
    assert math.ceil(len(small) / 4) <= 2000
    # the window sets the budget: a larger window keeps everything
    assert graph.build_context("zeta eta theta iota", model_context_window=32_000) == full


def test_the_most_relevant_fact_is_kept_even_over_budget(graph: Memgine) -> None:
    graph.add_fact("rule", "always include me " * 1000, "constraint")  # ~4,500 tokens
    graph.add_fact("big", "omega " * 2000)  # ~3,000 tokens
    graph.add_fact("small", "omega is small")
    text = graph.build_context("omega", model_context_window=4096)  # budget 2000
    assert "always include me" in text
    facts = lines_of(text, "## Facts")
    assert len(facts) == 1 and facts[0].startswith("- [ws-")
    assert text.endswith(graph.query("omega", 1)[0]["body"])


def test_fact_lines_stay_one_line(graph: Memgine) -> None:
    graph.add_fact("multi", "first line\nsecond line\r\nthird")
    text = graph.build_context("second")
    assert text == "## Facts\n- [ws-1] multi: first line second line third"
    assert graph.facts()[0]["body"] == "first line\nsecond line\r\nthird"  # stored as given


def test_constraint_changes_show_up_at_once(graph: Memgine) -> None:
    graph.add_fact("x", "rule one", "constraint")
    assert "rule one" in graph.build_context("q")
    graph.add_fact("y", "rule two", "constraint")
    assert "rule two" in graph.build_context("q")
    graph.delete("ws-1")
    assert "rule one" not in graph.build_context("q")


def test_fast_mode_lists_matching_facts_in_creation_order(graph: Memgine) -> None:
    graph.add_fact("a", "kafka consumer lag alert")
    graph.add_fact("b", "kafka topic retention")
    graph.add_fact("rule", "kafka must use tls", "constraint")
    graph.add_fact("c", "nothing relevant here")
    graph.add_fact("d", "consumer groups rebalance")
    text = graph.build_context_fast("kafka consumer lag")
    assert text == (
        "## Constraints\n"
        "- [ws-3] rule: kafka must use tls\n"
        "\n"
        "## Facts\n"
        "- [ws-1] a: kafka consumer lag alert\n"
        "- [ws-2] b: kafka topic retention\n"
        "- [ws-5] d: consumer groups rebalance"
    )


def test_fast_mode_drops_the_oldest_first(graph: Memgine) -> None:
    filler = " padding" * 300
    for i in range(5):
        graph.add_fact(f"s{i}", "omega" + filler)
    kept = lines_of(graph.build_context_fast("omega", model_context_window=1), "## Facts")
    assert [line.split("]")[0] for line in kept] == ["- [ws-3", "- [ws-4", "- [ws-5"]


@pytest.mark.parametrize("window", [0, -10, "big", 1.5, True])
def test_bad_window_names_the_field(graph: Memgine, window: object) -> None:
    with pytest.raises(InvalidParams, match="model_context_window"):
        graph.build_context("q", window)  # type: ignore[arg-type]
    with pytest.raises(InvalidParams, match="model_context_window"):
        graph.build_context_fast("q", window)  # type: ignore[arg-type]


def test_context_holds_the_recent_and_the_relevant_facts_only(graph: Memgine) -> None:
    graph.add_fact("rule", "never deploy on fridays", "constraint")
    graph.add_fact("kafka", "consumer lag alert fires at ten thousand", fact_id="hit")
    graph.add_fact("kafka", "kafka topic retention is seven days", fact_id="weak")
    for i in range(30):
        graph.add_fact(f"note{i}", f"unrelated memo number {i}")
    text = graph.build_context("kafka consumer lag alert")
    assert text.startswith("## Constraints\n- [ws-1] rule: never deploy on fridays\n\n## Facts\n")
    facts = lines_of(text, "## Facts")
    # everything fits the budget, yet only the recent window and the relevant fact are shown
    assert len(facts) == RECENT_FACTS + 1 and facts[-1].startswith("- [hit] kafka:")
    assert [f.split("]")[0] for f in facts[:-1]] == [
        f"- [ws-{n}" for n in range(32 - RECENT_FACTS, 32)
    ]  # the newest facts, oldest first
    assert "weak" not in text  # reached, but far below the best fact's relevance


def test_a_query_reaching_nothing_gets_the_recent_facts(graph: Memgine) -> None:
    for i in range(RECENT_FACTS + 5):
        graph.add_fact(f"note{i}", f"memo {i}")
    facts = lines_of(graph.build_context("xylophone"), "## Facts")
    assert [f.split("]")[0] for f in facts] == [f"- [ws-{n}" for n in range(6, RECENT_FACTS + 6)]


def test_the_budget_bounds_a_context_of_many_relevant_facts(graph: Memgine) -> None:
    graph.add_fact("rule", "never deploy on fridays", "constraint")
    graph.add_fact("kafka", "consumer lag alert fires at ten thousand", fact_id="hit")
    for i in range(400):
        graph.add_fact(f"note{i}", f"kafka lag memo number {i} with some padding words")
    text = graph.build_context("kafka lag", model_context_window=5000)  # budget 2000 tokens
    assert estimate_tokens(text) <= 2000
    assert text.startswith("## Constraints\n- [ws-1] rule: never deploy on fridays")
    facts = lines_of(text, "## Facts")
    assert facts[-1].startswith("- [ws-401] note399:")  # as relevant as any, and the newest
    assert 50 < len(facts) <= CONTEXT_FACTS + RECENT_FACTS
    assert estimate_tokens(graph.build_context("kafka lag")) < 8000 // 2  # bound, not target

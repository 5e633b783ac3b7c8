"""Utility-aware retrieval (memory.utility_get / utility_set): the blend's rules and what it does
to the order, on both stores."""

from __future__ import annotations

import pytest

from carnb.errors import InvalidParams
from carnb.memgine import Memgine
from tests.memgine.conftest import OpenGraph


def test_the_blend_is_read_modify_write_and_clamped(graph: Memgine) -> None:
    assert graph.utility_get() == {"utility_weight": 0.0, "utility_exploration": 1.0}
    assert graph.utility_set({"utility_weight": 0.25}) == {
        "utility_weight": 0.25, "utility_exploration": 1.0}  # fmt: skip
    assert graph.utility_set({"utility_exploration": 9}) == {
        "utility_weight": 0.25, "utility_exploration": 4.0}  # the other knob kept  # fmt: skip
    assert graph.utility_set({"utility_weight": -3, "utility_exploration": None}) == {
        "utility_weight": 0.0, "utility_exploration": 4.0}  # fmt: skip
    assert graph.utility_set({"utility_weight": float("nan")})["utility_weight"] == 0.0
    assert graph.utility_set({"utility_weight": float("inf")})["utility_weight"] == 0.0
    with pytest.raises(InvalidParams, match="utility_weight must be a number"):
        graph.utility_set({"utility_weight": "high"})
    with pytest.raises(InvalidParams, match="utility_exploration must be a number"):
        graph.utility_set({"utility_exploration": True})
    assert graph.utility_get() == {"utility_weight": 0.0, "utility_exploration": 4.0}


def test_the_blend_is_the_graphs_for_every_engine_on_it(open_graph: OpenGraph) -> None:
    one, two = open_graph(), open_graph()
    two.utility_get()  # caches the default
    one.utility_set({"utility_weight": 0.5, "utility_exploration": 2})
    assert two.utility_get() == {"utility_weight": 0.5, "utility_exploration": 2.0}
    one.close()
    assert open_graph().utility_get()["utility_weight"] == 0.5  # stored with the graph


def _two_equal_facts(graph: Memgine) -> None:
    graph.add_fact("proxy", "pip install fails behind the proxy", "procedural", fact_id="a")
    graph.add_fact("proxy", "pip install fails behind the proxy!", "procedural", fact_id="b")


def test_weight_zero_keeps_the_relevance_order_whatever_the_uses(graph: Memgine) -> None:
    _two_equal_facts(graph)
    before = [r["fact_id"] for r in graph.query("pip install fails", 5)]
    for _ in range(3):
        graph.intervene({"query": "pip install fails", "trigger": {"tool_error": True}})
    assert [r["fact_id"] for r in graph.query("pip install fails", 5)] == before


def test_with_weight_a_reminded_fact_gives_way_to_one_never_reminded(graph: Memgine) -> None:
    _two_equal_facts(graph)
    first = graph.query("pip install fails", 5)[0]["fact_id"]
    graph.utility_set({"utility_weight": 0.5, "utility_exploration": 1})
    assert graph.query("pip install fails", 5)[0]["fact_id"] == first  # no use yet: same order
    answer = graph.intervene({"query": "pip install fails", "trigger": {"tool_error": True}})
    assert answer["decision"] == "inject" and answer["selected"]["fact_id"] == first
    rows = graph.query("pip install fails", 5)
    assert rows[0]["fact_id"] != first  # the untried fact is explored next
    assert {r["fact_id"] for r in rows} == {"a", "b"}
    assert rows[0]["confidence"] <= rows[1]["confidence"] + 0.05  # relevance is still relevance
    assert f"[{first}]" not in graph.build_context("pip install fails").splitlines()[-1]
    graph.utility_set({"utility_weight": 0})
    assert graph.query("pip install fails", 5)[0]["fact_id"] == first


def test_evaluate_counts_no_use(graph: Memgine) -> None:
    _two_equal_facts(graph)
    graph.utility_set({"utility_weight": 1})
    order = [r["fact_id"] for r in graph.query("pip install fails", 5)]
    case = {"query": "pip install fails", "trigger": {"tool_error": True}}
    graph.evaluate([{"id": "c", "request": case, "relevant_fact_ids": ["a"]}])
    assert [r["fact_id"] for r in graph.query("pip install fails", 5)] == order

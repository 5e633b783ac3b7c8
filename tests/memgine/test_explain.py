"""memory.query {explain}: why each fact ranked, on both stores."""

from __future__ import annotations

import pytest

from carnb.memgine import Memgine
from carnb.memgine.ranking import RECENCY_WEIGHT


def test_explain_names_the_matched_words_and_their_weights(graph: Memgine) -> None:
    graph.add_fact("kafka", "consumer lag alert fires at ten thousand", fact_id="hit")
    for i in range(20):
        graph.add_fact(f"note{i}", f"the alert memo number {i}")
    row = graph.query("kafka consumer alert", 1, explain=True)[0]
    assert row["fact_id"] == "hit"
    why = row["explain"]
    words = {w["word"]: w for w in why["words"]}
    assert set(words) == {"kafka", "consumer", "alert"}
    assert {w["hit"] for w in words.values()} == {"exact"}
    # rarity: "alert" is in 21 facts, "consumer" in one
    assert words["consumer"]["weight"] > words["alert"]["weight"]
    assert why["keyword_score"] == pytest.approx(sum(w["share"] for w in words.values()), abs=1e-3)
    assert why["relevance"] == row["confidence"]
    assert why["in_context"] is True and why["constraint"] is False
    assert why["superseded_by"] is None and why["supersedes"] == []


def test_explain_shows_stem_synonym_recency_and_supersession(graph: Memgine) -> None:
    graph.add_fact("login", "tokens expire hourly", fact_id="old")
    graph.add_fact("login", "tokens expire daily", fact_id="new", supersedes=["old"])
    graph.add_fact("rule", "never log a password", "constraint", fact_id="rule")
    rows = {r["fact_id"]: r for r in graph.query("auth token password", 5, explain=True)}
    assert "old" not in rows  # superseded facts never rank
    new = rows["new"]["explain"]
    hits = {w["word"]: w["hit"] for w in new["words"]}
    assert hits == {"auth": "synonym", "token": "stem", "password": "synonym"}
    assert new["supersedes"] == ["old"]
    assert rows["rule"]["explain"]["constraint"] is True
    assert new["newer_facts"] == 1
    assert 0 < new["recency"] < RECENCY_WEIGHT


def test_a_fact_reached_only_by_spreading_has_activation_and_no_words(graph: Memgine) -> None:
    graph.add_fact("service", "payments runs on kafka", fact_id="a")
    graph.add_fact("service", "payments owner is the billing team", fact_id="b")
    rows = {r["fact_id"]: r["explain"] for r in graph.query("kafka", 5, explain=True)}
    assert rows["b"]["words"] == [] and rows["b"]["keyword_score"] == 0
    assert rows["b"]["activation"] > 0 and rows["b"]["relevance"] == rows["b"]["activation"]


def test_without_explain_rows_are_unchanged(graph: Memgine) -> None:
    graph.add_fact("deploy", "deploys happen on tuesday")
    assert "explain" not in graph.query("deploy", 1)[0]
    plain = graph.query("deploy", 1)[0]
    explained = graph.query("deploy", 1, explain=True)[0]
    del explained["explain"]
    assert explained == plain

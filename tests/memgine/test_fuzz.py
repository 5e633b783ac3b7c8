"""Property tests: arbitrary text never breaks the engine, and a fact is found by its own words."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carnb.errors import InvalidParams
from carnb.memgine import Memgine
from carnb.memgine.text import unique_tokens

TEXT = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=80).filter(
    lambda s: s.strip() != ""
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subject=TEXT, body=st.text(max_size=200), probe=st.text(max_size=60))
def test_any_text_is_stored_and_found_by_its_own_words(subject: str, body: str, probe: str) -> None:
    g = Memgine()
    try:
        assert g.add_fact(subject, body) == 1
        row = g.facts()[0]
        assert (row["subject"], row["body"]) == (subject, body)
        if unique_tokens(subject + " " + body):
            assert [r["fact_id"] for r in g.query(subject + " " + body)] == ["ws-1"]
        g.query(probe)  # any query: a list, never an error
        g.build_context(probe)
        g.build_context_fast(probe)
        assert g.delete("ws-1")["deleted"] is True
        g.check()
    finally:
        g.close()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(TEXT, st.text(max_size=60)), min_size=1, max_size=40), st.text())
def test_many_facts_and_any_query_keep_the_graph_sound(facts: list, query: str) -> None:
    g = Memgine()
    try:
        for subject, body in facts:
            g.add_fact(subject, body)
        rows = g.query(query, k=10)
        assert len(rows) <= 10
        assert all(0.0 < r["confidence"] <= 1.0 for r in rows)
        assert g.consolidate()["fact_count"] == g.fact_count()
        g.check()
    finally:
        g.close()


def test_lone_surrogates_are_invalid_params_not_crashes() -> None:
    g = Memgine()
    g.add_fact("s", "with surrogate")
    for call in (
        lambda: g.add_fact("ok", "bad \ud800 body"),
        lambda: g.add_fact("ok", "b", tags=["\udfff"]),
        lambda: g.query("query with \ud800 surrogate"),
        lambda: g.build_context("\udfff"),
        lambda: g.build_context_fast("x \udfff"),
    ):
        try:
            call()
        except InvalidParams:
            pass
        else:
            raise AssertionError("expected InvalidParams")
    assert g.fact_count() == 1
    g.close()


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=50))
def test_any_query_string_gives_rows_or_invalid_params(query: str) -> None:
    g = Memgine()
    try:
        g.add_fact("alpha", "beta gamma delta")
        try:
            rows = g.query(query)
        except InvalidParams as exc:
            assert "query is not valid Unicode" in exc.message
        else:
            assert isinstance(rows, list)
    finally:
        g.close()

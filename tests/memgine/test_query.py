"""Retrieval: ranking on a known corpus, hit kinds, synonyms, spreading activation, limits."""

from __future__ import annotations

import pytest

from carnb.errors import InvalidParams
from carnb.memgine import Memgine

CORPUS = [
    ("db", "postgres connection pool size is 20 per service"),
    ("deploy", "deploys happen on tuesday after the standup"),
    ("auth", "the session cookie is httponly and secure"),
    ("billing", "invoices are generated monthly on the first business day"),
    ("style", "use black and ruff for python formatting"),
    ("worker", "the queue worker panics when redis is unreachable"),
    ("frontend", "the react bundle must stay under 300 kilobytes"),
    ("oncall", "pages go to the primary first then the secondary after ten minutes"),
    ("search", "elasticsearch reindexing runs nightly at two"),
    ("email", "transactional email goes through postmark with retries"),
]


@pytest.fixture
def corpus(graph: Memgine) -> Memgine:
    for subject, body in CORPUS:
        graph.add_fact(subject, body)
    return graph


def top(g: Memgine, query: str, k: int = 5) -> list[str]:
    return [row["subject"] for row in g.query(query, k)]


@pytest.mark.parametrize(
    ("query", "subject"),
    [
        ("postgres pool size", "db"),
        ("when do deploys happen", "deploy"),
        ("monthly invoices", "billing"),
        ("python formatting tool", "style"),
        ("redis unreachable", "worker"),
        ("bundle size limit", "frontend"),
        ("who gets paged first", "oncall"),
        ("reindexing schedule", "search"),
        ("email retries", "email"),
        ("session cookie", "auth"),
    ],
)
def test_the_right_fact_ranks_first(corpus: Memgine, query: str, subject: str) -> None:
    assert top(corpus, query)[0] == subject


def test_result_rows_have_the_wire_shape(corpus: Memgine) -> None:
    (row,) = corpus.query("postgres", 1)
    assert set(row) == {
        "fact_id",
        "subject",
        "body",
        "kind",
        "confidence",
        "tags",
        "source",
        "provenance",
    }
    assert row["fact_id"] == "ws-1" and row["kind"] == "pattern" and row["tags"] == []
    assert 0.0 < row["confidence"] <= 1.0


def test_hit_kinds_rank_exact_then_stem_then_synonym_then_substring(graph: Memgine) -> None:
    graph.add_fact("s1", "detokenizer configured")  # substring of "token"
    graph.add_fact("s2", "password configured")  # synonym of "token"
    graph.add_fact("s3", "tokens configured")  # stem
    graph.add_fact("s4", "token configured")  # exact
    rows = graph.query("token", k=10)
    assert [r["subject"] for r in rows] == ["s4", "s3", "s2", "s1"]
    scores = [r["confidence"] for r in rows]
    assert scores == pytest.approx([1.0, 2 / 3, 0.5, 1 / 3], abs=1e-6)


def test_synonyms_find_related_words(graph: Memgine) -> None:
    graph.add_fact("security", "the auth token rotates daily")
    graph.add_fact("storage", "nightly backups of the postgres cluster")
    graph.add_fact("misc", "lunch is at noon")
    assert top(graph, "login") == ["security"]
    assert top(graph, "database") == ["storage"]
    assert graph.query("login")[0]["confidence"] == pytest.approx(0.5)


def test_rare_words_weigh_more_than_common_ones(graph: Memgine) -> None:
    for i in range(20):
        graph.add_fact(f"note{i}", f"the service restarted {i}")
    graph.add_fact("target", "the kubelet restarted")
    graph.add_fact("decoy", "the service the service")
    assert top(graph, "the kubelet", 1) == ["target"]


def test_spreading_activation_brings_the_same_subject_neighbour(graph: Memgine) -> None:
    graph.add_fact("billing", "invoices are generated monthly")
    graph.add_fact("noise", "unrelated words entirely")
    graph.add_fact("billing", "stripe webhooks retry three times")
    rows = graph.query("invoices")
    assert [r["fact_id"] for r in rows] == ["ws-1", "ws-3"]
    assert 0.0 < rows[1]["confidence"] < rows[0]["confidence"]


def test_ties_go_to_the_newer_fact(graph: Memgine) -> None:
    graph.add_fact("a", "alpha beta")
    graph.add_fact("b", "alpha beta")
    graph.add_fact("c", "alpha beta")
    rows = graph.query("alpha beta")
    assert [r["subject"] for r in rows] == ["c", "b", "a"]
    assert len({r["confidence"] for r in rows}) == 1


def test_k_limits_results(corpus: Memgine) -> None:
    assert len(corpus.query("the", k=2)) == 2
    assert corpus.query("postgres", k=0) == []
    assert corpus.query("postgres", k=-3) == []
    assert len(corpus.query("the", k=100)) <= len(CORPUS)


def test_no_match_gives_empty(corpus: Memgine) -> None:
    assert corpus.query("xylophone quartz") == []
    assert corpus.query("") == []
    assert corpus.query("   ,,, ::") == []


def test_empty_graph_gives_empty(graph: Memgine) -> None:
    assert graph.query("anything") == []


def test_query_tokenizer_splits_on_separators(graph: Memgine) -> None:
    graph.add_fact("cfg", "set max_retries in app.config/yaml")
    assert top(graph, "retries")[0] == "cfg"
    assert top(graph, "YAML")[0] == "cfg"
    assert top(graph, "app:config")[0] == "cfg"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"query": None}, "query"), ({"query": 3}, "query"), ({"query": "x", "k": "5"}, "k"),
     ({"query": "x", "k": 2.5}, "k"), ({"query": "x", "k": [5]}, "k")],
)  # fmt: skip
def test_bad_query_params_name_the_field(graph: Memgine, kwargs: dict, field: str) -> None:
    with pytest.raises(InvalidParams) as err:
        graph.query(**kwargs)
    assert err.value.message.startswith(f"invalid params: {field} ")


def test_missing_fields_say_they_are_required(graph: Memgine) -> None:
    with pytest.raises(InvalidParams, match="^invalid params: query is required$"):
        graph.query(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidParams, match="^invalid params: subject is required$"):
        graph.add_fact(None, "b")  # type: ignore[arg-type]
    graph.add_fact("s", "kappa")
    assert len(graph.query("kappa", None)) == 1  # type: ignore[arg-type]  # default k


@pytest.mark.parametrize(
    ("stored", "query"),
    [("the token expires soon", "expired"), ("caches are warm", "cache"),
     ("running migrations", "runs"), ("two databases", "database"), ("configured", "configure")],
)  # fmt: skip
def test_stems_match_other_forms(graph: Memgine, stored: str, query: str) -> None:
    graph.add_fact("s", stored)
    graph.add_fact("t", "unrelated text")
    rows = graph.query(query)
    assert [r["subject"] for r in rows] == ["s"]
    assert rows[0]["confidence"] == pytest.approx(2 / 3)


def test_partial_words_match_as_substrings(graph: Memgine) -> None:
    graph.add_fact("k8s", "kubernetes upgrades happen quarterly")
    graph.add_fact("other", "nothing here")
    rows = graph.query("kube")
    assert [r["subject"] for r in rows] == ["k8s"]
    assert rows[0]["confidence"] == pytest.approx(1 / 3)


def test_queries_stay_right_after_writes_from_another_connection(open_graph) -> None:
    a, b = open_graph("shared"), open_graph("shared")
    a.add_fact("x", "zebracorn one")
    assert top(b, "zebracorn") == ["x"]
    for i in range(30):
        a.add_fact(f"y{i}", "zebracorn many")
    b.add_fact("z", "quokka zebracorn")
    assert top(b, "quokka zebracorn", 1) == ["z"]
    assert len(b.query("zebracorn", k=50)) == 32


def test_facts_are_found_before_and_after_their_batch_is_indexed(graph: Memgine) -> None:
    graph.add_fact("first", "quasar observations")
    assert top(graph, "quasar") == ["first"]  # not in the full-text index yet
    for i in range(100):  # several index batches later
        graph.add_fact(f"filler{i}", f"filler text {i}")
        assert top(graph, "quasar", 1) == ["first"], i
    graph.add_fact("second", "quasar again")
    assert top(graph, "quasar") == ["second", "first"]
    graph.check()


def test_deleting_unindexed_and_indexed_facts_keeps_the_index_sound(graph: Memgine) -> None:
    for i in range(70):
        graph.add_fact(f"s{i % 3}", f"pulsar number {i}")
    graph.delete("ws-2")  # indexed in the first batch
    graph.delete("ws-70")  # still pending
    for i in range(40):
        graph.add_fact("late", f"pulsar late {i}")
    graph.check()
    found = {r["fact_id"] for r in graph.query("pulsar", k=200)}
    assert len(found) == 108 and "ws-2" not in found and "ws-70" not in found
    assert graph.build_context_fast("pulsar").count("\n- [") == 64


SMALL_TEAM = [
    ("deploy_target", "Cloudflare Workers"),
    ("git", "never force-push to main"),
    ("style", "we write type hints everywhere"),
    ("oncall", "pages go to whoever is on call"),
    ("db", "postgres 16 on neon"),
]


@pytest.mark.parametrize("filler", [0, 40, 400])
def test_function_words_never_outweigh_content_words(graph: Memgine, filler: int) -> None:
    """'to' and 'we' must not weigh as much as 'deploy', in a tiny graph or a big one
    full of function words."""
    for i in range(filler):
        graph.add_fact(f"note{i}", f"we need to do item {i} and then we go to the next")
    for subject, body in SMALL_TEAM:
        graph.add_fact(subject, body)
    rows = graph.query("what runtime do we deploy to?")
    assert rows[0]["subject"] == "deploy_target"
    last = graph.build_context("what runtime do we deploy to?").splitlines()[-1]
    assert last.endswith("deploy_target: Cloudflare Workers")


def test_a_query_of_function_words_only_still_finds_them(graph: Memgine) -> None:
    graph.add_fact("a", "what we do")
    graph.add_fact("b", "kafka")
    assert top(graph, "what do we do") == ["a"]


def test_recency_prefers_the_newer_of_equally_relevant_facts(graph: Memgine) -> None:
    graph.add_fact("kafka", "retention is seven days", fact_id="old")
    for i in range(200):
        graph.add_fact(f"other{i}", f"unrelated note {i}")
    graph.add_fact("kafka", "retention is three days", fact_id="new")
    rows = graph.query("kafka retention", k=2)
    assert [r["fact_id"] for r in rows] == ["new", "old"]


def test_recency_does_not_beat_clearly_better_relevance(graph: Memgine) -> None:
    graph.add_fact("alert", "kafka consumer lag alert", fact_id="old")
    graph.add_fact("topic", "kafka topic", fact_id="new")
    assert [r["fact_id"] for r in graph.query("kafka consumer lag", k=2)] == ["old", "new"]

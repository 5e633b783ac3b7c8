"""Supersession over a real server: memory.add_fact {supersedes}, memory.history,
errors that change nothing, the schema, persist/load and a restart."""

from __future__ import annotations

from typing import Any

from tests.conftest import Client


def add(c: Client, subject: str, body: str, **kw: Any) -> int:
    return int(c.call("memory.add_fact", {"subject": subject, "body": body, **kw}))


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [row["fact_id"] for row in rows]


def test_supersedes_by_id_and_subject_and_history(runtime, connect_client) -> None:
    c = connect_client()
    add(c, "deploy_target", "Heroku dynos", fact_id="d1")
    add(c, "git", "never force-push to main", fact_id="g1")
    assert add(c, "deploy_target", "Fly machines", fact_id="d2", supersedes=["d1"]) == 2
    assert (
        add(c, "deploy_target", "Cloudflare Workers", fact_id="d3", supersedes=["deploy_target"])
        == 2
    )
    assert c.call("memory.fact_count") == 2
    rows = c.call("memory.query", {"query": "what runtime do we deploy to?", "k": 10})
    assert ids(rows)[0] == "d3" and not {"d1", "d2"} & set(ids(rows))
    for method in ("memory.build_context", "memory.build_context_fast"):
        text = c.call(method, {"query": "heroku fly deploy target"})
        assert "Cloudflare Workers" in text and "Heroku" not in text and "Fly" not in text
    chain = c.call("memory.history", {"subject": "deploy_target"})
    assert [(r["fact_id"], r["superseded_by"]) for r in chain] == [
        ("d3", None),
        ("d2", "d3"),
        ("d1", "d2"),
    ]
    assert ids(c.call("memory.history", {"fact_id": "d1"})) == ["d3", "d2", "d1"]
    assert c.call("memory.history", {"subject": "nothing here"}) == []


def test_bad_supersession_is_a_clear_error_and_writes_nothing(runtime, connect_client) -> None:
    c = connect_client()
    add(c, "a", "first", fact_id="a1")
    cases = [
        ({"supersedes": ["a1", "missing"]}, "'missing'"),
        ({"supersedes": "a1"}, "supersedes must be an array of strings"),
        ({"supersedes": [1]}, "supersedes must be an array of strings"),
        ({"supersedes": [""]}, "supersedes[0]"),
    ]
    for extra, words in cases:
        err = c.request(
            "memory.add_fact", {"subject": "b", "body": "second", "fact_id": "b1", **extra}
        )["error"]
        assert err["code"] == -32602 and words in err["message"], err
    assert c.call("memory.fact_count") == 1
    assert c.call("memory.history", {"fact_id": "b1"}) == []
    assert ids(c.call("memory.query", {"query": "first"})) == ["a1"]
    for params in ({}, {"subject": "a", "fact_id": "a1"}, {"subject": 3}):
        err = c.request("memory.history", params)["error"]
        assert err["code"] == -32602, err


def test_unknown_fields_stay_ignored(runtime, connect_client) -> None:
    c = connect_client()
    add(c, "a", "first", fact_id="a1")
    params = {"supersedes": ["a1"], "content_type": "text", "scope": "global", "x": {"y": 1}}
    assert add(c, "a", "second", **params) == 1
    assert c.call("memory.query", {"query": "first second", "future": True})[0]["body"] == "second"


def test_schema_documents_supersedes_and_history(runtime, connect_client) -> None:
    schema = connect_client().call("server.schema")
    methods = {m["method"]: m for m in schema["methods"]}
    assert "supersedes" in methods["memory.add_fact"]["params"]
    assert set(methods["memory.history"]["params"]) == {"subject", "fact_id"}
    assert "superseded_by" in methods["memory.history"]["result"]


def test_the_chain_survives_persist_load_and_a_restart(serve_process, home) -> None:
    p = serve_process("--agent", "alice")
    c = Client(p.url)
    c.call("session.auth", {"token": p.info["agents"]["alice"], "agent_id": "alice"})
    add(c, "rule", "no deploys on friday", kind="constraint", fact_id="r1")
    add(c, "rule", "deploys on friday need two reviews", kind="constraint", supersedes=["r1"])
    add(c, "db", "postgres 13", fact_id="v1")
    add(c, "db", "postgres 15", fact_id="v2", supersedes=["db"])
    add(c, "db", "postgres 16", fact_id="v3", supersedes=["db"])
    chain = c.call("memory.history", {"subject": "db"})
    assert c.call("memory.persist", {"path": "snap.json"}) == 5
    c.close()
    assert p.stop() == 0

    p2 = serve_process("--agent", "alice")
    c2 = Client(p2.url)
    c2.call("session.auth", {"token": p2.info["agents"]["alice"], "agent_id": "alice"})
    assert c2.call("memory.history", {"subject": "db"}) == chain
    assert c2.call("memory.fact_count") == 2
    add(c2, "noise", "something else entirely")
    assert c2.call("memory.load", {"path": "snap.json"}) == 5
    assert c2.call("memory.history", {"subject": "db"}) == chain
    assert ids(c2.call("memory.query", {"query": "postgres", "k": 10})) == ["v3"]
    text = c2.call("memory.build_context", {"query": "friday deploys"})
    assert "two reviews" in text and "no deploys on friday" not in text
    c2.close()

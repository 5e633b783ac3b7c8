"""The reference's proactive memory methods over a real server: save_knowledge,
save_procedural, update_status, intervene, evaluate, and the status slot of memory.delete."""

from __future__ import annotations

from tests.conftest import agent_auth


def test_saved_entries_are_facts_of_their_kind_with_stable_ids(runtime, connect_client) -> None:
    c = connect_client()
    saved = c.call("memory.save_procedural", {
        "id": "proxy-fix", "subject": "build", "body": "set PIP_INDEX_URL behind the proxy",
        "confidence": "high", "tags": ["pip"],
    })  # fmt: skip
    assert saved == {"id": "proxy-fix", "kind": "procedural", "fact_count": 1}
    knowledge = {"subject": "deploy", "body": "needs a ticket", "tenant_id": "acme",
                 "is_constraint": True}  # fmt: skip
    minted = c.call("memory.save_knowledge", knowledge)
    assert minted["kind"] == "knowledge" and minted["id"].startswith("knowledge-")
    rows = {r["fact_id"]: r for r in c.call("memory.query", {"query": "pip proxy deploy ticket"})}
    assert rows["proxy-fix"]["kind"] == "procedural" and rows["proxy-fix"]["tags"] == [
        "procedural", "pip"]  # fmt: skip
    assert rows[minted["id"]]["kind"] == "constraint"
    assert rows[minted["id"]]["tags"] == ["knowledge", "tenant:acme"]
    assert "needs a ticket" in c.call("memory.build_context", {"query": "x"}).split("## Facts")[0]
    err = c.request("memory.save_knowledge", {"subject": "a", "body": "b",
                                              "confidence": "sure"})["error"]  # fmt: skip
    assert err["code"] == -32602 and "confidence" in err["message"]
    assert c.call("memory.fact_count") == 2  # the bad call wrote nothing


def test_status_is_private_to_the_session_and_never_retrieved(runtime, connect_client) -> None:
    c = connect_client()
    assert c.call("memory.update_status", {"body": "step 3 of 5: tests failing"}) == {
        "id": "proactive-status:global", "body": "step 3 of 5: tests failing"}  # fmt: skip
    assert c.call("memory.update_status", {"body": "risky", "tenant_id": "t1"}) == {
        "id": "proactive-status:t1", "body": "risky", "tenant_id": "t1"}  # fmt: skip
    assert c.call("memory.query", {"query": "tests failing step"}) == []
    assert "failing" not in c.call("memory.build_context", {"query": "tests failing"})
    assert c.call("memory.fact_count") == 0
    gone = c.call("memory.delete", {"id": "proactive-status:global"})
    assert gone["deleted"] is True and gone["kind"] == "status"
    assert c.call("memory.delete", {"id": "proactive-status:global"})["deleted"] is False


def test_intervene_and_evaluate_on_an_agent_graph(runtime, connect_client) -> None:
    alice = connect_client(auth=agent_auth(runtime, "alice"))
    entry = {"id": "proxy-fix", "subject": "build", "body": "pip install fails behind the proxy"}
    alice.call("memory.save_procedural", entry)
    request = {"query": "pip install fails", "trigger": {"tool_error": True}}
    answer = alice.call("memory.intervene", request)
    assert answer["decision"] == "inject" and answer["selected"]["fact_id"] == "proxy-fix"
    silent = alice.call("memory.intervene", {"query": "weather tomorrow"})
    assert silent["decision"] == "silent" and silent["reason"]
    other = connect_client(auth=agent_auth(runtime, "bob"))
    assert other.call("memory.intervene", request)["decision"] == "silent"  # not bob's graph
    report = alice.call("memory.evaluate", {"cases": [
        {"id": "c1", "request": request, "relevant_fact_ids": ["proxy-fix"]}]})  # fmt: skip
    assert report["selective"]["precision"] == 1.0 and report["no_memory"]["recall"] == 0.0
    err = alice.request("memory.evaluate", {"cases": [{"request": {}}]})["error"]
    assert err["code"] == -32602 and "cases[0].id" in err["message"]

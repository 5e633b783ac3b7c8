"""memory.* over a real server: routing by scope, result types, errors, persistence."""

from __future__ import annotations

import json
import os
import signal
import time

from tests.conftest import Client, agent_auth


def add(c: Client, subject: str, body: str, **kw) -> int:
    return c.call("memory.add_fact", {"subject": subject, "body": body, **kw})


def test_result_types_are_exactly_as_the_protocol_says(runtime, connect_client) -> None:
    c = connect_client()
    n = add(c, "deploy", "the staging deploy runs every night at 2am")
    assert n == 1 and type(n) is int
    assert c.call("memory.fact_count") == 1
    assert c.call("memory.fact_count", {}) == 1
    rows = c.call("memory.query", {"query": "staging deploy", "k": 5})
    assert isinstance(rows, list) and rows[0]["subject"] == "deploy"
    assert set(rows[0]) == {
        "fact_id",
        "subject",
        "body",
        "kind",
        "confidence",
        "tags",
        "source",
        "provenance",
    }
    assert 0 <= rows[0]["confidence"] <= 1
    ctx = c.call("memory.build_context", {"query": "deploy"})
    assert isinstance(ctx, str) and "deploy" in ctx
    assert isinstance(c.call("memory.build_context_fast", {"query": "deploy"}), str)
    report = c.call("memory.consolidate")
    assert set(report) >= {"duplicates_merged", "contradictions_found", "fact_count"}


def test_unbound_sessions_never_see_each_others_facts(runtime, connect_client) -> None:
    a, b = connect_client(), connect_client()
    add(a, "secret", "only a knows the launch codes")
    assert b.call("memory.fact_count") == 0
    assert b.call("memory.query", {"query": "launch codes"}) == []
    assert a.call("memory.fact_count") == 1


def test_agent_graph_is_shared_by_sessions_of_that_agent(runtime, connect_client) -> None:
    a1 = connect_client(auth=agent_auth(runtime, "alice"))
    a2 = connect_client(auth=agent_auth(runtime, "alice"))
    bob = connect_client(auth=agent_auth(runtime, "bob"))
    add(a1, "preference", "alice prefers dark mode")
    assert a2.call("memory.fact_count") == 1
    assert a2.call("memory.query", {"query": "dark mode"})[0]["body"] == "alice prefers dark mode"
    assert bob.call("memory.fact_count") == 0


def test_namespace_wins_over_the_agent_graph(runtime, connect_client) -> None:
    a = connect_client(auth=agent_auth(runtime, "alice"))
    add(a, "x", "in the agent graph")
    ns = connect_client(auth=agent_auth(runtime, "alice", memory_namespace="proj/1"))
    assert ns.call("memory.fact_count") == 0
    add(ns, "y", "in the namespace graph")
    other = connect_client(auth={"token": runtime.token, "memory_namespace": "proj/1"})
    assert other.call("memory.fact_count") == 1
    assert a.call("memory.fact_count") == 1


def test_notebook_session_can_bind_to_an_agent_to_explore_it(runtime, connect_client) -> None:
    a = connect_client(auth=agent_auth(runtime, "alice"))
    add(a, "note", "written by the agent process")
    runtime.call("session.auth", {"host_token": runtime.host_token, "agent_id": "alice"})
    assert runtime.session.agent_id == "alice"
    assert runtime.session.fact_count == 1
    assert runtime.call("memory.query", {"query": "agent process"})[0]["subject"] == "note"
    add(a, "note2", "another one")
    assert runtime.session.fact_count == 2  # the panel's count follows writes by others


def test_params_errors_name_the_field(runtime, connect_client) -> None:
    c = connect_client()
    cases = [
        ("memory.add_fact", {"body": "b"}, "subject is required"),
        ("memory.add_fact", {"subject": 1, "body": "b"}, "subject must be a string"),
        ("memory.add_fact", {"subject": "s", "body": "b", "tags": "x"}, "tags"),
        ("memory.add_fact", {"subject": "s", "body": "b", "confidence": "high"}, "confidence"),
        ("memory.query", {}, "query is required"),
        ("memory.query", {"query": "q", "k": "five"}, "k must be an integer"),
        (
            "memory.build_context",
            {"query": "q", "model_context_window": "big"},
            "model_context_window",
        ),
        ("memory.persist", {}, "path is required"),
        ("memory.delete", {}, "id is required"),
    ]
    for method, params, text in cases:
        err = c.request(method, params)["error"]
        assert err["code"] == -32602, (method, err)
        assert text in err["message"], (method, err)
    assert c.call("memory.fact_count") == 0  # nothing was written by the bad calls


def test_k_limits(runtime, connect_client) -> None:
    c = connect_client()
    for i in range(8):
        add(c, f"topic{i}", f"shared words about caching layer number {i}")
    assert len(c.call("memory.query", {"query": "caching layer", "k": 3})) == 3
    assert c.call("memory.query", {"query": "caching layer", "k": 0}) == []
    assert c.call("memory.query", {"query": "caching layer", "k": -2}) == []
    assert c.call("memory.query", {"query": "zebra quantum"}) == []


def test_huge_body_is_stored_or_refused_clearly(runtime, connect_client) -> None:
    c = connect_client()
    reply = c.request("memory.add_fact", {"subject": "big", "body": "word " * 200_000})
    if "error" in reply:
        assert reply["error"]["code"] == -32602 and "body" in reply["error"]["message"]
        assert c.call("memory.fact_count") == 0
    else:
        assert reply["result"] == 1
    assert c.call("state.keys") == []  # the connection still serves


def test_persist_and_load_round_trip_and_sandbox(runtime, connect_client) -> None:
    c = connect_client()
    add(c, "a", "first fact about apples")
    add(c, "b", "second fact about bananas")
    assert c.call("memory.persist", {"path": "proj/mem.json"}) == 2
    saved = runtime.home / "memory" / "operator" / "proj" / "mem.json"
    assert json.loads(saved.read_text())["format"] == "carnb.memgine/1"
    d = connect_client()
    add(d, "z", "will be replaced")
    assert d.call("memory.load", {"path": "proj/mem.json"}) == 2
    assert d.call("memory.fact_count") == 2
    assert d.call("memory.query", {"query": "bananas"})[0]["subject"] == "b"
    for bad in ("../escape.json", "/etc/passwd", "proj/../../x.json"):
        err = c.request("memory.persist", {"path": bad})["error"]
        assert "rejected path" in err["message"], bad
    outside = runtime.home / "outside"
    outside.mkdir()
    (runtime.home / "memory" / "operator").mkdir(parents=True, exist_ok=True)
    os.symlink(outside, runtime.home / "memory" / "operator" / "link")
    err = c.request("memory.persist", {"path": "link/x.json"})["error"]
    assert "rejected path" in err["message"]
    assert list(outside.iterdir()) == []
    missing = d.request("memory.load", {"path": "nope.json"})["error"]
    assert "nope.json" in missing["message"]
    assert d.call("memory.fact_count") == 2  # left as it was
    (runtime.home / "memory" / "operator" / "bad.json").write_text("{not json")
    assert "error" in d.request("memory.load", {"path": "bad.json"})
    assert d.call("memory.fact_count") == 2


def test_delete(runtime, connect_client) -> None:
    c = connect_client()
    add(c, "gone", "to be deleted soon", fact_id="f-1")
    add(c, "kept", "stays here")
    res = c.call("memory.delete", {"id": "f-1"})
    assert res["id"] == "f-1" and res["deleted"] is True and res["fact_count"] == 1
    assert c.call("memory.query", {"query": "deleted soon"}) == []
    assert c.call("memory.delete", {"id": "f-1"})["deleted"] is False


def test_agent_facts_survive_a_server_restart(serve_process, home) -> None:
    p = serve_process("--agent", "alice")
    c = Client(p.url)
    c.call("session.auth", {"token": p.info["agents"]["alice"], "agent_id": "alice"})
    for i in range(20):
        c.call("memory.add_fact", {"subject": f"s{i}", "body": f"persistent fact number {i}"})
    c.close()
    assert p.stop() == 0
    p2 = serve_process("--agent", "alice")
    c2 = Client(p2.url)
    c2.call("session.auth", {"token": p2.info["agents"]["alice"], "agent_id": "alice"})
    assert c2.call("memory.fact_count") == 20
    assert (
        c2.call("memory.query", {"query": "persistent fact number 7", "k": 1})[0]["subject"] == "s7"
    )
    c2.close()


def test_acknowledged_facts_survive_sigkill(serve_process, home) -> None:
    """Durability: every fact whose reply arrived is present after a kill -9 and restart."""
    p = serve_process("--agent", "alice")
    c = Client(p.url)
    c.call("session.auth", {"token": p.info["agents"]["alice"], "agent_id": "alice"})
    acked: list[str] = []
    killer_at = 300
    for i in range(2000):
        if i == killer_at:
            p.proc.send_signal(signal.SIGKILL)
        try:
            c.call(
                "memory.add_fact",
                {"subject": f"k{i}", "body": f"fact {i}", "fact_id": f"k{i}"},
                timeout=5,
            )
        except Exception:
            break
        acked.append(f"k{i}")
    assert killer_at <= len(acked) < 2000
    p.proc.wait(10)
    p2 = serve_process("--agent", "alice")
    c2 = Client(p2.url)
    c2.call("session.auth", {"token": p2.info["agents"]["alice"], "agent_id": "alice"})
    count = c2.call("memory.fact_count")
    assert count >= len(acked)
    for fid in acked[-20:] + acked[:5]:
        assert c2.call("memory.delete", {"id": fid})["deleted"] is True, fid
    c2.close()


def test_a_slow_load_never_stalls_other_sessions(runtime, connect_client) -> None:
    """While one graph is busy for seconds (a big load), other sessions are answered at once,
    and a fast call on the busy graph waits for it instead of blocking the server."""
    facts = [
        {"subject": f"topic {i % 500}", "body": f"generated fact number {i} about item {i}"}
        for i in range(20_000)
    ]
    alices_folder = runtime.home / "memory" / "agents" / "alice"  # what agent alice may load
    alices_folder.mkdir(parents=True, exist_ok=True)
    (alices_folder / "big.json").write_text(json.dumps(facts))
    loader = connect_client(auth=agent_auth(runtime, "alice"))
    same_graph = connect_client(auth=agent_auth(runtime, "alice"))
    other = connect_client()
    other.call("memory.add_fact", {"subject": "mine", "body": "an unrelated small graph"})
    loader.send(
        {"jsonrpc": "2.0", "id": "load", "method": "memory.load", "params": {"path": "big.json"}}
    )
    time.sleep(0.2)  # the load is under way
    same_graph.send({"jsonrpc": "2.0", "id": "count", "method": "memory.fact_count"})
    waits: list[float] = []
    t_end = time.monotonic() + 1.0
    while time.monotonic() < t_end:
        t0 = time.monotonic()
        assert other.call("memory.query", {"query": "unrelated graph"})[0]["subject"] == "mine"
        assert other.call("state.keys") == []
        waits.append(time.monotonic() - t0)
    waits.sort()
    # generous bounds: the load takes seconds; a stalled loop would show up as one long wait
    assert len(waits) > 5 and waits[len(waits) // 2] < 0.1 and waits[-1] < 1.5, waits
    assert loader.recv_reply("load", timeout=60)["result"] == 20_000
    # the queued call ran after the load, on the loaded graph
    assert same_graph.recv_reply("count", timeout=60)["result"] == 20_000


def test_graph_and_run_files_are_private_even_in_a_shared_home(make_runtime, tmp_path) -> None:
    import stat

    home = tmp_path / "shared-home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    rt = make_runtime(home=home, agents=("alice",))
    c = Client(rt.url)
    try:
        c.call("session.auth", agent_auth(rt, "alice"))
        c.call("memory.add_fact", {"subject": "s", "body": "private"})
        c.call("runs.start", {"intent": "private run"})
    finally:
        c.close()
    files = list((home / "graphs").rglob("*.sqlite3*")) + list(home.glob("runs.sqlite3*"))
    assert any(f.name.endswith(".sqlite3") for f in files) and len(files) >= 2
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_authenticating_to_a_graph_that_is_loading_does_not_wait_for_the_load(
    runtime, connect_client
) -> None:
    """session.auth binds the agent's graph on the server's loop: while another session's long
    memory.load holds that graph, the auth is answered at once (its fact count comes later)
    instead of freezing the loop until the load ends."""
    facts = [
        {"subject": f"topic {i % 500}", "body": f"generated fact number {i} about item {i}"}
        for i in range(120_000)
    ]
    alices_folder = runtime.home / "memory" / "agents" / "alice"
    alices_folder.mkdir(parents=True, exist_ok=True)
    (alices_folder / "big.json").write_text(json.dumps(facts))
    loader = connect_client(auth=agent_auth(runtime, "alice"))
    other = connect_client()
    loader.send(
        {"jsonrpc": "2.0", "id": "load", "method": "memory.load", "params": {"path": "big.json"}}
    )
    # wait until the load is writing (its file is read and prepared first)
    wal = runtime.home / "graphs" / "agents" / "alice.sqlite3-wal"
    deadline = time.monotonic() + 60
    while not (wal.exists() and wal.stat().st_size > 1 << 20) and time.monotonic() < deadline:
        time.sleep(0.01)
    late = connect_client(auth=None)
    t0 = time.monotonic()
    assert late.call("session.auth", agent_auth(runtime, "alice"))["agent_id"] == "alice"
    auth_took = time.monotonic() - t0
    t0 = time.monotonic()
    assert other.call("state.keys") == []
    bystander_took = time.monotonic() - t0
    assert loader.recv_reply("load", timeout=120)["result"] == 120_000
    assert auth_took < 1.0 and bystander_took < 1.0, (auth_took, bystander_took)
    assert late.call("memory.fact_count") == 120_000  # counted once the graph is free


def test_query_explain_over_the_wire(runtime, connect_client) -> None:
    c = connect_client()
    add(c, "deploy", "the staging deploy runs every night at 2am")
    row = c.call("memory.query", {"query": "staging deploy", "explain": True})[0]
    assert [w["word"] for w in row["explain"]["words"]] == ["staging", "deploy"]
    assert row["explain"]["relevance"] == row["confidence"]
    err = c.request("memory.query", {"query": "deploy", "explain": "yes"})["error"]
    assert err["code"] == -32602 and "explain must be a boolean" in err["message"]


def test_provenance_is_the_servers_account_of_the_writer(runtime, connect_client) -> None:
    alice = connect_client(auth=agent_auth(runtime, "alice"))
    add(alice, "outside", "written before any run")
    run = alice.call("runs.start", {"intent": "triage"})
    alice.call("runs.record_turns", {"run_id": run["run_id"], "turns": [{"prompt": "p"}]})
    # a client cannot claim a provenance: the param is not taken
    add(alice, "inside", "written during the run", provenance={"agent_id": "mallory"})
    rows = {r["subject"]: r for r in alice.call("memory.query", {"query": "written run", "k": 5})}
    before, during = rows["outside"]["provenance"], rows["inside"]["provenance"]
    assert before["agent_id"] == "alice" and before["session_kind"] == "socket"
    assert before["role"] == "agent" and "run_id" not in before
    assert during["agent_id"] == "alice"
    assert during["run_id"] == run["run_id"] and during["turn"] == 1
    assert before["at"] <= during["at"] <= time.time()
    history = alice.call("memory.history", {"subject": "inside"})
    assert history[0]["provenance"] == during


def test_edit_and_pin_over_the_wire(runtime, connect_client) -> None:
    c = connect_client()
    add(c, "deploy", "deploys on tuesday", fact_id="d1")
    out = c.call("memory.edit", {"id": "d1", "body": "deploys on wednesday"})
    assert out["replaces"] == "d1" and out["fact_count"] == 1
    row = c.call("memory.query", {"query": "deploys"})[0]
    assert row["fact_id"] == out["id"] and row["provenance"]["action"] == "edit"
    assert [r["fact_id"] for r in c.call("memory.history", {"fact_id": "d1"})] == [out["id"], "d1"]
    assert c.call("memory.pin", {"id": out["id"]}) == {"id": out["id"], "pinned": True,
                                                      "changed": True}  # fmt: skip
    for i in range(10):
        add(c, f"n{i}", f"memo {i}")
    assert "deploys on wednesday" in c.call("memory.build_context", {"query": "kafka"})
    c.call("memory.pin", {"id": out["id"], "pinned": False})
    assert "deploys on wednesday" not in c.call("memory.build_context", {"query": "kafka"})
    err = c.request("memory.edit", {"id": "d1", "body": "again"})["error"]
    assert err["code"] == -32602 and "superseded" in err["message"]


def test_restore_over_the_wire_brings_a_deleted_fact_back_as_it_was(
    runtime, connect_client
) -> None:
    c = connect_client()
    add(c, "db", "postgres 14", fact_id="v1")
    add(c, "db", "postgres 15", fact_id="v2", supersedes=["v1"], tags=["ops"])
    before = c.call("memory.history", {"fact_id": "v2"})
    c.call("memory.delete", {"id": "v2"})
    assert c.call("memory.fact_count") == 1  # v1 valid again
    out = c.call("memory.restore", {"id": "v2"})
    assert out == {"id": "v2", "restored": True, "superseded_by": None, "supersedes": ["v1"],
                   "fact_count": 1}  # fmt: skip
    assert c.call("memory.history", {"fact_id": "v2"}) == before  # provenance and time too
    err = c.request("memory.restore", {"id": "v2"})["error"]
    assert err["code"] == -32602 and "is stored" in err["message"]
    err = c.request("memory.restore", {"id": "never"})["error"]
    assert err["code"] == -32602 and "no deleted fact 'never'" in err["message"]


def test_utility_blend_over_the_wire_is_the_graphs(runtime, connect_client) -> None:
    alice = connect_client(auth=agent_auth(runtime, "alice"))
    again = connect_client(auth=agent_auth(runtime, "alice"))
    stranger = connect_client()
    assert alice.call("memory.utility_set", {"utility_weight": 2}) == {
        "utility_weight": 1.0, "utility_exploration": 1.0}  # fmt: skip
    assert again.call("memory.utility_get")["utility_weight"] == 1.0  # the agent's graph
    assert stranger.call("memory.utility_get")["utility_weight"] == 0.0  # its own graph
    err = alice.request("memory.utility_set", {"utility_weight": "max"})["error"]
    assert err["code"] == -32602 and "utility_weight must be a number" in err["message"]

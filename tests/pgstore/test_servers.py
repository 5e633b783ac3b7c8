"""carnb servers sharing one PostgreSQL store: runs written through one are read and streamed
live through another; a newer schema is refused; a PostgreSQL restart gives clear errors and
carnb recovers by itself."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from carnb.errors import CarnbError
from carnb.runtime import Runtime
from tests.conftest import Client, RpcFailed

pytestmark = pytest.mark.postgres


def _host(rt: Runtime) -> Client:
    c = Client(rt.url)
    c.call("session.auth", {"host_token": rt.host_token})
    return c


def _trace_events(c: Client, n: int, timeout: float = 10) -> list[dict[str, Any]]:
    return [c.wait_notification("runs.trace.event", timeout)["params"] for _ in range(n)]


def test_a_run_written_through_a_streams_live_in_order_to_b(make_runtime: Any, pg_url: str) -> None:
    a, b = make_runtime(store=pg_url), make_runtime(store=pg_url)
    writer, watcher = _host(a), _host(b)
    try:
        run_id = writer.call("runs.start", {"intent": "shared", "agent_name": "team"})["run_id"]
        snap = watcher.call("runs.subscribe", {"run_id": run_id})
        assert snap["cursor"] == 0 and snap["records"][0]["intent"] == "shared"
        delays = []
        for i in range(20):
            t0 = time.perf_counter()
            writer.call("runs.record_turns", {"run_id": run_id, "turns": [{"prompt": f"p{i}"}]})
            ev = _trace_events(watcher, 1)[0]
            delays.append(time.perf_counter() - t0)
            assert ev["cursor"] == i + 1 and ev["record"]["turn"] == {"prompt": f"p{i}"}
        writer.call("runs.record_turns", {"run_id": run_id, "turns": [{"k": j} for j in range(5)]})
        writer.call("runs.cancel", {"run_id": run_id, "reason": "done"})
        tail = _trace_events(watcher, 6)
        assert [e["cursor"] for e in tail] == list(range(21, 27))
        assert tail[-1]["status"] == "cancelled"
        # B reads the same trace A wrote, record for record.
        assert watcher.call("runs.get_trace", {"run_id": run_id}) == writer.call(
            "runs.get_trace", {"run_id": run_id}
        )
        assert sorted(delays)[len(delays) // 2] < 0.05  # median append-to-notification
    finally:
        writer.close()
        watcher.close()


def test_four_servers_append_to_one_run_with_contiguous_cursors(
    make_runtime: Any, pg_url: str
) -> None:
    servers = [make_runtime(store=pg_url, auth=False) for _ in range(4)]
    writers = [Client(rt.url) for rt in servers]
    watcher = Client(servers[3].url)
    try:
        for c in writers:
            c.call("session.auth", {"agent_id": "bot"})  # the same agent on every server
        run_id = writers[0].call("runs.start", {"intent": "x"})["run_id"]
        watcher.call("session.auth", {"agent_id": "bot"})
        watcher.call("runs.subscribe", {"run_id": run_id})

        def write(c: Client, w: int) -> None:
            for i in range(10):
                turns = [{"w": w, "i": i, "j": j} for j in range(3)]
                assert c.call("runs.record_turns", {"run_id": run_id, "turns": turns})["ok"]

        threads = [threading.Thread(target=write, args=(c, w)) for w, c in enumerate(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        got = _trace_events(watcher, 120)
        assert [e["cursor"] for e in got] == list(range(1, 121))
        # each writer's batches arrive whole and in its own order
        for w in range(4):
            mine = [
                (e["record"]["turn"]["i"], e["record"]["turn"]["j"])
                for e in got
                if e["record"]["turn"]["w"] == w
            ]
            assert mine == [(i, j) for i in range(10) for j in range(3)]
    finally:
        for c in [*writers, watcher]:
            c.close()


def test_server_shows_the_store_without_its_password(make_runtime: Any, pg_url: str) -> None:
    url = pg_url.replace("carnb@", "carnb:s3cret-pw@")
    rt = make_runtime(store=url)
    assert rt.store_display.startswith("postgresql://carnb@127.0.0.1:")
    assert "s3cret" not in rt.store_display and "s3cret" not in repr(rt.settings.store_setting)


def test_a_newer_schema_is_refused_with_a_clear_message(
    make_runtime: Any, pg_url: str, postgres: Any
) -> None:
    dbname = pg_url.rsplit("/", 1)[1]
    postgres.sql("UPDATE carnb_schema SET version = 99 WHERE component = 'runs'", dbname)
    with pytest.raises(CarnbError, match="version 99, newer than this carnb understands"):
        make_runtime(store=pg_url)


def test_a_bad_store_setting_is_refused(make_runtime: Any) -> None:
    with pytest.raises(CarnbError, match="PostgreSQL URL"):
        make_runtime(store="mysql://x/y")


def test_postgresql_restart_gives_clear_errors_then_recovers(
    make_runtime: Any, pg_url: str, postgres: Any
) -> None:
    a, b = make_runtime(store=pg_url), make_runtime(store=pg_url)
    writer, watcher = _host(a), _host(b)
    try:
        run_id = writer.call("runs.start", {"intent": "x", "agent_name": "n"})["run_id"]
        watcher.call("runs.subscribe", {"run_id": run_id})
        postgres.stop_server("fast")
        try:
            with pytest.raises(RpcFailed, match="unavailable.*reconnects by itself"):
                writer.call("runs.get_trace", {"run_id": run_id}, timeout=30)
            for _ in range(3):  # once PostgreSQL is known away, calls fail fast
                t0 = time.perf_counter()
                with pytest.raises(RpcFailed, match="unavailable"):
                    writer.call("runs.get_trace", {"run_id": run_id})
                assert time.perf_counter() - t0 < 0.5
        finally:
            postgres.start_again()
        deadline = time.monotonic() + 30
        while True:  # the pool reconnects in the background
            try:
                writer.call("runs.cancel", {"run_id": run_id, "reason": "after restart"})
                break
            except RpcFailed:
                assert time.monotonic() < deadline, "carnb did not recover"
                time.sleep(0.2)
        ev = _trace_events(watcher, 1, timeout=30)[0]  # none repeated from the snapshot
        assert ev["cursor"] == 1 and ev["status"] == "cancelled"
    finally:
        writer.close()
        watcher.close()


def test_an_agent_registered_once_has_the_same_token_on_every_server(
    make_runtime: Any, pg_url: str, postgres: Any
) -> None:
    a = make_runtime(store=pg_url, agents=("bot",))
    b = make_runtime(store=pg_url, agents=("bot",))  # already in the store: A's token counts
    token = a.credentials.agents.token_for("bot")
    assert token is not None and b.credentials.agents.token_for("bot") is None
    on_b = Client(b.url)
    try:
        with pytest.raises(RpcFailed, match="auth failed"):
            on_b.call("session.auth", {"agent_id": "bot", "token": "not-the-token"})
        assert on_b.call("session.auth", {"agent_id": "bot", "token": token})["agent_id"] == "bot"
        # registered later through A: B learns it from the notification
        carol = _host(a).call("agents.register", {"name": "carol"})["token"]
        deadline = time.monotonic() + 5
        while "carol" not in b.credentials.agents:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert b.credentials.agents.verify("carol", carol)
        assert "carol" in [r["spec"]["id"] for r in _host(b).call("agents.list")]
        # B cannot hand out a token it never saw
        with pytest.raises(RpcFailed, match="already registered in the team store"):
            _host(b).call("agents.register", {"name": "carol"})
    finally:
        on_b.close()
    # the store keeps salted hashes only
    import psycopg

    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT agent_id, salt, token_hash FROM carnb_agents").fetchall()
    assert {r[0] for r in rows} == {"bot", "carol"}
    for _, salt, digest in rows:
        assert len(salt) == 16 and len(digest) == 32
        assert token.encode() not in bytes(digest) and carol.encode() not in bytes(digest)


def test_host_events_of_one_server_reach_the_others(make_runtime: Any, pg_url: str) -> None:
    a, b = make_runtime(store=pg_url), make_runtime(store=pg_url)
    watcher = _host(b)
    try:
        watcher.call("server.handshake", {"protocol_version": 3})
        watcher.call("host.subscribe")
        visitor = Client(a.url)
        visitor.call("session.auth", {"token": a.token})
        deadline = time.monotonic() + 5
        while True:
            ev = watcher.wait_notification("host.event", max(0.01, deadline - time.monotonic()))
            p = ev["params"]
            if p["kind"] == "session.attached" and p["payload"].get("server"):
                break
        sid = p["payload"]["session_id"]
        assert sid not in {s["client_id"] for s in b.snapshots()}
        visitor.close()
        # nobody's events are echoed back to where they happened
        time.sleep(0.3)
        assert a.services is not None
        mine = [e for e in a.services.events.recent() if e["payload"].get("session_id") == sid]
        assert mine and all("server" not in e["payload"] for e in mine)
    finally:
        watcher.close()


def test_the_loop_answers_while_a_runs_call_waits_on_postgresql(
    make_runtime: Any, pg_url: str
) -> None:
    import psycopg

    rt = make_runtime(store=pg_url, auth=False)
    writer, other = Client(rt.url), Client(rt.url)
    try:
        writer.call("session.auth", {"agent_id": "bot"})
        run_id = writer.call("runs.start", {"intent": "x"})["run_id"]
        with psycopg.connect(pg_url) as blocker:  # hold the run's row: appends must wait
            blocker.execute("SELECT 1 FROM carnb_runs WHERE run_id = %s FOR UPDATE", (run_id,))
            for i in range(3):  # pipelined: they must land in this order
                writer.send(
                    {
                        "jsonrpc": "2.0",
                        "id": 100 + i,
                        "method": "runs.record_turns",
                        "params": {"run_id": run_id, "turns": [{"i": i}]},
                    }
                )
            time.sleep(0.3)
            t0 = time.perf_counter()
            other.call("state.set", {"key": "k", "value": 1})
            assert time.perf_counter() - t0 < 0.1  # the loop is not waiting on the row lock
        bases = [writer.recv_reply(100 + i)["result"]["base_index"] for i in range(3)]
        assert bases == [1, 2, 3]
        records = writer.call("runs.get_trace", {"run_id": run_id})["records"]
        assert [r["turn"]["i"] for r in records[1:]] == [0, 1, 2]
    finally:
        writer.close()
        other.close()

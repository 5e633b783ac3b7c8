"""memgine graphs of carnb servers sharing one PostgreSQL store: facts written through one are
found and counted live through another; concurrent writers through 2 and 4 servers lose
nothing; a PostgreSQL restart gives clear errors and carnb recovers by itself."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from carnb.runtime import Runtime
from tests.conftest import Client, RpcFailed

pytestmark = pytest.mark.postgres


def _as_bot(rt: Runtime, token: str) -> Client:
    c = Client(rt.url)
    c.call("session.auth", {"agent_id": "bot", "token": token})
    return c


def _bot_count_on(rt: Runtime) -> int | None:
    for snap in rt.snapshots():
        if snap["agent_id"] == "bot" and snap["graph"] == "agent:bot":
            return snap["fact_count"]  # type: ignore[no-any-return]
    return None


def _wait(cond: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_facts_written_through_a_are_found_and_counted_live_on_b(
    make_runtime: Any, pg_url: str
) -> None:
    a = make_runtime(store=pg_url, agents=("bot",))
    b = make_runtime(store=pg_url)
    token = a.credentials.agents.token_for("bot")
    assert token is not None
    writer, watcher = _as_bot(a, token), _as_bot(b, token)
    try:
        assert watcher.call("memory.fact_count") == 0
        for i in range(5):
            assert writer.call("memory.add_fact", {"subject": f"s{i}", "body": f"zebra {i}"}) == (
                i + 1
            )
            _wait(lambda n=i + 1: _bot_count_on(b) == n)  # B's panel follows A's writes
        found = watcher.call("memory.query", {"query": "zebra 3", "k": 1})
        assert found[0]["subject"] == "s3"
        watcher.call("memory.add_fact", {"subject": "rule", "body": "no zebras on friday",
                                         "kind": "constraint"})  # fmt: skip
        assert "no zebras on friday" in writer.call("memory.build_context", {"query": "zebra"})
        _wait(lambda: _bot_count_on(a) == 6)
        assert b.agents_on_disk()["bot"]["graph"] is True
    finally:
        writer.close()
        watcher.close()


@pytest.mark.parametrize("servers", [2, 4])
def test_concurrent_writers_through_several_servers_lose_nothing(
    make_runtime: Any, pg_url: str, servers: int
) -> None:
    first = make_runtime(store=pg_url, agents=("bot",))
    token = first.credentials.agents.token_for("bot")
    assert token is not None
    runtimes = [first] + [make_runtime(store=pg_url) for _ in range(servers - 1)]
    clients = [_as_bot(rt, token) for rt in runtimes]
    acked: list[list[str]] = [[] for _ in clients]
    errors: list[BaseException] = []
    per_writer = 40

    def write(n: int) -> None:
        try:
            for i in range(per_writer):
                fact_id = f"w{n}-{i}"
                clients[n].call("memory.add_fact", {"subject": f"writer {n}",
                                                    "body": f"fact {i} from {n}",
                                                    "fact_id": fact_id})  # fmt: skip
                acked[n].append(fact_id)
                clients[n].call("memory.add_fact", {"subject": "shared", "body": f"{n} {i}"})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(servers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    try:
        assert errors == []
        total = 2 * per_writer * servers
        for c in clients:
            assert c.call("memory.fact_count") == total
        ids = [r["fact_id"] for r in clients[0].call("memory.history", {"subject": "shared"})]
        assert len(set(ids)) == per_writer * servers  # minted ws-<n> ids never collide
        for n in range(servers):
            rows = clients[-1].call("memory.history", {"subject": f"writer {n}"})
            assert {r["fact_id"] for r in rows} == set(acked[n])
        for rt in runtimes:
            _wait(lambda rt=rt: _bot_count_on(rt) == total)
    finally:
        for c in clients:
            c.close()


def test_postgresql_restart_gives_clear_memory_errors_then_recovers(
    make_runtime: Any, pg_url: str, postgres: Any
) -> None:
    a = make_runtime(store=pg_url, agents=("bot",))
    token = a.credentials.agents.token_for("bot")
    assert token is not None
    c = _as_bot(a, token)
    try:
        c.call("memory.add_fact", {"subject": "before", "body": "the restart"})
        told: list[tuple[tuple[str, str], int]] = []
        assert a._memory_home is not None and a._memory_home.store is not None
        a._memory_home.store.watch(lambda key, count: told.append((key, count)))  # type: ignore[attr-defined]
        postgres.stop_server("fast")
        try:
            with pytest.raises(RpcFailed, match="unavailable.*nothing was written"):
                c.call("memory.add_fact", {"subject": "during", "body": "x"}, timeout=30)
            with pytest.raises(RpcFailed, match="unavailable"):
                c.call("memory.query", {"query": "restart"}, timeout=30)
        finally:
            postgres.start_again()
        # notifications sent while nobody listened are lost: after LISTEN reconnects, the
        # server re-reads the counts of the graphs it holds
        _wait(lambda: (("agents", "bot"), 1) in told, timeout=30)
        deadline = time.monotonic() + 30
        while True:
            try:
                assert c.call("memory.add_fact", {"subject": "after", "body": "it"}) == 2
                break
            except RpcFailed:
                assert time.monotonic() < deadline, "carnb did not recover"
                time.sleep(0.2)
        assert [r["subject"] for r in c.call("memory.query", {"query": "restart"})] == ["before"]
    finally:
        c.close()


def test_an_edit_through_one_server_shows_on_the_other_servers_explorer(
    make_runtime: Any, pg_url: str, tmp_path: Path
) -> None:
    from carnb.config import Settings
    from carnb.kernel.engine import NotebookEngine
    from carnb.kernel.parser import build_parser, parse

    a = make_runtime(store=pg_url, agents=("bot",))
    token = a.credentials.agents.token_for("bot")
    assert token is not None
    writer = _as_bot(a, token)
    nb = NotebookEngine()  # server B: a notebook's runtime with a data directory of its own
    nb.start(Settings(home=tmp_path / "b-home", browser=False, store=pg_url))
    try:
        for fact_id, body in (("d1", "zebra deploys on tuesday"), ("d2", "zebra crossing east")):
            writer.call("memory.add_fact", {"subject": fact_id, "body": body, "fact_id": fact_id})
        rt = nb.runtime
        assert rt is not None
        rt.call("session.auth", {"host_token": rt.host_token, "agent_id": "bot"})
        args = parse(build_parser(), "memory explore zebra")
        ex = args.func(nb, args)

        def shown() -> dict[str, list[str]]:
            return {r["fact_id"]: r["tags"] for r in ex.last_rows}

        _wait(lambda: set(shown()) == {"d1", "d2"})
        edited = writer.call("memory.edit", {"id": "d1", "body": "zebra deploys on friday"})
        _wait(lambda: edited["id"] in shown() and "d1" not in shown())
        assert "zebra deploys on friday" in ex.results.value  # the table B's notebook shows
        writer.call("memory.pin", {"id": "d2"})
        _wait(lambda: shown().get("d2") == ["pinned"])
        writer.call("memory.delete", {"id": "d2"})
        _wait(lambda: "d2" not in shown())
        assert "crossing" not in ex.results.value
        assert 'data-facts="1"' in ex.status.value  # the count beside the table follows
    finally:
        writer.close()
        nb.close()

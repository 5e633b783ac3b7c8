"""Memory isolation: one agent's ``memory.persist``/``memory.load`` files are not
another's, and a folder swapped for a symlink between the path check and the open is refused.

Every agent and namespace has its own part of ``<home>/memory/``; the host reaches
all of it. persist/load open every folder relative to the one before, never through
a link, so a swap after :meth:`MemoryHome.resolve_user_path` writes or reads nothing outside."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from carnb.errors import NotFound, PathRejected
from carnb.memgine import MemoryHome
from carnb.protocol.session import ClientSession
from tests.conftest import RpcFailed, agent_auth

pytestmark = pytest.mark.reliability

PERSIST = "memory.persist"


@pytest.fixture
def memory(tmp_path: Path) -> Any:
    home = MemoryHome(tmp_path / "h")
    home.start()
    yield home
    home.close()


def agent(name: str, namespace: str | None = None) -> ClientSession:
    return ClientSession(authenticated=True, agent_id=name, memory_namespace=namespace)


# -- per-agent and per-namespace folders ----------------------------------------------------------


def test_agents_cannot_reach_each_others_snapshots(memory: MemoryHome) -> None:
    alice, bob = agent("alice"), agent("bob")
    graph = memory.agent_graph("alice")
    graph.add_fact("db", "never drop the users table", "constraint")
    mine = memory.resolve_user_path("notes.json", method=PERSIST, session=alice)
    assert graph.persist(mine) == 1
    theirs = memory.resolve_user_path("notes.json", method="memory.load", session=bob)
    assert theirs != mine
    with pytest.raises(NotFound):
        memory.agent_graph("bob").load(theirs)
    for path in (str(mine), "../alice/notes.json", str(memory.memory_dir / "notes.json")):
        with pytest.raises(PathRejected):
            memory.resolve_user_path(path, method="memory.load", session=bob)


def test_a_snapshot_is_rewritten_only_by_its_owner(memory: MemoryHome) -> None:
    alice, bob = agent("alice"), agent("bob")
    memory.agent_graph("alice").add_fact("db", "alice's rule", "constraint")
    memory.agent_graph("alice").persist(
        memory.resolve_user_path("notes.json", method=PERSIST, session=alice)
    )
    memory.agent_graph("bob").add_fact("db", "bob's rule", "constraint")
    memory.agent_graph("bob").persist(
        memory.resolve_user_path("notes.json", method=PERSIST, session=bob)
    )
    back = memory.resolve_user_path("notes.json", method="memory.load", session=alice)
    assert memory.agent_graph("alice").load(back) == 1
    assert [f["body"] for f in memory.agent_graph("alice").facts()] == ["alice's rule"]


def test_the_folders_follow_the_graph_and_the_host_reads_all(memory: MemoryHome) -> None:
    root = Path(os.path.realpath(memory.memory_dir))
    cases = [
        (agent("Bob/1"), root / "agents" / "%42ob%2f1"),
        (agent("bob", namespace="team"), root / "namespaces" / "team"),
        (ClientSession(authenticated=True, memory_namespace="team"), root / "namespaces" / "team"),
        (ClientSession(authenticated=True), root / "operator"),
        (ClientSession(authenticated=True, is_host=True), root),
        (None, root),
    ]
    for session, folder in cases:
        assert memory.resolve_user_path("x.json", method=PERSIST, session=session) == (
            folder / "x.json"
        )
    host = ClientSession(authenticated=True, is_host=True)
    assert memory.resolve_user_path("agents/bob/x.json", method=PERSIST, session=host) == (
        root / "agents" / "bob" / "x.json"
    )


def test_an_agent_folder_swapped_for_a_link_is_refused(memory: MemoryHome) -> None:
    bob = agent("bob")
    memory.resolve_user_path("x.json", method=PERSIST, session=bob)
    (memory.memory_dir / "agents" / "alice").mkdir()
    shutil.rmtree(memory.memory_dir / "agents" / "bob")
    (memory.memory_dir / "agents" / "bob").symlink_to("alice", target_is_directory=True)
    with pytest.raises(PathRejected, match="folder itself leads elsewhere"):
        memory.resolve_user_path("x.json", method=PERSIST, session=bob)


def test_on_the_wire_bob_cannot_load_alices_snapshot(connect_client: Any, runtime: Any) -> None:
    alice = connect_client(agent_auth(runtime, "alice"))
    bob = connect_client(agent_auth(runtime, "bob"))
    alice.call("memory.add_fact", {"subject": "db", "body": "alice's rule", "kind": "constraint"})
    assert alice.call(PERSIST, {"path": "notes.json"}) == 1
    with pytest.raises(RpcFailed):
        bob.call("memory.load", {"path": "notes.json"})
    bob.call("memory.add_fact", {"subject": "db", "body": "bob's rule", "kind": "constraint"})
    bob.call(PERSIST, {"path": "notes.json"})
    assert alice.call("memory.load", {"path": "notes.json"}) == 1
    assert [f["body"] for f in alice.call("memory.query", {"query": "rule"})] == ["alice's rule"]


# -- the check and the open happen at different times ---------------------------------------------


def swap_for_link(folder: Path, target: Path) -> None:
    shutil.rmtree(folder)
    folder.symlink_to(target, target_is_directory=True)


def test_persist_through_a_folder_swapped_after_the_check_writes_nothing_outside(
    memory: MemoryHome, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    path = memory.resolve_user_path("proj/mem.json", method=PERSIST)
    (memory.memory_dir / "proj").mkdir()
    swap_for_link(memory.memory_dir / "proj", outside)
    graph = memory.ephemeral()
    graph.add_fact("a", "b")
    with pytest.raises(PathRejected, match="symlink"):
        graph.persist(path)
    assert list(outside.iterdir()) == []


def test_load_through_a_folder_swapped_after_the_check_reads_nothing_outside(
    memory: MemoryHome, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = [{"subject": "outside", "body": "must never be loaded"}]
    (outside / "mem.json").write_text(json.dumps(secret))
    (memory.memory_dir / "proj").mkdir()
    path = memory.resolve_user_path("proj/mem.json", method="memory.load")
    swap_for_link(memory.memory_dir / "proj", outside)
    graph = memory.ephemeral()
    graph.add_fact("a", "b")
    with pytest.raises(PathRejected, match="symlink"):
        graph.load(path)
    assert [f["body"] for f in graph.facts()] == ["b"]


def test_a_file_swapped_for_a_link_after_the_check_is_not_read(
    memory: MemoryHome, tmp_path: Path
) -> None:
    outside = tmp_path / "secret.json"
    outside.write_text(json.dumps([{"subject": "outside", "body": "must never be loaded"}]))
    (memory.memory_dir / "mem.json").write_text("[]")
    path = memory.resolve_user_path("mem.json", method="memory.load")
    (memory.memory_dir / "mem.json").unlink()
    (memory.memory_dir / "mem.json").symlink_to(outside)
    graph = memory.ephemeral()
    with pytest.raises(PathRejected, match="symlink"):
        graph.load(path)
    assert graph.fact_count() == 0


def test_persist_replaces_a_link_at_the_target_instead_of_writing_through_it(
    memory: MemoryHome, tmp_path: Path
) -> None:
    outside = tmp_path / "victim.txt"
    outside.write_text("untouched")
    path = memory.resolve_user_path("mem.json", method=PERSIST)
    (memory.memory_dir / "mem.json").symlink_to(outside)
    graph = memory.ephemeral()
    graph.add_fact("a", "b")
    assert graph.persist(path) == 1
    assert outside.read_text() == "untouched"
    assert not (memory.memory_dir / "mem.json").is_symlink()

"""MemoryHome: graph file names and layout, cached persistent graphs, the persist sandbox."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carnb.errors import CarnbError, InvalidParams, PathRejected
from carnb.memgine import MemoryHome, graph_file_name
from carnb.memgine.home import MAX_ENCODED

ALLOWED = set("abcdefghijklmnopqrstuvwxyz0123456789-_.%~")


@pytest.mark.parametrize(
    ("name", "encoded"),
    [
        ("MyApp/1", "%4dy%41pp%2f1"),
        ("agent-7_x.y", "agent-7_x.y"),
        ("a b", "a%20b"),
        ("%", "%25"),
        ("é", "%c3%a9"),
        (".", "%2e"),
        ("..", "%2e%2e"),
        ("...", "%2e%2e%2e"),
        ("../../etc", "..%2f..%2fetc"),
    ],
)
def test_graph_file_names(name: str, encoded: str) -> None:
    assert graph_file_name(name) == encoded


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=120), st.text(min_size=1, max_size=120))
def test_graph_file_names_are_injective_and_safe(a: str, b: str) -> None:
    try:
        ea, eb = graph_file_name(a), graph_file_name(b)
    except InvalidParams:  # lone surrogates cannot be names
        return
    assert (ea == eb) == (a == b)
    for encoded in (ea, eb):
        assert set(encoded) <= ALLOWED
        assert encoded.strip(".") != ""
        assert "/" not in encoded and len(encoded) <= MAX_ENCODED


def test_long_names_stay_short_and_distinct() -> None:
    a, b = "x" * 500 + "a", "x" * 500 + "b"
    assert graph_file_name(a) != graph_file_name(b)
    assert len(graph_file_name(a)) <= MAX_ENCODED
    assert "~" in graph_file_name(a) and "~" not in graph_file_name("x" * 60)


def test_graph_files_live_outside_the_sandbox(home: MemoryHome) -> None:
    agent = home.agent_graph("MyApp/1")
    ns = home.namespace_graph("MyApp/1")
    assert agent.path == home.home / "graphs" / "agents" / "%4dy%41pp%2f1.sqlite3"
    assert ns.path == home.home / "graphs" / "namespaces" / "%4dy%41pp%2f1.sqlite3"
    assert agent is not ns
    assert home.memory_dir == home.home / "memory"
    assert home.memory_dir not in agent.path.parents


def test_dot_names_get_their_own_files(home: MemoryHome) -> None:
    graphs = [home.agent_graph(n) for n in (".", "..", "%2e")]
    paths = {g.path for g in graphs}
    assert len(paths) == 3
    for g in graphs:
        assert g.path is not None and g.path.parent == home.home / "graphs" / "agents"


def test_graphs_are_cached_per_name(home: MemoryHome) -> None:
    assert home.agent_graph("a") is home.agent_graph("a")
    assert home.agent_graph("a") is not home.agent_graph("A")
    assert home.namespace_graph("n") is home.namespace_graph("n")
    assert home.ephemeral() is not home.ephemeral()
    assert home.ephemeral().persistent is False


def test_agent_graph_survives_close_and_reopen(tmp_path: Path) -> None:
    first = MemoryHome(tmp_path / "h")
    first.agent_graph("agent-1").add_fact("deploy", "deploys happen on tuesday")
    first.namespace_graph("team").add_fact("style", "use ruff")
    first.close()
    first.close()
    second = MemoryHome(tmp_path / "h")
    g = second.agent_graph("agent-1")
    assert g.fact_count() == 1
    assert g.query("tuesday")[0]["subject"] == "deploy"
    assert second.namespace_graph("team").fact_count() == 1
    assert second.agent_graph("agent-2").fact_count() == 0
    second.close()


def test_a_closed_home_reopens_graphs_on_demand(home: MemoryHome) -> None:
    g = home.agent_graph("a")
    g.add_fact("x", "y")
    home.close()
    assert g.closed
    again = home.agent_graph("a")
    assert again.fact_count() == 1


@pytest.mark.parametrize("bad", ["", "   ", None, 5])
def test_bad_graph_names_are_invalid_params(home: MemoryHome, bad: object) -> None:
    with pytest.raises(InvalidParams, match="agent_id"):
        home.agent_graph(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidParams, match="memory_namespace"):
        home.namespace_graph(bad)  # type: ignore[arg-type]


# -- sandbox -------------------------------------------------------------------------------


def test_relative_paths_resolve_inside_and_may_name_folders(home: MemoryHome) -> None:
    path = home.resolve_user_path("proj/mem.json", method="memory.persist")
    assert path == Path(os.path.realpath(home.memory_dir)) / "proj" / "mem.json"
    g = home.ephemeral()
    g.add_fact("a", "b")
    assert g.persist(path) == 1
    assert (home.memory_dir / "proj" / "mem.json").is_file()
    assert home.resolve_user_path("./x.json", method="memory.load").name == "x.json"


def test_absolute_paths_inside_the_sandbox_are_allowed(home: MemoryHome) -> None:
    inside = home.memory_dir / "abs.json"
    assert home.resolve_user_path(str(inside), method="memory.persist").name == "abs.json"


@pytest.mark.parametrize("path", ["../escape.json", "a/../../escape.json", "a/../b.json", ".."])
def test_dotdot_is_rejected(home: MemoryHome, path: str) -> None:
    with pytest.raises(PathRejected) as err:
        home.resolve_user_path(path, method="memory.persist")
    assert err.value.message == (
        f"memory.persist rejected path {path!r}: '..' is not allowed; "
        f"paths are relative to {home.memory_dir}"
    )
    assert not (home.home / "escape.json").exists()


def test_absolute_paths_outside_are_rejected(home: MemoryHome, tmp_path: Path) -> None:
    outside = tmp_path / "outside.json"
    for path in (str(outside), "/etc/passwd", str(home.home / "graphs" / "x.json")):
        with pytest.raises(PathRejected, match="absolute paths must lie inside"):
            home.resolve_user_path(path, method="memory.load")
    assert not outside.exists()


def test_symlinks_out_of_the_sandbox_are_rejected_and_nothing_is_written(
    home: MemoryHome, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    home.memory_dir.mkdir(parents=True)
    (home.memory_dir / "door").symlink_to(outside, target_is_directory=True)
    (home.memory_dir / "file.json").symlink_to(outside / "target.json")
    for path in ("door/mem.json", "file.json", "door"):
        with pytest.raises(PathRejected, match="through a symlink"):
            home.resolve_user_path(path, method="memory.persist")
    assert list(outside.iterdir()) == []


def test_symlinks_that_stay_inside_are_fine(home: MemoryHome) -> None:
    (home.memory_dir / "real").mkdir(parents=True)
    (home.memory_dir / "alias").symlink_to(home.memory_dir / "real", target_is_directory=True)
    path = home.resolve_user_path("alias/m.json", method="memory.persist")
    assert path == Path(os.path.realpath(home.memory_dir)) / "real" / "m.json"


@pytest.mark.parametrize("path", [".", "./", str(Path("memory"))])
def test_the_sandbox_folder_itself_is_not_a_file(home: MemoryHome, path: str) -> None:
    if path == "memory":
        path = str(home.memory_dir)
    with pytest.raises(PathRejected, match="names the memory folder itself"):
        home.resolve_user_path(path, method="memory.persist")


@pytest.mark.parametrize(
    ("bad", "message"),
    [("", "path must be a non-empty string"), ("  ", "path must be a non-empty string"),
     (3, "path must be a non-empty string"), (None, "path is required")],
)  # fmt: skip
def test_empty_or_wrong_paths_are_invalid_params(
    home: MemoryHome, bad: object, message: str
) -> None:
    with pytest.raises(InvalidParams, match=message):
        home.resolve_user_path(bad, method="memory.persist")  # type: ignore[arg-type]


def test_unencodable_and_overlong_paths_fail_cleanly(home: MemoryHome) -> None:
    with pytest.raises(InvalidParams, match="path is not valid Unicode"):
        home.resolve_user_path("\ud800.json", method="memory.persist")
    g = home.ephemeral()
    g.add_fact("a", "b")
    long = home.resolve_user_path("a" * 5000 + ".json", method="memory.persist")
    with pytest.raises(CarnbError, match="memory.persist: cannot write"):
        g.persist(long)
    with pytest.raises(CarnbError, match="memory.load: cannot read"):
        g.load(long)
    assert g.fact_count() == 1
    assert list(home.memory_dir.iterdir()) == []


def test_nul_in_path_is_rejected(home: MemoryHome) -> None:
    with pytest.raises(PathRejected, match="NUL"):
        home.resolve_user_path("a\x00b.json", method="memory.load")


@pytest.mark.postgres
def test_a_home_on_a_store_keeps_agent_and_namespace_graphs_there(
    tmp_path: Path, pg_store: Any
) -> None:
    h = MemoryHome(tmp_path / "carnb-home", pg_store.graphs())
    other = MemoryHome(tmp_path / "other-home", pg_store.graphs())  # another server
    try:
        g = h.agent_graph("scout")
        assert h.agent_graph("scout") is g and g.persistent and not g.holds_files
        g.add_fact("deploy", "on tuesdays")
        h.namespace_graph("shared").add_fact("x", "y")
        assert other.agent_graph("scout").query("deploy")[0]["body"] == "on tuesdays"
        assert other.namespace_graph("scout").fact_count() == 0  # kinds do not mix
        assert pg_store.graphs().names("agents") == ["scout"]
        assert not (tmp_path / "carnb-home" / "graphs").exists()
        assert h.ephemeral().path is None  # unbound sessions stay in memory
        assert h.open_graphs == 0  # no files held, nothing to bound
    finally:
        h.close()
        other.close()

"""The data directory on a full disk or read-only, under a live `python -m carnb serve`.

Disk full: the data directory is a small tmpfs (``mount -t tmpfs -o size=3m``); it is grown
again with ``remount,size=64m``. Read-only: a read-only bind mount over the data directory
(``mount --bind`` + ``remount,bind,ro``). Files the server already has open stay writable
through the old mount, so this is what a user sees when the directory's permissions or mount
change under a running server: new files (persist, new graphs) cannot be created. These tests
need root (mount); they are skipped otherwise. Every mount is undone in ``finally``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Client
from tests.reliability.harness import ServerProc, add, note, well_formed_error

pytestmark = pytest.mark.reliability


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


def _umount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs / a read-only bind mount")


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    _need_root()
    path.mkdir(parents=True, exist_ok=True)
    try:
        _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc.stderr.strip()}")
    try:
        yield path
    finally:
        _umount(path)


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """A read-only bind mount of ``path`` over itself (undone on exit)."""
    _need_root()
    try:
        _mount("--bind", str(path), str(path))
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot bind-mount here: {exc.stderr.strip()}")
    try:
        _mount("-o", "remount,bind,ro", str(path))
        yield path
    finally:
        _umount(path)


def integrity(home: Path) -> int:
    files = sorted(home.rglob("*.sqlite3"))
    for path in files:
        conn = sqlite3.connect(path.as_uri() + "?mode=ro", uri=True)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)], path
        finally:
            conn.close()
    return len(files)


def persisted_ids(c: Client, home: Path, name: str) -> set[str]:
    assert isinstance(c.call("memory.persist", {"path": name}, timeout=60), int)
    (path,) = (home / "memory").rglob(name)  # in the session's own folder (agents/<name>/)
    return {f["fact_id"] for f in json.loads(path.read_text())["facts"]}


def agent(srv: ServerProc, name: str = "a") -> Client:
    c = Client(srv.url)
    c.call("session.auth", {"token": srv.agent_token(name), "agent_id": name})
    return c


def test_disk_full_gives_clear_errors_loses_nothing_and_recovers(tmp_path) -> None:
    with tmpfs(tmp_path / "disk", "3m") as disk:
        home = disk / "home"
        srv = ServerProc(home, "--agent", "a", side_dir=tmp_path)
        try:
            c = agent(srv)
            rid = c.call("runs.start", {"intent": "before the disk fills"})["run_id"]
            acked: list[str] = []
            error = None
            for i in range(1000):
                reply = c.request(
                    "memory.add_fact",
                    {"subject": f"s{i}", "fact_id": f"f{i}", "body": f"body {i} " + "z" * 16_000},
                )
                if "error" in reply:
                    error = reply["error"]
                    break
                acked.append(f"f{i}")
            assert error is not None, "a 3 MiB disk never filled up"
            note("disk full: error for memory.add_fact", error["message"])
            assert well_formed_error(error)
            assert "full" in error["message"] or "space" in error["message"], error
            assert acked, "nothing could be written at all"
            # every other kind of write fails just as clearly, nothing half-written
            turns = c.request(
                "runs.record_turns",
                {"run_id": rid, "turns": [{"prompt": "p", "output": "o" * 200_000}] * 4},
            )
            if "error" in turns:
                assert "full" in turns["error"]["message"] or "space" in turns["error"]["message"]
            persist = c.request("memory.persist", {"path": "full.json"}, timeout=60)
            assert "error" in persist and "space" in persist["error"]["message"].lower(), persist
            assert [p for p in (home / "memory").rglob("*") if p.is_file()] == []  # no partial file
            # reads and the rest of the session still work
            assert c.call("state.set", {"key": "k", "value": 1}) == "ok"
            assert c.call("memory.query", {"query": "s3", "k": 1})[0]["fact_id"] == "f3"
            assert c.call("memory.fact_count") == len(acked)
            # space comes back: writes work again without a restart
            _mount("-o", "remount,size=64m", str(disk))
            assert (
                c.call(
                    "memory.add_fact",
                    {"subject": "after", "body": "room again", "fact_id": "after"},
                )
                == len(acked) + 1
            )
            ids = persisted_ids(c, home, "check.json")
            assert set(acked) | {"after"} == ids
            c.call("runs.record_turns", {"run_id": rid, "turns": [{"prompt": "after"}]})
            c.close()
            assert srv.stop() == 0
            # and a restarted server opens clean stores with every acknowledged fact
            assert integrity(home) == 2
            srv = ServerProc(home, "--agent", "a", side_dir=tmp_path)
            c = agent(srv)
            assert persisted_ids(c, home, "check2.json") == set(acked) | {"after"}
            trace = c.call("runs.get_trace", {"run_id": rid})
            prompts = [r["turn"]["prompt"] for r in trace["records"] if r["record"] == "turn"]
            assert prompts[-1] == "after", prompts
            c.close()
            add("disk: facts checked after disk full", len(acked) + 1)
            add("disk: faults injected (disk full)", 1)
        finally:
            srv.stop()
        assert "Traceback" not in srv.log_text()


def test_data_directory_turned_read_only_under_a_running_server(tmp_path) -> None:
    home = tmp_path / "home"
    srv = ServerProc(home, "--agent", "a", side_dir=tmp_path)
    try:
        c = agent(srv)
        for i in range(20):
            c.call("memory.add_fact", {"subject": f"s{i}", "body": f"b{i}", "fact_id": f"f{i}"})
        c.call("memory.persist", {"path": "before.json"})  # the memory folder exists
        rid = c.call("runs.start", {"intent": "ro"})["run_id"]
        with read_only(home):
            # creating files fails with a clear error and leaves nothing behind
            err = c.request("memory.persist", {"path": "during.json"})["error"]
            assert well_formed_error(err)
            assert "read-only" in err["message"].lower(), err
            assert not err["message"].startswith("internal error"), err
            note("read-only: error for memory.persist", err["message"])
            ns = Client(srv.url)
            err = ns.request("session.auth", {"token": srv.token, "memory_namespace": "fresh"})[
                "error"
            ]
            assert "read-only" in err["message"].lower(), err
            ns.close()
            # the load from an existing file and reads still work
            assert c.call("memory.query", {"query": "s7", "k": 1})[0]["fact_id"] == "f7"
            assert c.call("runs.get_trace", {"run_id": rid})["status"] == "in_progress"
        assert not (home / "memory" / "during.json").exists()
        # writable again: everything works, nothing was lost
        assert c.call("memory.persist", {"path": "after.json"}) == 20
        ns = Client(srv.url)
        assert ns.call("session.auth", {"token": srv.token, "memory_namespace": "fresh"})["ok"]
        assert ns.call("memory.add_fact", {"subject": "x", "body": "y"}) == 1
        ns.close()
        c.close()
        add("disk: faults injected (read-only data directory)", 1)
    finally:
        srv.stop()
    assert integrity(home) == 3  # the agent graph, the namespace graph, runs.sqlite3


def test_first_persist_on_a_read_only_data_directory_is_a_clear_error(tmp_path) -> None:
    home = tmp_path / "home"
    srv = ServerProc(home, "--agent", "a", side_dir=tmp_path)
    try:
        c = agent(srv)
        c.call("memory.add_fact", {"subject": "s", "body": "b"})
        assert not (home / "memory").exists()
        with read_only(home):
            err = c.request("memory.persist", {"path": "x.json"})["error"]
        c.close()
    finally:
        srv.stop()
    assert "read-only" in err["message"].lower(), err
    assert not err["message"].startswith("internal error"), err
    assert "Traceback" not in srv.log_text()


def test_serve_on_a_read_only_data_directory_says_so_clearly(tmp_path) -> None:
    home = tmp_path / "home"
    srv = ServerProc(home, "--agent", "a", side_dir=tmp_path)
    srv.stop()
    with read_only(home):
        proc = subprocess.run(
            [*ServerProc.command(home, tmp_path / "ro-conn.json")],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ServerProc.cwd(),
        )
    assert proc.returncode == 1, proc
    assert proc.stderr.startswith("carnb: could not start the server:"), proc.stderr[-2000:]
    assert "read-only" in proc.stderr.lower() or "unable to open" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]

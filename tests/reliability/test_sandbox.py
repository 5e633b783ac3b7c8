"""``memory.persist`` / ``memory.load`` cannot reach outside ``<home>/memory/`` on a live server:
``..``, absolute paths, symlinked folders and files, dangling and looping links, relative links,
NUL bytes and anything hypothesis composes from those. Outside files are never created, changed
or read; a refused load leaves the graph as it was; no refusal is an internal error."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.conftest import Client
from tests.reliability.harness import add, well_formed_error

pytestmark = pytest.mark.reliability

SECRET = {
    "format": "carnb.memgine/1",
    "facts": [{"fact_id": "secret-1", "subject": "outside", "body": "must never be loaded"}],
}


def tree_digest(root: Path, skip: Path) -> dict[str, str]:
    """Every file under ``root`` but ``skip``, with a hash of its content."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        if Path(dirpath) == skip or skip in Path(dirpath).parents:
            dirnames[:] = []
            continue
        for name in filenames:
            p = Path(dirpath) / name
            if p.is_symlink():
                out[str(p)] = "link:" + os.readlink(p)
            elif p.suffix != ".log":
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


class Sandbox:
    def __init__(self, srv: Any, root: Path) -> None:
        self.srv = srv
        self.root = root  # everything the test can see: home, outside, logs
        self.memory = srv.home / "memory" / "operator"  # a launch-token session's folder
        self.outside = root / "outside"
        self.outside.mkdir()
        (self.outside / "secret.json").write_text(json.dumps(SECRET))
        self.memory.mkdir(parents=True, exist_ok=True)
        links = {
            "link_dir": self.outside,
            "link_file": self.outside / "secret.json",
            "rel": Path("../../../outside"),
            "dang": self.outside / "created-through-a-link.json",
            "loop": Path("loop"),
            "home_up": srv.home,
        }
        for name, target in links.items():
            os.symlink(target, self.memory / name)
        (self.memory / "ok.json").write_text(
            json.dumps(
                {
                    "format": "carnb.memgine/1",
                    "facts": [{"fact_id": "in-1", "subject": "s", "body": "b"}],
                }
            )
        )
        self.c = Client(srv.url)
        self.c.call("session.auth", {"token": srv.token})
        self.c.call("memory.add_fact", {"subject": "mine", "body": "own fact", "fact_id": "own"})
        self.before = tree_digest(root, self.memory)
        self.persisted = self.loaded = self.refused = 0
        self.accepted: list[tuple[str, str]] = []

    def ids(self) -> set[str]:
        return {
            f["fact_id"]
            for f in self.c.call("memory.query", {"query": "outside own s mine b", "k": 50})
        }

    def try_path(self, path: str) -> None:
        count = self.c.call("memory.fact_count")
        for method in ("memory.persist", "memory.load"):
            reply = self.c.request(method, {"path": path}, timeout=30)
            if "error" in reply:
                err = reply["error"]
                assert well_formed_error(err), err
                assert not err["message"].startswith("internal error"), (path, err)
                self.refused += 1
                if method == "memory.load":
                    assert self.c.call("memory.fact_count") == count, (
                        f"refused load changed the graph: {path!r}"
                    )
            elif method == "memory.persist":
                self.persisted += 1
                self.accepted.append((method, path))
            else:
                self.loaded += 1
                self.accepted.append((method, path))
                assert "secret-1" not in self.ids(), (
                    f"load read a file outside the sandbox: {path!r}"
                )
                count = self.c.call("memory.fact_count")
        after = tree_digest(self.root, self.memory)
        assert after == self.before, f"{path!r} touched files outside the sandbox: " + str(
            set(after.items()) ^ set(self.before.items())
        )
        for p in self.memory.rglob("*"):
            if p.is_file() and not p.is_symlink():
                real = p.resolve()
                assert self.memory.resolve() in real.parents, real


@pytest.fixture
def sandbox(start_server: Any, tmp_path: Path) -> Sandbox:
    return Sandbox(start_server(), tmp_path)


def test_named_escapes_are_refused(sandbox: Sandbox) -> None:
    sb = sandbox
    outside = str(sb.outside)
    for path in [
        "../escape.json",
        "../../outside/secret.json",
        "a/../../x.json",
        "./../x.json",
        "/etc/passwd",
        f"{outside}/secret.json",
        f"{outside}/new.json",
        "link_dir/x.json",
        "link_dir/secret.json",
        "link_file",
        "rel/secret.json",
        "rel/new.json",
        "dang",
        "loop",
        "loop/x.json",
        "home_up/runs.sqlite3",
        "home_up/graphs/x.sqlite3",
        "x\x00.json",
        "",
        ".",
        "/",
        str(sb.memory),
        str(sb.memory) + "/../outside/new.json",
    ]:
        sb.try_path(path)
    # only "loop" (a link to itself, inside the sandbox) may be written: the file then replaces
    # the link, still inside memory/
    assert {p for _, p in sb.accepted} <= {"loop"}, sb.accepted
    # the secret is still outside and was never loaded, the dangling target was never created
    assert json.loads((sb.outside / "secret.json").read_text()) == SECRET
    assert not (sb.outside / "created-through-a-link.json").exists()
    # control: ordinary paths inside the sandbox work, absolute ones too when inside
    assert sb.c.call("memory.persist", {"path": "sub/dir/fine.json"}) >= 1
    assert sb.c.call("memory.load", {"path": "ok.json"}) == 1
    assert sb.c.call("memory.persist", {"path": str(sb.memory / "abs.json")}) == 1
    assert (sb.memory / "abs.json").exists() and (sb.memory / "sub" / "dir" / "fine.json").exists()
    add("sandbox: escape attempts refused", sb.refused)


def test_composed_paths_never_leave_the_sandbox(sandbox: Sandbox) -> None:
    sb = sandbox
    parts = st.sampled_from(
        [
            "..",
            ".",
            "a",
            "b.json",
            "link_dir",
            "link_file",
            "rel",
            "dang",
            "loop",
            "home_up",
            "",
            "~",
            "%2e%2e",
            "..%2f",
            "\\..",
            " ..",
            "...",
            str(sb.outside),
            str(sb.memory),
            "x.json",
        ]
    )
    paths = st.lists(parts, min_size=1, max_size=5).map("/".join) | st.text(max_size=40)

    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(paths)
    def check(path: str) -> None:
        sb.try_path(path)

    check()
    assert not (sb.outside / "created-through-a-link.json").exists()
    add("sandbox: composed paths tried (persist+load each)", sb.persisted + sb.loaded + sb.refused)

"""The connection file holds the host token, so writing it must not let
another local user read it, redirect it through a link, or pre-plant the temporary file."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from carnb.errors import CarnbError

pytestmark = pytest.mark.reliability


def test_a_planted_link_at_the_old_temporary_name_gets_no_secret(
    make_runtime: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "run"
    folder.mkdir(mode=0o700)
    stolen = tmp_path / "stolen.json"
    stolen.write_text("")
    (folder / "c.json.tmp").symlink_to(stolen)
    rt = make_runtime(connection_file=folder / "c.json")
    assert rt.host_token not in stolen.read_text()
    info = json.loads((folder / "c.json").read_text())
    assert info["host_token"] == rt.host_token
    assert stat.S_IMODE((folder / "c.json").stat().st_mode) == 0o600
    assert sorted(p.name for p in folder.iterdir()) == ["c.json", "c.json.tmp"]


def test_a_link_at_the_target_is_replaced_not_followed(make_runtime: Any, tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir(mode=0o700)
    stolen = tmp_path / "stolen.json"
    stolen.write_text("")
    (folder / "c.json").symlink_to(stolen)
    rt = make_runtime(connection_file=folder / "c.json")
    assert stolen.read_text() == ""
    assert not (folder / "c.json").is_symlink()
    assert json.loads((folder / "c.json").read_text())["host_token"] == rt.host_token


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o770])
def test_a_folder_others_can_write_is_refused(make_runtime: Any, tmp_path: Path, mode: int) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    os.chmod(folder, mode)
    with pytest.raises(CarnbError, match="other users can write to that folder"):
        make_runtime(connection_file=folder / "c.json")
    assert list(folder.iterdir()) == []


def test_the_default_folder_is_private(make_runtime: Any, tmp_path: Path) -> None:
    rt = make_runtime(home=tmp_path / "h")
    path = rt.connection_file
    assert path is not None and path.parent == tmp_path / "h" / "run"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0

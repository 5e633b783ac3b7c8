"""SQLite files on a network filesystem are refused with a message naming --store."""

from __future__ import annotations

from pathlib import Path

import pytest

from carnb import netfs
from carnb.errors import CarnbError
from carnb.runs import RunStore

MOUNTS = (
    "/dev/sda1 / ext4 rw 0 0\n"
    "server:/export /mnt/team nfs4 rw 0 0\n"
    "/dev/sdb1 /mnt/team/local ext4 rw 0 0\n"
    "gpfs0 /gpfs/my\\040lab gpfs rw 0 0\n"
)


def test_filesystem_type_takes_the_longest_mount_point() -> None:
    assert netfs.filesystem_type(Path("/mnt/team/x/runs.sqlite3"), MOUNTS) == "nfs4"
    assert netfs.filesystem_type(Path("/mnt/team/local/a"), MOUNTS) == "ext4"
    assert netfs.filesystem_type(Path("/mnt/teamwork/a"), MOUNTS) == "ext4"
    assert netfs.filesystem_type(Path("/gpfs/my lab/g.sqlite3"), MOUNTS) == "gpfs"


def test_sqlite_store_on_nfs_is_refused_naming_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "mounts"
    fake.write_text(f"/dev/sda1 / ext4 rw 0 0\nsrv:/x {tmp_path}/team nfs rw 0 0\n")
    monkeypatch.setattr(netfs, "MOUNTS", fake)
    (tmp_path / "team").mkdir()  # the mount point
    with pytest.raises(CarnbError, match=r"network filesystem \(nfs\).*--store postgresql"):
        RunStore(tmp_path / "team" / "home" / "runs.sqlite3")
    assert not (tmp_path / "team" / "home").exists()  # nothing created
    RunStore(tmp_path / "local" / "runs.sqlite3").close()  # a local disk still works

"""Is a path on a network filesystem? SQLite's WAL needs shared memory between the processes
that open a database, which NFS, SMB, GPFS, Lustre and the like do not provide: two kernels on
different hosts can then corrupt a graph or lose writes without any error. carnb refuses to open
its SQLite files there and names the alternative (a PostgreSQL store, ``--store``).

Pure reading of ``/proc/self/mounts`` (Linux); elsewhere nothing is detected.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

NETWORK_TYPES: Final = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "gpfs",
        "lustre",
        "ceph",
        "glusterfs",
        "fuse.glusterfs",
        "fuse.sshfs",
        "fuse.gcsfuse",
        "fuse.s3fs",
        "9p",
        "afs",
        "beegfs",
        "panfs",
        "wekafs",
    }
)
MOUNTS: Final = Path("/proc/self/mounts")


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")


def filesystem_type(path: Path, mounts: str) -> str | None:
    """The type of the filesystem holding ``path`` (its longest mount point), from the text of
    a mounts table; None if no mount point matches."""
    target = os.path.realpath(path)
    best, kind = -1, None
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        point = _unescape(parts[1]).rstrip("/") or "/"
        if (target == point or target.startswith(point.rstrip("/") + "/")) and len(point) > best:
            best, kind = len(point), parts[2]
    return kind


def network_filesystem(path: Path) -> str | None:
    """The network filesystem type holding ``path`` (or its nearest existing parent), or None."""
    try:
        mounts = MOUNTS.read_text()
    except OSError:
        return None
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    kind = filesystem_type(probe, mounts)
    return kind if kind in NETWORK_TYPES else None

"""Writing a secret-bearing file (the connection file) so that no other local user can read,
redirect or pre-plant it.

The folder must be owned by this user (or root) and writable by nobody else; the content goes to
a fresh temporary file created exclusively, 0600 from the start, inside that folder and relative
to a descriptor of it (so no link is followed), and is then renamed over the target.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from carnb.errors import ServerFault

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def write_private_json(path: Path, data: Any) -> None:
    """Atomically replace ``path`` with ``data`` as JSON readable by this user only.

    Raises :class:`CarnbError` when the folder is shared with other users or cannot be used."""
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _refuse_shared_folder(dir_fd, folder)
        tmp = f".{path.name}.{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, _CREATE, 0o600, dir_fd=dir_fd)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=2)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
    finally:
        os.close(dir_fd)


def _refuse_shared_folder(dir_fd: int, folder: Path) -> None:
    info = os.fstat(dir_fd)
    if info.st_uid not in (os.geteuid(), 0):
        raise ServerFault(
            f"refusing to write the connection file in {folder}: the folder belongs to another "
            "user; choose a folder of your own"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ServerFault(
            f"refusing to write the connection file in {folder}: other users can write to that "
            f"folder (mode {stat.S_IMODE(info.st_mode):o}); use a folder only you can write "
            "(chmod go-w)"
        )

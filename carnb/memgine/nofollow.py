"""Opening a folder one name at a time, each relative to the descriptor of the one before and
never through a link, so a folder swapped for a symlink after a path was checked is refused
instead of followed (``memory.persist``/``memory.load`` check their path first and open it later,
in a worker thread)."""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from carnb.errors import PathRejected

_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_folder(folder: Path, *, create: bool, method: str) -> int:
    """A descriptor of the absolute ``folder``, reached from ``/`` without following any link;
    missing folders are created (0700) when ``create``. The caller closes it.

    Raises :class:`PathRejected` when a part of ``folder`` is now a link or a file, and
    ``OSError`` (``FileNotFoundError`` when not ``create``) otherwise."""
    if not folder.is_absolute():
        raise ValueError(f"open_folder needs an absolute path, got {folder}")
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        reached = Path("/")
        for name in folder.parts[1:]:
            reached = reached / name
            child = _open_child(fd, name, create=create, method=method, reached=reached)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_child(parent: int, name: str, *, create: bool, method: str, reached: Path) -> int:
    try:
        return os.open(name, _FOLDER, dir_fd=parent)
    except FileNotFoundError:
        if not create:
            raise
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise link_refused(method, reached) from exc
        raise
    # made by someone else in between: open it all the same (still without following links)
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, 0o700, dir_fd=parent)
    try:
        return os.open(name, _FOLDER, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise link_refused(method, reached) from exc
        raise


def link_refused(method: str, where: Path) -> PathRejected:
    return PathRejected(
        f"{method} refused {where}: it is a symlink or not a folder now (it changed after the "
        "path was checked); nothing was read or written"
    )

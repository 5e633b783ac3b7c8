"""The connection file: what a client on this machine needs to attach to a running server
(its URL, the launch tokens, the agents' tokens), written private (:mod:`carnb.private_file`)
while the server runs and removed when it stops."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from carnb.config import Settings
from carnb.private_file import write_private_json
from carnb.protocol.auth import Credentials


def write_connection_file(
    settings: Settings, credentials: Credentials, url: str, port: int
) -> Path:
    """Write (or rewrite) the connection file of the server at ``url``; returns its path
    (``Settings.connection_file``, else ``<home>/run/carnb-<pid>-<port>.json``)."""
    path = settings.connection_file
    if path is None:
        path = settings.home / "run" / f"carnb-{os.getpid()}-{port}.json"
    path = Path(path).expanduser()
    info = {
        "url": url,
        "token": credentials.token if credentials.auth_enabled else None,
        "host_token": credentials.host_token,
        "auth_enabled": credentials.auth_enabled,
        "pid": os.getpid(),
        "home": str(settings.home),
        "agents": credentials.agents.as_mapping(),
    }
    write_private_json(path, info)
    return path


def remove_connection_file(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

"""The store setting (pure): where a carnb server keeps runs, host events and agent identities.

Unset (``None``, ``""`` or ``"sqlite"``): SQLite files under the data directory, as always.
``postgresql://user:password@host:port/dbname?options`` (or ``postgres://``): one PostgreSQL
database shared by every server given the same setting. :meth:`StoreSetting.display` is what
may be shown or logged: the password is never part of it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from carnb.errors import InvalidParams

ENV_VAR: Final = "CARNB_STORE"
SQLITE: Final = "sqlite"
_SCHEMES: Final = ("postgresql", "postgres")


@dataclass(frozen=True)
class StoreSetting:
    """``kind`` is ``"sqlite"`` or ``"postgresql"``; ``dsn`` the connection URL (secret)."""

    kind: str
    dsn: str = ""

    @property
    def is_postgresql(self) -> bool:
        return self.kind == "postgresql"

    def display(self) -> str:
        """The setting without its password, e.g. ``postgresql://carnb@db:5432/team``."""
        if not self.is_postgresql:
            return "sqlite (files under the data directory)"
        parts = urlsplit(self.dsn)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = host + (f":{parts.port}" if parts.port else "")
        if parts.username:
            netloc = f"{parts.username}@{netloc}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    def __repr__(self) -> str:  # never the password, also not in tracebacks
        return f"StoreSetting({self.display()!r})"


def parse_store(value: str | None) -> StoreSetting:
    """The setting for ``value``; a value that is neither SQLite nor a PostgreSQL URL is the
    caller's error (:class:`~carnb.errors.InvalidParams`)."""
    text = (value or "").strip()
    if not text or text.lower() == SQLITE:
        return StoreSetting(SQLITE)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme not in _SCHEMES:
        raise InvalidParams(
            "store must be unset, 'sqlite', or a PostgreSQL URL such as "
            "postgresql://user@host:5432/dbname (got a value starting "
            f"{text.split(':', 1)[0][:20]!r})"
        )
    try:
        urlsplit(text).port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise InvalidParams(f"store URL has a bad port: {exc}") from exc
    return StoreSetting("postgresql", text)


def from_environment() -> str | None:
    """``$CARNB_STORE`` or None."""
    return os.environ.get(ENV_VAR) or None

"""The JSON files of ``memory.persist`` and ``memory.load``: writing atomically, reading leniently.

Written: ``{"format": "carnb.memgine/1", "facts": [...]}``, one fact per line,
to a temporary file in the target folder, fsync'ed, then renamed over the target (and the folder
fsync'ed), so a reader sees the old file or the new one, never half of one. Both directions open
every folder on the way relative to the one before and never through a link (``nofollow``).

Read (the whole file is parsed and checked before the graph is touched):
- carnb's format (the ``format`` tag must be ``carnb.memgine/1`` if present; other keys, such as
  ``edges`` a later version may add, are ignored: links are rebuilt from subjects and order),
- an object ``{"facts": [...]}`` or a bare JSON array of facts,
- rows naming ``subject``/``body`` or ``key``/``value``; ``fact_id`` or ``id`` optional (rows
  without one become ``loaded-<n>``); the peer's rows ``{subject, body, kind, content_type}``.
A ``value`` that is not a string is stored as its compact JSON text. Any other shape is refused
with an error that names the row and field.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import secrets
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from carnb.errors import CallerFault, InvalidParams, NotFound, ServerFault
from carnb.memgine import nofollow, validate

log = logging.getLogger("carnb.memgine")

FORMAT = "carnb.memgine/1"
_FORMAT_FAMILY = "carnb.memgine/"
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(slots=True)
class LoadedFact:
    fact_id: str
    subject: str
    body: str
    kind: str
    tags: list[str]
    source: str
    confidence: float | None
    created_at: float | None
    superseded_by: str | None = None  # id of a later fact in the same file
    provenance: dict[str, Any] | None = None  # what the file says about who wrote it


def write_atomic(path: Path, facts: Iterable[dict[str, Any]]) -> int:
    """Write a graph file at the absolute, symlink-free ``path`` atomically; returns the number of
    facts written. Every folder on the way is opened without following links, the temporary file
    is created exclusively (0600) beside the target, and a link at the target is replaced, not
    followed."""
    path = Path(os.path.abspath(path))
    folder = path.parent
    try:
        dir_fd = nofollow.open_folder(folder, create=True, method="memory.persist")
    except OSError as exc:
        raise ServerFault(f"memory.persist: cannot create folder {folder}: {exc.strerror}") from exc
    try:
        return _write_in(dir_fd, path, facts)
    finally:
        os.close(dir_fd)


def _write_in(dir_fd: int, path: Path, facts: Iterable[dict[str, Any]]) -> int:
    tmp = f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    count = 0
    try:
        if _is_folder(dir_fd, path.name):
            raise CallerFault(
                f"memory.persist: {path} is a directory; give a file name such as mem.json"
            )
        fd = os.open(tmp, _CREATE, 0o600, dir_fd=dir_fd)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(f'{{"format": "{FORMAT}",\n "facts": [')
            for line in _with_separators(facts):
                out.write(line)
                count += 1
            out.write("\n ]}\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        _fsync_dir(dir_fd)
    except OSError as exc:
        _discard(dir_fd, tmp)
        raise ServerFault(f"memory.persist: cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        _discard(dir_fd, tmp)
        raise
    return count


def _is_folder(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


def _discard(dir_fd: int, tmp: str) -> None:
    try:
        os.unlink(tmp, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except OSError as exc:  # e.g. the name was too long to create in the first place
        log.debug("memory.persist: no temporary file to remove (%s): %s", tmp, exc)


def _with_separators(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    first = True
    for row in rows:
        text = json.dumps(row, ensure_ascii=False, separators=(",", ":"))
        yield ("\n  " if first else ",\n  ") + text
        first = False


def _fsync_dir(dir_fd: int) -> None:
    # some file systems refuse fsync on a directory; the rename itself is done
    with contextlib.suppress(OSError):
        os.fsync(dir_fd)


def read(path: Path) -> list[LoadedFact]:
    """Read and check the graph file at the absolute, symlink-free ``path`` (opened without
    following links); raises without side effects when it cannot be loaded."""
    path = Path(os.path.abspath(path))
    raw = _read_bytes(path)
    try:
        data = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise CallerFault(
            f"memory.load: {path} is not UTF-8 text; the graph was left unchanged"
        ) from exc
    except json.JSONDecodeError as exc:
        raise CallerFault(
            f"memory.load: {path} is not valid JSON (line {exc.lineno} column {exc.colno}: "
            f"{exc.msg}); the graph was left unchanged"
        ) from exc
    try:
        return parse(data)
    except InvalidParams as exc:
        detail = exc.message.removeprefix("invalid params: ")
        raise CallerFault(f"memory.load: {path}: {detail}; the graph was left unchanged") from exc


def _read_bytes(path: Path) -> bytes:
    try:
        dir_fd = nofollow.open_folder(path.parent, create=False, method="memory.load")
        try:
            fd = os.open(path.name, _READ, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise nofollow.link_refused("memory.load", path) from exc
            raise
        finally:
            os.close(dir_fd)
        with os.fdopen(fd, "rb") as src:
            kind = os.fstat(src.fileno()).st_mode
            if stat.S_ISDIR(kind):
                raise CallerFault(f"memory.load: {path} is a directory, not a JSON file")
            if not stat.S_ISREG(kind):
                raise CallerFault(f"memory.load: {path} is not a regular file")
            return src.read()
    except FileNotFoundError as exc:
        raise NotFound(f"memory.load: no file at {path}; the graph was left unchanged") from exc
    except OSError as exc:
        raise ServerFault(f"memory.load: cannot read {path}: {exc.strerror or exc}") from exc


def parse(data: Any) -> list[LoadedFact]:
    """Turn decoded JSON into facts; raises InvalidParams describing the problem."""
    if isinstance(data, dict):
        tag = data.get("format")
        if tag is not None and (not isinstance(tag, str) or not tag.startswith(_FORMAT_FAMILY)):
            raise InvalidParams(f"unknown format {tag!r} (carnb reads {FORMAT!r})")
        if isinstance(tag, str) and tag != FORMAT:
            raise InvalidParams(f"format {tag!r} is newer than this carnb reads ({FORMAT!r})")
        rows = data.get("facts")
        if not isinstance(rows, list):
            raise InvalidParams('expected a JSON array of facts or an object with a "facts" array')
    elif isinstance(data, list):
        rows = data
    else:
        raise InvalidParams('expected a JSON array of facts or an object with a "facts" array')
    return _facts(rows)


def _facts(rows: list[Any]) -> list[LoadedFact]:
    out: list[LoadedFact] = []
    by_id: dict[str, LoadedFact] = {}
    unnamed: list[LoadedFact] = []
    for index, row in enumerate(rows):
        fact = _fact(row, index)
        if fact.fact_id:
            known = by_id.get(fact.fact_id)
            if known is not None:
                if (known.subject, known.body) != (fact.subject, fact.body):
                    raise InvalidParams(
                        f"facts[{index}] reuses id {fact.fact_id!r} with different content"
                    )
                continue
            by_id[fact.fact_id] = fact
        else:
            unnamed.append(fact)
        out.append(fact)
    counter = 0
    for fact in unnamed:
        counter += 1
        while f"loaded-{counter}" in by_id:
            counter += 1
        fact.fact_id = f"loaded-{counter}"
        by_id[fact.fact_id] = fact
    _check_supersession(out)
    return out


def _check_supersession(facts: list[LoadedFact]) -> None:
    """Each ``superseded_by`` names a fact that comes later in the file (as persist writes
    them: a fact is superseded by a newer one), so a loaded chain never loops."""
    position = {fact.fact_id: index for index, fact in enumerate(facts)}
    for index, fact in enumerate(facts):
        if fact.superseded_by is None:
            continue
        later = position.get(fact.superseded_by)
        if later is None or later <= index:
            raise InvalidParams(
                f"fact {fact.fact_id!r} is superseded_by {fact.superseded_by!r}, which is not a "
                "later fact of the file"
            )


def _fact(row: Any, index: int) -> LoadedFact:
    where = f"facts[{index}]"
    if not isinstance(row, dict):
        raise InvalidParams(f"{where} must be an object with subject and body (or key and value)")
    subject = _pick(row, ("subject", "key"), where)
    body = _pick(row, ("body", "value"), where)
    if isinstance(subject, int | float) and not isinstance(subject, bool):
        subject = str(subject)
    if not isinstance(body, str):
        body = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    fact_id = row.get("fact_id", row.get("id"))
    if isinstance(fact_id, int) and not isinstance(fact_id, bool):
        fact_id = str(fact_id)
    superseded_by = row.get("superseded_by")
    created = row.get("created_at")
    if isinstance(created, bool) or not isinstance(created, int | float):
        created = None
    try:
        return LoadedFact(
            fact_id=validate.name(fact_id, "fact_id") if fact_id not in (None, "") else "",
            subject=validate.subject(subject),
            body=validate.body(body),
            kind=validate.name(row.get("kind") or "pattern", "kind"),
            tags=validate.tags(row.get("tags")),
            source=validate.name(row.get("source") or "user", "source"),
            confidence=validate.confidence(row.get("confidence")),
            created_at=float(created) if created is not None else None,
            superseded_by=validate.optional_name(superseded_by, "superseded_by"),
            provenance=row["provenance"] if isinstance(row.get("provenance"), dict) else None,
        )
    except InvalidParams as exc:
        raise InvalidParams(f"{where}: {exc.message.removeprefix('invalid params: ')}") from exc


def _pick(row: dict[str, Any], names: tuple[str, str], where: str) -> Any:
    for key in names:
        if key in row and row[key] is not None:
            return row[key]
    raise InvalidParams(f"{where} has no {names[0]} (or {names[1]})")

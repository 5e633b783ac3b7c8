"""The memory part of carnb's data directory: graph files, their names and the persist sandbox.

Layout under ``home`` (``$CARNB_HOME``, default ``~/.carnb``)::

    graphs/agents/<graph_file_name(agent_id)>.sqlite3       one persistent graph per agent
    graphs/namespaces/<graph_file_name(namespace)>.sqlite3  one per memory namespace
    memory/                                                  the persist/load sandbox (host)
    memory/agents/<graph_file_name(agent_id)>/               an agent session's part of it
    memory/namespaces/<graph_file_name(namespace)>/          a namespace-bound session's part
    memory/operator/                                         an unbound launch-token session's

Graph files live outside ``memory/`` so ``memory.persist``/``memory.load`` can never overwrite or
read a live database. A session's persist/load paths are relative to its own part of ``memory/``
(see :meth:`MemoryHome.user_folder`); only the host reaches every part.
:class:`MemoryHome` caches one :class:`Memgine` per agent and namespace
(the same object for the same name, shared by every session bound to it).

With a :class:`GraphStore` (a team's PostgreSQL store), agent and namespace graphs live there
instead of under ``graphs/`` (ephemeral graphs stay in memory, ``memory/`` stays the sandbox);
such graphs hold no files, so the bounds below do not apply to them.

Open graphs are bounded: each holds about four file descriptors and a checkpoint
thread. At most ``MAX_OPEN_GRAPHS`` are open, and a graph opens only while at least
``SPARE_FDS`` descriptors stay free for everything else (sockets, the run store, files); to
make room the least recently used graph that no call is using is closed, and it opens again on
its next use. When no open graph is idle, the new one is refused with :class:`GraphLimit`.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import resource
import threading
import time
import weakref
from pathlib import Path
from typing import Protocol

from carnb.errors import GraphLimit, InvalidParams, PathRejected, ServerFault
from carnb.memgine import validate
from carnb.memgine.backend import GraphBackend
from carnb.memgine.engine import Memgine

_PASS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")
# Encoded names longer than this are cut and end in "~" + SHA-256 (file names stay < 255 bytes).
MAX_ENCODED = 200
GRAPH_SUFFIX = ".sqlite3"
# Bounds on the open file graphs (the module docstring): a graph needs up to GRAPH_FDS
# descriptors (database, WAL, shared memory; its checkpoint thread's connection).
MAX_OPEN_GRAPHS = 64
SPARE_FDS = 32
GRAPH_FDS = 6
# How long a call on a closed graph waits (in a worker thread) for an open one to become idle.
ADMIT_WAIT_S = 5.0


class GraphStore(Protocol):
    """Where agent and namespace graphs live instead of files (a PostgreSQL store)."""

    def backend(self, kind: str, name: str) -> GraphBackend: ...
    def names(self, kind: str) -> list[str]:
        """The names of the stored graphs of ``kind`` (``agents``, ``namespaces``)."""


class MemoryOwner(Protocol):
    """Who asks for a persist/load path (a :class:`~carnb.protocol.session.ClientSession`)."""

    @property
    def is_host(self) -> bool: ...
    @property
    def agent_id(self) -> str | None: ...
    @property
    def memory_namespace(self) -> str | None: ...


def graph_file_name(name: str) -> str:
    """Injective file-system name for a graph name: lowercase percent-encoding of its UTF-8,
    only ``a-z 0-9 - _ .`` pass (``"MyApp/1"`` -> ``"%4dy%41pp%2f1"``).

    Names made only of dots are fully encoded (``".."`` -> ``"%2e%2e"``), so no name is special
    to the file system; very long names are cut and end in ``~`` + SHA-256 of the name (``~`` is
    never produced otherwise, so they cannot meet a short name)."""
    if not isinstance(name, str) or not name:
        raise InvalidParams("graph name must be a non-empty string")
    try:
        data = name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidParams("graph name is not valid Unicode (lone surrogate)") from exc
    out = "".join(chr(b) if chr(b) in _PASS else f"%{b:02x}" for b in data)
    if out.strip(".") == "":
        out = "%2e" * len(out)
    if len(out) > MAX_ENCODED:
        out = out[: MAX_ENCODED - 65] + "~" + hashlib.sha256(data).hexdigest()
    return out


class MemoryHome:
    """Owns the memory layout of one data directory; thread-safe."""

    @property
    def remote(self) -> bool:
        """Whether agent and namespace graphs live in the team store (PostgreSQL)."""
        return self.store is not None

    def __init__(self, home: str | os.PathLike[str], graphs: GraphStore | None = None) -> None:
        self.home = Path(home).expanduser().absolute()
        # Agent and namespace graphs in a store (PostgreSQL) instead of files under graphs/.
        self.store = graphs
        self.memory_dir = self.home / "memory"
        self.graphs_dir = self.home / "graphs"
        self._lock = threading.Lock()
        # Every graph someone holds (sessions keep them), and the open ones among them.
        self._graphs: weakref.WeakValueDictionary[tuple[str, str], Memgine] = (
            weakref.WeakValueDictionary()
        )
        self._open: set[Memgine] = set()

    def start(self) -> None:
        """Create the folders (idempotent; graphs and the sandbox also create them lazily)."""
        for folder in (self.memory_dir, self.graphs_dir / "agents", self.graphs_dir / "namespaces"):
            folder.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        """Close every cached graph (idempotent); later calls open them again."""
        with self._lock:
            graphs = self._open | set(self._graphs.values())  # closed while idle too: for good
            self._graphs.clear()
            self._open.clear()
        for graph in graphs:
            graph.close()

    # -- graphs ------------------------------------------------------------------------------

    def agent_graph_path(self, agent_id: str) -> Path:
        name = validate.name(agent_id, "agent_id")
        return self.graphs_dir / "agents" / (graph_file_name(name) + GRAPH_SUFFIX)

    def namespace_graph_path(self, namespace: str) -> Path:
        name = validate.name(namespace, "memory_namespace")
        return self.graphs_dir / "namespaces" / (graph_file_name(name) + GRAPH_SUFFIX)

    def agent_graph(self, agent_id: str) -> Memgine:
        """The agent's persistent graph (the same object for the same id until :meth:`close`)."""
        path = self.agent_graph_path(agent_id)  # validates the name
        return self._graph(("agents", agent_id), path)

    def namespace_graph(self, namespace: str) -> Memgine:
        """The namespace's persistent graph (cached like :meth:`agent_graph`)."""
        path = self.namespace_graph_path(namespace)
        return self._graph(("namespaces", namespace), path)

    def cached_graph(self, key: tuple[str, str]) -> Memgine | None:
        """The graph someone holds for ``key`` (``("agents", id)``, ``("namespaces", ns)``)."""
        with self._lock:
            return self._graphs.get(key)

    def ephemeral(self) -> Memgine:
        """A new in-memory graph (a session's own; not cached)."""
        return Memgine(None)

    def _graph(self, key: tuple[str, str], path: Path) -> Memgine:
        with self._lock:
            graph = self._graphs.get(key)
            if graph is not None:
                return graph  # closed while idle (or by close()): opens again on use
            if self.store is not None:
                graph = Memgine(backend=self.store.backend(*key))
                self._graphs[key] = graph
                return graph
            label = f"{key[0][:-1]} {key[1]!r}"  # "namespace 'x'", for errors
            self._make_room(label)
            graph = Memgine(path)
            graph.admit = functools.partial(self._admit, label)
            self._graphs[key] = graph
            self._open.add(graph)
            return graph

    @property
    def open_graphs(self) -> int:
        """File graphs open now (each holds a connection and a checkpoint thread)."""
        return len(self._open)

    def _admit(self, label: str, graph: Memgine) -> None:
        """Called by ``graph`` (holding its own lock) to open again. In a worker
        thread, waits up to ``ADMIT_WAIT_S`` for another graph to become idle; on an event
        loop's thread it never waits."""
        deadline = time.monotonic() + (0 if _on_event_loop() else ADMIT_WAIT_S)
        while True:
            with self._lock:
                self._open.discard(graph)
                try:
                    self._make_room(label)
                except GraphLimit:
                    if time.monotonic() >= deadline:
                        raise
                else:
                    graph.start()  # inside the lock: the descriptors counted are the ones used
                    self._open.add(graph)
                    return
            time.sleep(0.02)

    def _make_room(self, label: str) -> None:
        """Close idle graphs, least recently used first, until one more may open; raise
        :class:`GraphLimit` naming ``label`` when the open ones are all in use. Holds
        ``self._lock``; never waits for a graph's lock (see :meth:`Memgine.close_if_idle`)."""
        self._open -= {g for g in self._open if g.closed}  # closed by close() meanwhile
        candidates = sorted(self._open, key=lambda g: g.last_used)
        while True:
            spare = spare_descriptors()
            crowded = len(self._open) >= MAX_OPEN_GRAPHS
            if not crowded and (spare is None or spare >= SPARE_FDS + GRAPH_FDS):
                return
            while candidates and not candidates[0].close_if_idle():
                candidates.pop(0)
            if not candidates:
                break
            self._open.discard(candidates.pop(0))
        if crowded:
            why = f"all {MAX_OPEN_GRAPHS} open memory graphs are in use"
        else:
            why = (
                f"only {spare} file descriptors are left (limit {descriptor_limit()}) and no "
                "open memory graph is idle"
            )
        raise GraphLimit(
            f"memory graph of {label} cannot be opened: {why}; retry when other calls have "
            "finished, close connections, or raise the process's open-file limit (ulimit -n)"
        )

    # -- sandbox -----------------------------------------------------------------------------

    def user_folder(self, session: MemoryOwner | None = None) -> Path:
        """The folder a session's persist/load paths are relative to: all of ``memory/`` for
        the host (and for ``None``, the notebook's own calls), else the part of the graph the
        session works on: its namespace's, its agent's, or ``operator/`` for an unbound
        launch-token session."""
        if session is None or session.is_host:
            return self.memory_dir
        if session.memory_namespace is not None:
            return self.memory_dir / "namespaces" / graph_file_name(session.memory_namespace)
        if session.agent_id is not None:
            return self.memory_dir / "agents" / graph_file_name(session.agent_id)
        return self.memory_dir / "operator"

    def resolve_user_path(
        self, path: str, *, method: str, session: MemoryOwner | None = None
    ) -> Path:
        """The absolute, symlink-free path for a persist/load ``path`` inside the session's
        :meth:`user_folder` (the whole ``memory/`` folder when ``session`` is ``None``).

        Refused (:class:`PathRejected`, nothing created): ``..`` parts, absolute paths outside
        the folder, paths leaving it through a symlink, and the folder itself. The path is
        checked now and opened later: :mod:`carnb.memgine.interchange` opens it without
        following links, so a folder swapped for a symlink in between is refused too."""
        if path is None:
            raise InvalidParams("path is required (a file name under the memory folder)")
        if not isinstance(path, str) or not path.strip():
            raise InvalidParams(
                "path must be a non-empty string (a file name under the memory folder)"
            )
        folder = self.user_folder(session)

        def reject(why: str) -> PathRejected:
            return PathRejected(
                f"{method} rejected path {path!r}: {why}; paths are relative to {folder}"
            )

        if "\x00" in path:
            raise reject("it contains a NUL character")
        try:
            os.fsencode(path)
        except UnicodeEncodeError as exc:
            raise InvalidParams("path is not valid Unicode (it holds a lone surrogate)") from exc
        given = Path(path)
        if ".." in given.parts:
            raise reject("'..' is not allowed")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ServerFault(
                f"{method}: cannot create the memory folder {folder}: "
                f"{exc.strerror or exc}; make the carnb data directory writable"
            ) from exc
        root = Path(os.path.realpath(folder))
        if root != Path(os.path.realpath(self.memory_dir)) / folder.relative_to(self.memory_dir):
            raise reject("the folder itself leads elsewhere through a symlink")
        lexical = Path(os.path.normpath(given if given.is_absolute() else folder / given))
        if not _inside(lexical, folder) and not _inside(lexical, root):
            raise reject("absolute paths must lie inside the memory folder")
        real = Path(os.path.realpath(lexical))
        if not _inside(real, root):
            raise reject("it leads outside the memory folder through a symlink")
        if real == root:
            raise reject("it names the memory folder itself, not a file")
        return real


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def descriptor_limit() -> int | None:
    """This process's open-file limit (soft), None when unlimited."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else int(soft)


def spare_descriptors() -> int | None:
    """How many more files this process may open, None when unknown or unlimited (counts
    ``/proc/self/fd``, about a millisecond at a thousand open files)."""
    limit = descriptor_limit()
    if limit is None:
        return None
    try:
        return limit - len(os.listdir("/proc/self/fd"))
    except OSError:
        return None

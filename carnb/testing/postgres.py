"""A throw-away PostgreSQL server from the machine's own binaries, for tests, benchmarks and
demonstrations (``notebooks/07-team.ipynb``); never for data anyone keeps.

:class:`TempPostgres` runs ``initdb`` into a fresh temporary folder, starts ``postgres`` on
127.0.0.1 and a free port (trust authentication, loopback only, no Unix socket outside that
folder) and removes everything on :meth:`TempPostgres.stop`. PostgreSQL refuses to run as root,
so as root the folder is given to ``nobody`` and every server command runs as that user
(``runuser``). Binaries: ``CARNB_PG_BIN``, else the newest ``/usr/lib/postgresql/*/bin``
(``tools/ensure-postgresql`` installs Debian's package where missing).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

UNPRIVILEGED_USER = "nobody"


def find_bindir() -> Path | None:
    """PostgreSQL's server binaries: $CARNB_PG_BIN, else Debian's /usr/lib/postgresql/N/bin
    (newest first), else the folder of an ``initdb`` on PATH (e.g. conda's postgresql)."""
    env = os.environ.get("CARNB_PG_BIN")
    candidates = [env] if env else []
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent))
    for c in candidates:
        if c and (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TempPostgres:
    """One PostgreSQL server in a temporary folder; ``dsn(dbname)`` connects to it."""

    def __init__(self, bindir: Path | None = None, *, user: str = "carnb") -> None:
        found = bindir or find_bindir()
        if found is None:
            raise RuntimeError(
                "PostgreSQL binaries not found: run tools/ensure-postgresql (or apt-get install "
                "postgresql), or set CARNB_PG_BIN to the folder holding initdb"
            )
        self.bindir = found
        self.user = user
        self.port = 0
        # As root the server runs as nobody, who must reach the folder: /tmp, not $TMPDIR.
        tmp = "/tmp" if os.geteuid() == 0 else None
        self.root = Path(tempfile.mkdtemp(prefix="carnb-pg-", dir=tmp))
        self.datadir = self.root / "data"
        self.logfile = self.root / "postgres.log"
        self._as_root = os.geteuid() == 0

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> TempPostgres:
        if self._as_root:
            pw = pwd.getpwnam(UNPRIVILEGED_USER)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self.root.chmod(0o700)
        self._run(
            "initdb",
            "-D",
            str(self.datadir),
            "-U",
            self.user,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-instructions",
        )
        self.port = free_port()
        self._pg_ctl_start()
        return self

    def _pg_ctl_start(self) -> None:
        opts = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=on -c max_connections=200"
        )
        self._run(
            "pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-w", "-o", opts, "start"
        )

    def stop_server(self, mode: str = "fast") -> None:
        """Stop the server but keep its data (``start_again`` brings it back, same port)."""
        self._run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "stop")

    def start_again(self) -> None:
        self._pg_ctl_start()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            if (self.datadir / "postmaster.pid").exists():
                self.stop_server("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> TempPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- use ------------------------------------------------------------------------------
    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def sql(self, statement: str, dbname: str = "postgres") -> None:
        """Run one statement outside a transaction (CREATE DATABASE, ...)."""
        import psycopg

        with psycopg.connect(self.dsn(dbname), autocommit=True) as conn:
            conn.execute(statement)

    def create_database(self, name: str, template: str | None = None) -> str:
        tmpl = f" TEMPLATE {template}" if template else ""
        for _ in range(50):  # a template in use by another connection is refused for a moment
            try:
                self.sql(f'CREATE DATABASE "{name}"{tmpl}')
                return self.dsn(name)
            except Exception as exc:
                if "being accessed by other users" not in str(exc):
                    raise
                time.sleep(0.1)
        raise RuntimeError(f"template {template} stayed busy")

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bindir / tool), *args]
        if self._as_root:
            cmd = ["runuser", "-u", UNPRIVILEGED_USER, "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=self.root, timeout=120)
        if proc.returncode != 0:
            log = self.logfile.read_text(errors="replace")[-2000:] if self.logfile.exists() else ""
            raise RuntimeError(f"{tool} failed ({proc.returncode}): {proc.stderr[-2000:]}\n{log}")

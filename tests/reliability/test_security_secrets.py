"""Secrets of a live `python -m carnb serve`: the launch token, the host token and agent tokens
never appear in its logs (even at DEBUG), its stdout, error messages, or any reply but the one
that hands a minted agent token to the host; the connection file is private (0600 in a 0700
folder, even under umask 000) and another local user cannot read it."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from typing import Any

import pytest

from tests.conftest import Client
from tests.reliability.harness import REPO, add

pytestmark = pytest.mark.reliability


def secrets_of(srv: Any) -> dict[str, str]:
    out = {"token": srv.token, "host_token": srv.host_token}
    out.update({f"agent:{k}": v for k, v in srv.info["agents"].items()})
    return out


def leaks(text: str, secrets: dict[str, str]) -> list[str]:
    """Names of secrets found in ``text``, whole or as a 12-character piece."""
    found = []
    for name, value in secrets.items():
        pieces = {value} | {value[i : i + 12] for i in range(0, len(value) - 11, 6)}
        if any(p in text for p in pieces):
            found.append(name)
    return found


def test_tokens_never_appear_in_logs_output_replies_or_errors(start_server) -> None:
    srv = start_server("--agent", "alice", log_level="DEBUG")
    replies: list[dict[str, Any]] = []

    def keep(c: Client, method: str, params: Any = None) -> dict[str, Any]:
        reply = c.request(method, params)
        replies.append(reply)
        return reply

    secret = secrets_of(srv)
    # every kind of authentication, right and wrong
    host = Client(srv.url)
    keep(host, "session.auth", {"host_token": secret["host_token"][:-1] + "x"})
    keep(host, "session.auth", {"host_token": secret["host_token"]})
    keep(host, "server.handshake", {"protocol_version": 3})
    keep(host, "host.subscribe")
    minted = host.call("agents.register", {"name": "carol"})  # the one reply that carries a token
    secret["agent:carol"] = minted["token"]
    plain = Client(srv.url)
    keep(plain, "session.auth", {"token": secret["token"].upper()})
    keep(plain, "session.auth", {"token": secret["agent:alice"]})  # an agent token as launch token
    keep(plain, "session.auth", {"token": secret["token"], "memory_namespace": "n"})
    alice = Client(srv.url)
    keep(alice, "session.auth", {"token": secret["token"], "agent_id": "alice"})  # wrong token
    keep(alice, "session.auth", {"token": secret["agent:carol"], "agent_id": "alice"})
    keep(alice, "session.auth", {"token": secret["agent:alice"], "agent_id": "alice"})
    carol = Client(srv.url)
    keep(carol, "session.auth", {"token": secret["agent:carol"], "agent_id": "carol"})
    # the rest of the surface, including failures that echo what they were given
    for c in (plain, alice, carol, host):
        for method, params in [
            ("capabilities.list", None),
            ("server.schema", None),
            ("agents.list", None),
            ("state.set", {"key": "k", "value": 1}),
            ("state.snapshot", None),
            ("memory.add_fact", {"subject": "s", "body": "b"}),
            ("memory.query", {"query": "s"}),
            ("memory.persist", {"path": "../x"}),
            ("memory.load", {"path": "missing.json"}),
            ("runs.start", {"intent": "i", "agent_name": "n"}),
            ("runs.list", {"agent_id": "alice"}),
            ("host.events", {"limit": 1000}),
            ("no.such", {}),
            ("state.get", [1]),
        ]:
            keep(c, method, params)
    unauth = Client(srv.url)
    keep(unauth, "agents.list")
    for c in (host, plain, alice, carol):
        replies.extend(c.notifications)  # host.event notifications too
        c.close()
    unauth.close()
    assert srv.stop() == 0
    log = srv.log_text()
    assert (
        "closed (code" in log
    )  # carnb's own DEBUG lines are there: the scan below means something
    add("security: replies and notifications scanned for secrets", len(replies))
    assert leaks(log, secret) == [], "secrets in the server log"
    assert leaks("\n".join(srv.stdout_lines), secret) == []
    assert leaks(json.dumps(replies), secret) == [], "secrets in replies or error messages"


def test_the_connection_file_is_private_even_under_umask_000() -> None:
    # A world-traversable parent (tmp_path is not), so file and folder modes are what protects.
    parent = tempfile.mkdtemp(prefix="carnb-rel-", dir="/tmp")
    os.chmod(parent, 0o755)
    home = os.path.join(parent, "home")  # created by carnb itself
    proc = subprocess.Popen(
        [sys.executable, "-m", "carnb", "serve", "--home", home],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
        preexec_fn=lambda: os.umask(0),
    )
    conn = ""
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("carnb serving on ")
        conn = proc.stdout.readline().strip().removeprefix("connection file: ")
        assert os.path.dirname(os.path.dirname(conn)) == home  # the default place: home/run/
        assert stat.S_IMODE(os.stat(conn).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(conn)).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(home).st_mode) == 0o700
        with open(conn) as fh:
            info = json.load(fh)
        assert info["token"] and info["host_token"]
        if os.geteuid() == 0 and shutil.which("runuser"):
            # control: another user can reach files in the parent folder ...
            public = os.path.join(parent, "public.txt")
            with open(public, "w") as fh:
                fh.write("visible")
            os.chmod(public, 0o644)
            assert as_nobody("cat", public).stdout == "visible"
            # ... but not the connection file, nor list the data directory
            other = as_nobody("cat", conn)
            assert other.returncode != 0 and info["token"] not in other.stdout
            assert as_nobody("ls", home).returncode != 0
            add("security: other-user reads of the connection file refused", 1)
    finally:
        proc.terminate()
        proc.wait(30)
        exists_after = bool(conn) and os.path.exists(conn)
        shutil.rmtree(parent, ignore_errors=True)
    assert not exists_after  # removed at shutdown


def as_nobody(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", "nobody", "--", *cmd], capture_output=True, text=True)

"""A client that keeps Nagle's algorithm on (the official client does) and answers two parallel
``tools.execute`` requests back to back must not wait for a delayed TCP ACK of its first answer:
the server acknowledges at once every frame it does not answer at once
(``carnb/server/quickack.py``)."""

from __future__ import annotations

import socket
import statistics
import time

import pytest

from tests.conftest import Client
from tests.server.proposing import action, proposal

# Linux delays an ACK by at least 40 ms (TCP_DELACK_MIN); with the ACK sent at once the
# proposal takes about a millisecond here. The limit sits far from both.
STALL_FREE_MS = 20.0

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "TCP_QUICKACK"), reason="delayed ACKs are controlled this way on Linux"
)


def nagle_client(connect_client) -> Client:
    c: Client = connect_client()
    sock = c.ws.socket
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
    c.call("tools.register", [{"name": "echo"}])
    return c


def submit_answering_both_at_once(c: Client, rid: int) -> dict:
    """Submit two parallel tool calls; once both tools.execute requests are in, answer them in
    two frames sent back to back (as a client whose handler answers at once does)."""
    body = proposal(action("a"), action("b"))
    c.send({"jsonrpc": "2.0", "id": rid, "method": "proposal.submit", "params": {"proposal": body}})
    pending: list[str] = []
    while True:
        msg = c.recv()
        if msg.get("method") == "tools.execute":
            pending.append(msg["id"])
            if len(pending) == 2:
                for call_id in pending:
                    c.send({"jsonrpc": "2.0", "id": call_id, "result": None})
        elif msg.get("id") == rid:
            return msg


def test_two_parallel_tool_answers_from_a_nagle_client_are_not_held_back(connect_client) -> None:
    c = nagle_client(connect_client)
    times_ms = []
    for rid in range(9):
        t0 = time.perf_counter()
        reply = submit_answering_both_at_once(c, rid)
        times_ms.append((time.perf_counter() - t0) * 1000)
        statuses = [r["status"] for r in reply["result"]["results"]]
        assert statuses == ["succeeded", "succeeded"], reply
    assert statistics.median(times_ms) < STALL_FREE_MS, times_ms

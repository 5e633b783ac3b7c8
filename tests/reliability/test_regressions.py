"""The defects the fuzzer found, pinned as plain examples over a live server (they were fixed in
``carnb/protocol/jsonrpc.py``): a non-finite id killed the connection without a reply (1011);
``NaN`` was stored by ``state.set`` and then could never be sent back; values nested near Python's
recursion limit were accepted and then failed to encode (internal errors, or no reply)."""

from __future__ import annotations

import json

import pytest

from carnb.protocol.jsonrpc import MAX_DEPTH
from tests.conftest import Client

pytestmark = pytest.mark.reliability


@pytest.fixture
def client(start_server) -> Client:
    srv = start_server()
    c = Client(srv.url)
    c.call("session.auth", {"token": srv.token})
    yield c
    c.close()


def parse_error(c: Client, text: str) -> str:
    c.send(text)
    reply = c.recv()
    assert reply["id"] is None and reply["error"]["code"] == -32700, reply
    return str(reply["error"]["message"])


def test_non_finite_numbers_are_parse_errors_and_the_connection_stays(client: Client) -> None:
    c = client
    assert "out of range" in parse_error(c, '{"jsonrpc":"2.0","id":1e400,"method":"state.keys"}')
    msg = parse_error(
        c, '{"jsonrpc":"2.0","id":1,"method":"state.set","params":{"key":"n","value":NaN}}'
    )
    assert "NaN is not a JSON number" in msg
    assert "Infinity" in parse_error(
        c, '{"jsonrpc":"2.0","id":2,"method":"x","params":[-Infinity]}'
    )
    assert c.call("state.get", {"key": "n"}) is None  # nothing was stored
    assert c.ws.close_code is None
    assert c.call("state.keys") == []


def test_nesting_is_capped_at_max_depth(client: Client) -> None:
    c = client

    def frame(depth: int) -> str:
        value = "[" * depth + "1" + "]" * depth
        head = '{"jsonrpc":"2.0","id":"d","method":"state.set","params":{"key":"k","value":'
        return head + value + "}}"

    # the frame's own object and params count as two levels
    c.send(frame(MAX_DEPTH - 2))
    assert c.recv()["result"] == "ok"
    got = c.call("state.get", {"key": "k"})
    assert json.dumps(got).count("[") == MAX_DEPTH - 2
    snap = c.call("state.snapshot")  # one level deeper on the way out: still fine
    assert "k" in snap
    assert "nesting too deep" in parse_error(c, frame(MAX_DEPTH - 1))
    for depth in (900, 990, 5000):
        assert "nesting too deep" in parse_error(c, frame(depth))
    # 200,000 brackets are over the values a big frame may hold: refused before decoding
    c.send(frame(200_000))
    reply = c.recv()
    assert reply["id"] is None and reply["error"]["code"] == -32600, reply
    assert "at most 131072 per frame" in reply["error"]["message"]
    assert c.call("state.get", {"key": "k"}) == got  # the refused frames changed nothing

"""The session server over real sockets: auth gate, handshake, state, agents, host events,
origins, garbage frames, concurrency, dropped peers and the connection file."""

from __future__ import annotations

import asyncio
import json
import socket
import stat
import threading
import time
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from carnb.app.handlers import build_table
from carnb.app.methods import Method
from carnb.app.services import Services
from carnb.protocol.auth import Credentials
from carnb.server.dispatch import Dispatcher
from carnb.server.loopthread import LoopThread
from carnb.server.ws import ServerConfig, SessionServer
from tests.conftest import Client, RpcFailed, agent_auth


# -- auth gate -----------------------------------------------------------------------------
def test_any_method_before_auth_is_refused_and_the_socket_closed(runtime, connect_client) -> None:
    c = connect_client(auth=None)
    reply = c.request("state.get", {"key": "a"})
    assert reply["error"]["code"] == -32001
    assert reply["error"]["message"].startswith("auth required")
    with pytest.raises(ConnectionClosed):
        c.ws.recv(timeout=5)
    assert c.ws.close_code == 1008


def test_handshake_before_auth_is_refused_too(runtime, connect_client) -> None:
    c = connect_client(auth=None)
    assert c.request("server.handshake", {"protocol_version": 3})["error"]["code"] == -32001


def test_wrong_token_is_an_error_and_the_session_stays_unauthenticated(
    runtime, connect_client
) -> None:
    c = connect_client(auth=None)
    reply = c.request("session.auth", {"token": "not-the-token"})
    assert reply["error"] == {"code": -32603, "message": "auth failed: token mismatch"}
    # still open, still unauthenticated: a right token then works
    assert c.call("session.auth", {"token": runtime.token}) == {"ok": True, "auth_enabled": True}
    assert c.call("state.keys") == []


def test_agent_token_binds_the_agent_and_agents_list_shows_it(runtime, connect_client) -> None:
    c = connect_client(auth=agent_auth(runtime, "alice"))
    other = connect_client()
    agents = {a["spec"]["id"]: a for a in other.call("agents.list")}
    assert agents["alice"]["attached"] is True
    assert agents["alice"]["session_ids"] and agents["alice"]["status"] == "attached"
    assert agents["bob"]["attached"] is False
    c.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        agents = {a["spec"]["id"]: a for a in other.call("agents.list")}
        if not agents["alice"]["attached"]:
            break
        time.sleep(0.05)
    assert agents["alice"]["attached"] is False


def test_another_agents_token_does_not_bind(runtime, connect_client) -> None:
    c = connect_client(auth=None)
    bob_token = runtime.credentials.agents.token_for("bob")
    reply = c.request("session.auth", {"token": bob_token, "agent_id": "alice"})
    assert reply["error"]["code"] == -32603


def test_host_token_gives_host_role_and_host_only_methods(runtime, connect_client) -> None:
    plain = connect_client()
    with pytest.raises(RpcFailed) as info:
        plain.call("agents.register", {"name": "carol"})
    assert "needs the host role" in info.value.message
    host = connect_client(auth="host")
    assert host.call("capabilities.list")["caller_role"] == "host"
    minted = host.call("agents.register", {"name": "carol"})
    assert minted["agent_id"] == "carol" and len(minted["token"]) >= 40
    carol = connect_client(auth=agent_auth(runtime, "carol"))
    assert carol.call("capabilities.list")["caller_role"] == "agent"


def test_capabilities_list_only_shows_what_the_caller_can_call(runtime, connect_client) -> None:
    plain = connect_client().call("capabilities.list")
    host = connect_client(auth="host").call("capabilities.list")
    plain_names = {m["method"] for m in plain["methods"]}
    host_names = {m["method"] for m in host["methods"]}
    assert plain["count"] == len(plain["methods"])
    assert plain["caller_role"] == "operator"
    assert "agents.register" not in plain_names and "agents.register" in host_names
    assert {"state.get", "session.auth", "server.handshake"} <= plain_names
    # everything listed really answers (no unknown-method for a listed name)
    c = connect_client(auth="host")
    for name in sorted(host_names):
        reply = c.request(name, {})
        assert reply.get("error", {}).get("code") != -32601, name


def test_auth_disabled_server_needs_no_token(make_runtime) -> None:
    rt = make_runtime(auth=False)
    c = Client(rt.url)
    try:
        assert c.call("state.keys") == []
        assert c.call("session.auth", {"token": "anything"}) == {"ok": True, "auth_enabled": False}
        bound = c.call("session.auth", {"agent_id": "zed"})
        assert bound["agent_id"] == "zed"
        assert any(a["spec"]["id"] == "zed" and a["attached"] for a in c.call("agents.list"))
    finally:
        c.close()


# -- handshake and schema --------------------------------------------------------------------
def test_handshake(runtime, connect_client) -> None:
    c = connect_client()
    res = c.call(
        "server.handshake",
        {"protocol_version": 3, "client_version": "t", "required_capabilities": []},
    )
    assert res["protocol_version"] == 3
    assert res["client_protocol_version"] == 3 and res["client_version"] == "t"
    assert res["server_version"].startswith("carnb ")
    assert c.call("server.handshake", {"protocol_version": 3})["protocol_version"] == 3
    bad = c.request("server.handshake", {"protocol_version": 2})
    assert bad["error"]["code"] == -32006
    cap = c.request("server.handshake", {"protocol_version": 3, "required_capabilities": ["warp"]})
    assert cap["error"]["code"] == -32008


def test_host_subscribe_needs_the_handshake(runtime, connect_client) -> None:
    host = connect_client(auth="host")
    assert host.request("host.subscribe")["error"]["code"] == -32005
    host.call("server.handshake", {"protocol_version": 3})
    snap = host.call("host.subscribe")
    assert snap["subscribed"] is True and snap["event_sequence"] >= 1
    connect_client()  # a new session attaches: the host sees it live
    ev = host.wait_notification("host.event")["params"]
    assert ev["kind"] == "session.attached"
    assert ev["sequence"] > snap["event_sequence"]


def test_server_schema_describes_methods(runtime, connect_client) -> None:
    schema = connect_client().call("server.schema")
    assert schema["protocol_version"] == 3
    names = {m["method"]: m for m in schema["methods"]}
    assert names["state.set"]["params"]["key"] == "string"


# -- state -------------------------------------------------------------------------------------
def test_state_is_per_session_and_tenant_scoped(runtime, connect_client) -> None:
    a, b = connect_client(), connect_client()
    assert a.call("state.set", {"key": "k", "value": {"x": [1, 2]}}) == "ok"
    a.call("state.set", {"key": "k", "value": "t", "tenant_id": "t1"})
    assert a.call("state.get", {"key": "k"}) == {"x": [1, 2]}
    assert a.call("state.get", {"key": "k", "tenant_id": "t1"}) == "t"
    assert a.call("state.exists", {"key": "k"}) is True
    assert a.call("state.keys") == ["k"]
    assert a.call("state.snapshot", {"tenant_id": "t1"}) == {"k": "t"}
    assert b.call("state.get", {"key": "k"}) is None
    assert b.call("state.exists", {"key": "k"}) is False


def test_state_params_are_validated_naming_the_field(runtime, connect_client) -> None:
    c = connect_client()
    err = c.request("state.set", {"value": 1})["error"]
    assert err == {"code": -32602, "message": "invalid params: key is required"}
    err = c.request("state.get", {"key": 5})["error"]
    assert err["code"] == -32602 and "key must be a string" in err["message"]
    assert c.request("state.set", {"key": "k"})["error"]["code"] == -32602
    assert c.request("state.get", [1, 2])["error"]["code"] == -32602


def test_unknown_method(runtime, connect_client) -> None:
    err = connect_client().request("teleport.now", {})["error"]
    assert err["code"] == -32601
    assert err["message"].startswith("unknown method: teleport.now")


# -- garbage ---------------------------------------------------------------------------------
def test_garbage_frames_are_answered_and_the_server_keeps_serving(runtime, connect_client) -> None:
    c = connect_client()
    bystander = connect_client()
    bystander.call("state.set", {"key": "still", "value": "here"})

    c.send("{not json")
    assert c.recv()["error"]["code"] == -32700
    c.send('"just a string"')
    assert c.recv()["error"]["code"] == -32600
    c.send('[{"jsonrpc":"2.0","id":1,"method":"state.keys"}]')
    assert c.recv()["error"]["code"] == -32600
    c.send(b"\x00\x01binary")
    assert c.recv()["error"]["code"] == -32600
    # a response to no request of the server's is dropped without an answer
    c.send({"jsonrpc": "2.0", "id": 9, "error": {"code": "a string code", "message": "x"}})
    c.send({"jsonrpc": "2.0", "id": 9, "result": 1, "error": {}})  # both: not a response
    assert c.recv()["error"]["code"] == -32600
    # a notification (no id) is executed but never answered
    c.send({"jsonrpc": "2.0", "method": "state.set", "params": {"key": "n", "value": 1}})
    assert c.call("state.get", {"key": "n"}) == 1  # the next reply is this call's own
    c.send("[" * 50_000 + "]" * 50_000)
    assert c.recv()["error"]["code"] == -32700
    # after all that, the same connection still works
    assert c.call("state.keys") == ["n"]
    # an oversized frame (20 MiB > 16 MiB cap) closes only that connection with 1009
    big = connect_client()
    big.send(
        json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "state.set",
                "params": {"key": "big", "value": "x" * (20 * 1024 * 1024)},
            }
        )
    )
    with pytest.raises(ConnectionClosed):
        big.recv(timeout=10)
    assert big.ws.close_code == 1009
    assert bystander.call("state.get", {"key": "still"}) == "here"
    assert c.call("state.keys") == ["n"]


# -- origins -----------------------------------------------------------------------------------
def test_foreign_origin_is_refused_at_the_handshake(runtime) -> None:
    with pytest.raises(InvalidStatus) as info:
        connect(runtime.url, origin="http://evil.example", open_timeout=5)
    assert info.value.response.status_code == 403
    with connect(runtime.url, open_timeout=5) as ws:  # no Origin: allowed
        ws.send(
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 0,
                    "method": "session.auth",
                    "params": {"token": runtime.token},
                }
            )
        )
        assert json.loads(ws.recv(timeout=5))["result"]["ok"] is True


def test_configured_origin_is_allowed(make_runtime) -> None:
    rt = make_runtime(allowed_origins=("http://localhost:8888",))
    with connect(rt.url, origin="http://localhost:8888", open_timeout=5) as ws:
        ws.send(
            json.dumps(
                {"jsonrpc": "2.0", "id": 0, "method": "session.auth", "params": {"token": rt.token}}
            )
        )
        assert json.loads(ws.recv(timeout=5))["result"]["ok"] is True
    with pytest.raises(InvalidStatus):
        connect(rt.url, origin="http://localhost:9999", open_timeout=5)


def test_binds_loopback_by_default(runtime) -> None:
    assert runtime.url.startswith("ws://127.0.0.1:")


# -- concurrency -----------------------------------------------------------------------------
@pytest.fixture
def slow_server():
    """A real server whose table has one extra slow async method, to test scheduling."""
    host = LoopThread()
    creds = Credentials(auth_enabled=False)
    services = Services(creds, server_version="carnb test")
    table = build_table(services)

    async def sleep(s, p, svc):
        await asyncio.sleep(p["seconds"])
        return p["seconds"]

    table.add(Method("test.sleep", sleep, mode="task"))
    server = SessionServer(ServerConfig(), Dispatcher(services, table))
    host.call(server.start(), timeout=10)
    yield server
    host.call(server.close(), timeout=10)
    host.stop()


def test_a_slow_request_does_not_block_others_and_replies_match_ids(slow_server) -> None:
    c = Client(slow_server.url)
    other = Client(slow_server.url)
    try:
        c.send({"jsonrpc": "2.0", "id": "slow", "method": "test.sleep", "params": {"seconds": 1.0}})
        c.send({"jsonrpc": "2.0", "id": "fast", "method": "test.sleep", "params": {"seconds": 0}})
        c.send({"jsonrpc": "2.0", "id": "inline", "method": "state.keys"})
        t0 = time.monotonic()
        assert other.call("state.keys") == []
        assert time.monotonic() - t0 < 0.5
        order = [c.recv()["id"] for _ in range(3)]
        assert order[-1] == "slow"  # answered out of order, matched by id
        assert set(order) == {"slow", "fast", "inline"}
    finally:
        c.close()
        other.close()


# -- peers that vanish -------------------------------------------------------------------------
def _raw_ws_handshake(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert b"101" in s.recv(4096)
    return s


def _sessions(runtime) -> list[dict[str, Any]]:
    return [x for x in runtime.snapshots() if x["kind"] == "socket"]


def _raw_auth(s: socket.socket, token: str) -> None:
    """session.auth as one masked text frame (zero mask) on a raw upgraded socket."""
    payload = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "session.auth", "params": {"token": token}}
    ).encode()
    assert len(payload) < 126
    s.sendall(bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)
    assert b'"ok":true' in s.recv(4096)


def test_tcp_drop_without_close_frame_ends_the_session(runtime) -> None:
    s = _raw_ws_handshake(runtime.port)
    _raw_auth(s, runtime.token)  # only authenticated sessions enter the event log
    deadline = time.monotonic() + 5
    while not _sessions(runtime) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(_sessions(runtime)) == 1
    s.close()  # no close frame
    deadline = time.monotonic() + 5
    while _sessions(runtime) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _sessions(runtime) == []
    kinds = [e["kind"] for e in runtime.call("host.events", {"limit": 10})["events"]]
    assert kinds[-1] == "session.detached"


def test_a_peer_that_never_answers_pings_is_dropped(make_runtime) -> None:
    rt = make_runtime(ping_interval=0.3)
    s = _raw_ws_handshake(rt.port)  # never reads, never answers a ping
    try:
        deadline = time.monotonic() + 5
        while not _sessions(rt) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(_sessions(rt)) == 1
        t0 = time.monotonic()
        while _sessions(rt) and time.monotonic() < t0 + 20:
            time.sleep(0.05)
        assert _sessions(rt) == []
    finally:
        s.close()


# -- connection file -------------------------------------------------------------------------
def test_connection_file_is_private_complete_and_removed_on_close(make_runtime) -> None:
    rt = make_runtime(agents=("alice",))
    path = rt.connection_file
    assert path is not None and path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    info = json.loads(path.read_text())
    assert info["url"] == rt.url and info["token"] == rt.token
    assert info["host_token"] == rt.host_token
    assert info["agents"] == {"alice": rt.credentials.agents.token_for("alice")}
    rt.register_agent("newbie")
    assert "newbie" in json.loads(path.read_text())["agents"]
    rt.close()
    assert not path.exists()
    rt.close()  # idempotent


def test_close_frees_the_port_and_stops_the_thread(make_runtime) -> None:
    rt = make_runtime()
    port = rt.port
    rt.close()
    assert not rt.loop_thread.running
    assert not any(
        t.name == "carnb-loop" and t.is_alive()
        for t in threading.enumerate()
        if t is rt.loop_thread._thread
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # the port is free again


def test_notebook_session_is_host_and_uses_the_same_dispatcher(runtime) -> None:
    assert runtime.call("capabilities.list")["caller_role"] == "host"
    runtime.call("state.set", {"key": "nb", "value": 1})
    assert runtime.call("state.get", {"key": "nb"}) == 1
    from carnb.errors import MethodNotFound

    with pytest.raises(MethodNotFound) as info:
        runtime.call("nope")
    assert info.value.code == -32601


def test_settings_accept_string_paths_and_check_the_port(tmp_path) -> None:
    from carnb.config import Settings
    from carnb.errors import CarnbError
    from carnb.runtime import Runtime

    s = Settings(home=str(tmp_path / "h"), connection_file=str(tmp_path / "c.json"))
    assert s.home == tmp_path / "h" and s.connection_file == tmp_path / "c.json"
    with Runtime(s) as rt:
        assert rt.connection_file == tmp_path / "c.json"
    with pytest.raises(CarnbError, match="port must be between"):
        Settings(port=70000)

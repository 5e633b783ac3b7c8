"""Security against a live `python -m carnb serve`: nothing answers before auth (every method the
server lists), host-only and owner-only rules for every method (a table over the method list from
``capabilities.list``, with positive controls), and unauthenticated connections are closed after
the auth deadline."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from carnb.app.handlers import build_table
from carnb.app.services import Services
from carnb.protocol.auth import Credentials
from carnb.server.dispatch import Dispatcher
from carnb.server.loopthread import LoopThread
from carnb.server.ws import AUTH_TIMEOUT_REASON, ServerConfig, SessionServer
from tests.conftest import Client, RpcFailed
from tests.reliability.harness import add, raw_upgrade, wait_until

pytestmark = pytest.mark.reliability


def all_methods(srv: Any) -> list[dict[str, str]]:
    h = Client(srv.url)
    h.call("session.auth", {"host_token": srv.host_token})
    methods = list(h.call("capabilities.list")["methods"])
    h.close()
    return methods


@pytest.fixture
def srv(start_server: Any) -> Any:
    return start_server("--agent", "alice", "--agent", "bob")


# -- nothing before auth ---------------------------------------------------------------------------
def test_no_method_answers_before_auth(srv: Any) -> None:
    names = [m["method"] for m in all_methods(srv) if m["method"] != "session.auth"]
    names += ["no.such.method", "session.authx", "Session.Auth"]
    assert len(names) > 25
    refused = 0
    for name in names:
        for as_notification in (False, True):
            with connect(srv.url, open_timeout=10) as ws:
                msg: dict[str, Any] = {"jsonrpc": "2.0", "method": name, "params": {}}
                if not as_notification:
                    msg["id"] = 1
                ws.send(json.dumps(msg))
                replies = []
                with pytest.raises(ConnectionClosed):
                    while True:
                        replies.append(json.loads(ws.recv(timeout=10)))
                if as_notification:
                    assert replies == [], (name, replies)  # nothing to answer, nothing done
                else:
                    assert len(replies) == 1 and replies[0]["error"]["code"] == -32001, (
                        name,
                        replies,
                    )
                    assert replies[0]["error"]["message"].startswith("auth required")
                assert ws.close_code == 1008, (name, ws.close_code)
                refused += 1
    # a wrong token does not authenticate, and the next call is still refused
    with connect(srv.url, open_timeout=10) as ws:
        ws.send(
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "session.auth",
                    "params": {"token": srv.token[:-2] + "xx"},
                }
            )
        )
        assert json.loads(ws.recv(timeout=10))["error"]["message"] == "auth failed: token mismatch"
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "agents.list"}))
        assert json.loads(ws.recv(timeout=10))["error"]["code"] == -32001
    # and none of the refused calls had an effect
    h = Client(srv.url)
    h.call("session.auth", {"host_token": srv.host_token})
    assert {a["spec"]["id"] for a in h.call("agents.list")} == {"alice", "bob"}
    assert h.call("runs.list", {"agent_id": "alice"})["runs"] == []
    h.close()
    add("security: unauthenticated calls refused", refused + 1)


def test_an_unauthenticated_connection_is_closed_at_the_auth_deadline() -> None:
    host = LoopThread()
    services = Services(Credentials(), server_version="carnb test")
    server = SessionServer(
        ServerConfig(auth_timeout=0.5), Dispatcher(services, build_table(services))
    )
    host.call(server.start(), timeout=10)
    try:
        idle = raw_upgrade(server.port or 0)
        slow = Client(server.url)
        ok = Client(server.url)
        ok.call("session.auth", {"token": services.credentials.token})
        t0 = time.monotonic()
        with pytest.raises(ConnectionClosed):
            slow.ws.recv(timeout=10)
        assert slow.ws.close_code == 1008
        assert slow.ws.close_reason == AUTH_TIMEOUT_REASON
        assert time.monotonic() - t0 < 5
        idle.settimeout(10)
        frame = idle.recv(256)
        assert frame[:1] == b"\x88" and int.from_bytes(frame[2:4], "big") == 1008  # a close frame
        assert AUTH_TIMEOUT_REASON.encode() in frame
        idle.close()
        time.sleep(0.7)
        assert ok.call("state.keys") == []  # an authenticated connection is not affected
        assert wait_until(lambda: len(services.sessions) == 1)
        ok.close()
    finally:
        host.call(server.close(), timeout=10)
        host.stop()


# -- roles, table-driven over the method list -------------------------------------------------
class World:
    """Callers of every kind, and a run owned by alice to aim at."""

    def __init__(self, srv: Any) -> None:
        self.srv = srv
        self.alice = self._client({"token": srv.agent_token("alice"), "agent_id": "alice"})
        self.others = {
            "operator": self._client({"token": srv.token}),
            "bob": self._client({"token": srv.agent_token("bob"), "agent_id": "bob"}),
            "namespace": self._client({"token": srv.token, "memory_namespace": "alice"}),
            "alice-name": self._client({"token": srv.token}),  # claims alice by agent_name
        }
        self.host = self._client({"host_token": srv.host_token})
        self.run_id = self.alice.call("runs.start", {"intent": "guarded"})["run_id"]
        self.alice.call("runs.record_turns", {"run_id": self.run_id, "turns": [{"prompt": "mine"}]})
        self.others["alice-name"].call("runs.start", {"intent": "x", "agent_name": "alice"})

    def _client(self, auth: dict[str, Any]) -> Client:
        c = Client(self.srv.url)
        c.call("session.auth", auth)
        c.call("server.handshake", {"protocol_version": 3})
        return c

    def trace(self) -> dict[str, Any]:
        return dict(self.host.call("runs.get_trace", {"run_id": self.run_id}))

    def close(self) -> None:
        for c in [self.alice, self.host, *self.others.values()]:
            c.close()


def _forbidden(reply: dict[str, Any]) -> bool:
    err = reply.get("error")
    return bool(err) and err["code"] == -32603 and err.get("data", {}).get("reason") == "forbidden"


def _run_hidden(reply: dict[str, Any]) -> bool:
    """What a caller without access gets: exactly what an unknown run id gets."""
    if "error" in reply:
        return "not found" in reply["error"]["message"] and reply["error"]["code"] in (
            -32603,
            -32602,
        )
    res = reply["result"]
    return (
        res.get("not_found") is True
        or res.get("dropped") == "run_not_found"
        or res.get("runs") == []
    )


# method -> (params given a World, check of a refused reply, check that the owner/host succeeds)
HOST_ONLY: dict[str, dict[str, Any]] = {
    "agents.register": {"name": "mallory"},
    "agents.chat": {"agent_id": "alice", "prompt": "do evil"},
    "agents.chat.approve": {"session_id": "chat-x", "approval_id": "a", "decision": True},
    "host.events": {"limit": 5},
    "host.subscribe": {},
    "host.unsubscribe": {},
    "models.set_default": {"name": "mallory-model"},
    "models.unregister": {"id": "mallory-model"},
    "prices.set": {"prices": {"*": {"input_per_mtok": 0, "output_per_mtok": 0}}},
    "otel.status": {},
}
OWNER_ONLY = {
    "runs.record_turns": lambda w: {"run_id": w.run_id, "turns": [{"prompt": "evil"}]},
    "runs.complete": lambda w: {"run_id": w.run_id, "outcome": {"status": "success"}},
    "runs.record_model_turn": lambda w: {"run_id": w.run_id, "assistant_text": "evil"},
    "runs.cancel": lambda w: {"run_id": w.run_id, "reason": "evil"},
    "runs.get_trace": lambda w: {"run_id": w.run_id},
    "runs.list": lambda w: {"agent_id": "alice"},
    "runs.subscribe": lambda w: {"run_id": w.run_id},
    "runs.replay": lambda w: {"run_id": w.run_id},
    "runs.fork": lambda w: {"run_id": w.run_id, "at": 1},
}
# authorize_run_access: the host reads every run, so it may also replay and fork it
HOST_MAY = {
    "runs.get_trace",
    "runs.list",
    "runs.subscribe",
    "runs.cancel",
    "runs.replay",
    "runs.fork",
}


def test_host_only_and_owner_only_rules_hold_for_every_method(srv: Any) -> None:
    methods = {m["method"]: m["role"] for m in all_methods(srv)}
    assert set(methods.values()) <= {"operator", "owner", "host"}, methods
    # every guarded method the server offers is in this table: a new one must be added here
    assert {n for n, r in methods.items() if r == "host"} == set(HOST_ONLY)
    assert {n for n, r in methods.items() if r == "owner"} == set(OWNER_ONLY)
    w = World(srv)
    before = w.trace()
    probes = 0
    try:
        for name, params in HOST_ONLY.items():
            for who, c in [*w.others.items(), ("alice", w.alice)]:
                reply = c.request(name, params)
                assert _forbidden(reply), (name, who, reply)
                assert "needs the host role" in reply["error"]["message"]
                probes += 1
        for name, params_of in OWNER_ONLY.items():
            for who, c in w.others.items():
                reply = c.request(name, params_of(w))
                assert _run_hidden(reply), (name, who, reply)
                probes += 1
            if name not in HOST_MAY:
                reply = w.host.request(name, params_of(w))
                assert "error" in reply or reply["result"].get("ok") is False, (name, reply)
                probes += 1
        # nothing any of them did changed alice's run, registered an agent or leaked events
        assert w.trace() == before
        assert "mallory" not in {a["spec"]["id"] for a in w.host.call("agents.list")}
        for c in w.others.values():
            assert not any(
                n.get("method") in ("host.event", "runs.trace.event") for n in c.notifications
            ), c.notifications
        # positive controls: the owner and the host really can do what the others could not
        assert (
            w.alice.call("runs.get_trace", {"run_id": w.run_id})["records"][1]["turn"]["prompt"]
            == "mine"
        )
        assert w.alice.call("runs.subscribe", {"run_id": w.run_id})["subscribed"] is True
        assert w.alice.call("runs.record_turns", {"run_id": w.run_id, "turns": [{"prompt": "ok"}]})[
            "ok"
        ]
        assert w.alice.call("runs.list", {"agent_id": "alice"})["runs"][0]["run_id"] == w.run_id
        assert w.host.call("host.events", {"limit": 5})["events"]
        assert w.host.call("host.subscribe")["subscribed"] is True
        assert w.host.call("host.unsubscribe")["subscribed"] is False
        assert w.host.call("runs.subscribe", {"run_id": w.run_id})["subscribed"] is True
        assert w.host.call("agents.register", {"name": "carol"})["agent_id"] == "carol"
        assert (
            "unknown model"
            in w.host.request("models.set_default", {"name": "m"})["error"]["message"]
        )  # allowed, and answered on its merits
        for c in (w.alice, w.host):  # allowed, and answered on its merits: only turns to replay
            for name in ("runs.replay", "runs.fork"):
                reply = c.request(name, OWNER_ONLY[name](w))
                assert "has no model turn" in reply["error"]["message"], (name, reply)
        assert w.alice.call("runs.record_model_turn", {"run_id": w.run_id})["ok"] is True
        assert w.host.call("runs.cancel", {"run_id": w.run_id, "reason": "host may"})["ok"] is True
        assert w.alice.call("runs.get_trace", {"run_id": w.run_id})["status"] == "cancelled"
        with pytest.raises(RpcFailed):
            w.alice.call("runs.complete", {"run_id": w.run_id, "outcome": {"status": "success"}})
        # operator methods answer every role (none is wrongly refused)
        for name, role in methods.items():
            if role == "operator" and name not in ("session.auth", "browser.run", "browser.close"):
                for c in w.others.values():
                    assert not _forbidden(c.request(name, {})), name
    finally:
        w.close()
    add("security: role probes (host-only/owner-only, refused)", probes)

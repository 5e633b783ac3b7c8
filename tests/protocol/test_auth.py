"""session.auth and server.handshake rules, pure."""

from __future__ import annotations

import pytest

from carnb.errors import AuthFailed, CapabilityUnsupported, InvalidParams, VersionMismatch
from carnb.protocol.auth import Credentials, authenticate, negotiate
from carnb.protocol.session import ClientSession


@pytest.fixture
def creds() -> Credentials:
    c = Credentials()
    c.agents.register("alice")
    return c


def test_launch_tokens_are_random_distinct_and_long() -> None:
    a, b = Credentials(), Credentials()
    assert a.token != b.token and a.token != a.host_token
    assert len(a.token) >= 40 and len(a.host_token) >= 40


def test_plain_token(creds: Credentials) -> None:
    grant = authenticate(creds, {"token": creds.token})
    assert grant.result == {"ok": True, "auth_enabled": True}
    assert not grant.is_host and grant.agent_id is None


def test_wrong_token_is_an_error_not_a_result(creds: Credentials) -> None:
    with pytest.raises(AuthFailed) as info:
        authenticate(creds, {"token": "nope"})
    assert info.value.code == -32603
    assert info.value.message.startswith("auth failed: token mismatch")


def test_non_string_token_is_refused(creds: Credentials) -> None:
    with pytest.raises(AuthFailed):
        authenticate(creds, {"token": 12345})


def test_host_token_grants_host_role(creds: Credentials) -> None:
    grant = authenticate(creds, {"host_token": creds.host_token})
    assert grant.is_host
    assert grant.result["role"] == "host"


def test_launch_token_is_not_a_host_token(creds: Credentials) -> None:
    with pytest.raises(AuthFailed):
        authenticate(creds, {"host_token": creds.token})


def test_agent_needs_its_own_token(creds: Credentials) -> None:
    own = creds.agents.token_for("alice")
    grant = authenticate(creds, {"token": own, "agent_id": "alice", "memory_namespace": "ns"})
    assert grant.agent_id == "alice" and grant.memory_namespace == "ns"
    assert grant.result["agent_id"] == "alice"
    with pytest.raises(AuthFailed, match="auth failed"):
        authenticate(creds, {"token": creds.token, "agent_id": "alice"})
    with pytest.raises(AuthFailed, match="auth failed"):
        authenticate(creds, {"token": own, "agent_id": "mallory"})


def test_agent_ids_are_validated(creds: Credentials) -> None:
    with pytest.raises(InvalidParams) as info:
        authenticate(creds, {"token": creds.token, "agent_id": "../etc"})
    assert info.value.code == -32602


def test_missing_credentials_name_what_is_needed(creds: Credentials) -> None:
    with pytest.raises(InvalidParams) as info:
        authenticate(creds, {})
    assert info.value.code == -32602
    assert "token" in info.value.message


def test_auth_disabled_accepts_anything_and_still_binds_agents() -> None:
    creds = Credentials(auth_enabled=False)
    grant = authenticate(creds, {"token": "whatever", "agent_id": "zed"})
    assert grant.result == {"ok": True, "auth_enabled": False, "agent_id": "zed"}
    assert "zed" in creds.agents
    assert not authenticate(creds, {}).is_host


def test_handshake_needs_version_3() -> None:
    version, caps, client = negotiate(
        {"protocol_version": 3, "client_version": "0.58.0", "required_capabilities": []},
        frozenset({"memory"}),
    )
    assert (version, caps, client) == (3, [], "0.58.0")
    for bad in (2, "3", None, True, 4):
        with pytest.raises(VersionMismatch) as info:
            negotiate({"protocol_version": bad}, frozenset())
        assert info.value.code == -32006
        assert info.value.message.startswith("protocol version mismatch")


def test_handshake_capabilities() -> None:
    server = frozenset({"memory", "runs"})
    _, caps, _ = negotiate(
        {"protocol_version": 3, "required_capabilities": ["runs"], "capabilities": ["memory", "x"]},
        server,
    )
    assert caps == ["memory", "runs"]
    with pytest.raises(CapabilityUnsupported) as info:
        negotiate({"protocol_version": 3, "required_capabilities": ["teleport"]}, server)
    assert info.value.code == -32008


def test_session_state_is_scoped_by_tenant() -> None:
    s = ClientSession()
    s.state_set("k", 1)
    s.state_set("k", 2, "t1")
    assert s.state_get("k") == 1 and s.state_get("k", "t1") == 2
    assert s.state_keys() == ["k"] and s.state_keys("t1") == ["k"]
    assert not s.state_exists("k", "t2")
    assert s.state_snapshot("t1") == {"k": 2}


def test_session_changes_notify_listeners_without_tokens() -> None:
    s = ClientSession()
    seen: list[dict] = []
    s.add_listener(lambda sess, snap: seen.append(snap))
    s.update(authenticated=True)
    s.update(authenticated=True)  # no change, no event
    s.update(agent_id="alice")
    assert [x["authenticated"] for x in seen] == [True, True]
    assert seen[-1]["agent_id"] == "alice" and seen[-1]["role"] == "agent"
    assert not any("token" in k for k in seen[-1])

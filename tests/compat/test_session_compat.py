"""The official client against `python -m carnb serve`."""

from __future__ import annotations

import json

import pytest

from tests.compat.conftest import car_runtime

pytestmark = pytest.mark.compat


def test_no_token_on_an_auth_disabled_server(serve_process, car_client) -> None:
    p = serve_process("--no-auth")
    rt = car_client(CAR_DAEMON_URL=p.url)
    rt.state_set("k", json.dumps({"n": 1}))
    assert json.loads(rt.state_get("k")) == {"n": 1}


def test_with_the_launch_token(served, car_client) -> None:
    rt = car_client(CAR_DAEMON_URL=served.url, CAR_AUTH_TOKEN=served.info["token"])
    rt.state_set("greeting", json.dumps("hello"))
    rt.state_set("scoped", json.dumps([1, 2]), tenant="t1")
    assert json.loads(rt.state_get("greeting")) == "hello"
    assert json.loads(rt.state_get("missing")) is None
    assert rt.state_exists("greeting") is True
    assert rt.state_exists("missing") is False
    assert rt.state_keys() == ["greeting"]
    assert rt.state_keys(tenant="t1") == ["scoped"]
    assert json.loads(rt.state_get("scoped", tenant="t1")) == [1, 2]
    caps = json.loads(rt.daemon_call("capabilities.list", "{}"))
    assert caps["caller_role"] == "operator"


def test_with_an_agent_token(served, car_client) -> None:
    rt = car_client(
        CAR_DAEMON_URL=served.url,
        CAR_AGENT_ID="alice",
        CAR_AGENT_TOKEN=served.info["agents"]["alice"],
    )
    assert json.loads(rt.daemon_call("capabilities.list", "{}"))["caller_role"] == "agent"
    host = car_client(CAR_DAEMON_URL=served.url, CAR_AUTH_TOKEN=served.info["token"])
    agents = {a["spec"]["id"]: a for a in json.loads(host.daemon_call("agents.list", "{}"))}
    assert agents["alice"]["attached"] is True and agents["bob"]["attached"] is False


def test_with_a_wrong_token_the_client_raises(served, car_client) -> None:
    rt = car_client(CAR_DAEMON_URL=served.url, CAR_AUTH_TOKEN="wrong-token")
    with pytest.raises(RuntimeError, match="token mismatch"):
        rt.daemon_call("state.keys", "{}")


def test_agent_token_of_another_agent_is_refused(served, car_client) -> None:
    rt = car_client(
        CAR_DAEMON_URL=served.url,
        CAR_AGENT_ID="alice",
        CAR_AGENT_TOKEN=served.info["agents"]["bob"],
    )
    with pytest.raises(RuntimeError, match="auth failed"):
        rt.daemon_call("state.keys", "{}")


def test_session_auth_with_the_host_token(served, car_client) -> None:
    rt = car_client(CAR_DAEMON_URL=served.url, CAR_AUTH_TOKEN=served.info["token"])
    reply = json.loads(rt.session_auth(json.dumps({"host_token": served.info["host_token"]})))
    assert reply == {"ok": True, "auth_enabled": True, "role": "host"}
    assert json.loads(rt.daemon_call("capabilities.list", "{}"))["caller_role"] == "host"
    events = json.loads(rt.host_events(50))["events"]
    assert any(e["kind"] == "session.attached" for e in events)


def test_unknown_method_is_a_daemon_rpc_error(served, car_client) -> None:
    rt = car_client(CAR_DAEMON_URL=served.url, CAR_AUTH_TOKEN=served.info["token"])
    with pytest.raises(car_runtime.DaemonRpcError) as info:
        rt.daemon_call("no.such.method", "{}")
    assert info.value.code == -32601
    assert "unknown method: no.such.method" in str(info.value)


def test_invalid_params_reach_the_client_with_the_field(served, car_client) -> None:
    rt = car_client(CAR_DAEMON_URL=served.url, CAR_AUTH_TOKEN=served.info["token"])
    with pytest.raises(car_runtime.DaemonRpcError) as info:
        rt.daemon_call("state.get", "{}")
    assert info.value.code == -32602
    assert "key is required" in str(info.value)

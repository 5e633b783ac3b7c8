"""Dispatcher.receive without sockets: one frame in, one outcome out (reply, deferred, close),
and the same gate and errors for the notebook's socketless invoke()."""

from __future__ import annotations

import asyncio
import gc
import json
import warnings
from typing import Any

import pytest

from carnb.app.handlers import build_table
from carnb.app.methods import Method
from carnb.app.schedule import Later
from carnb.app.services import Services
from carnb.errors import InternalError, InvalidParams, MethodNotFound
from carnb.protocol.auth import Credentials
from carnb.protocol.session import ClientSession
from carnb.server.dispatch import Close, Deferred, Dispatcher, Outcome, Reply


def boom(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
    raise ValueError("bad state")


async def task_boom(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
    await asyncio.sleep(0)
    raise ValueError("bad state")


async def echo(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
    await asyncio.sleep(0)
    return p


def waits(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
    async def later() -> str:
        await asyncio.sleep(0)
        return "waited"

    return Later(later())


@pytest.fixture
def dispatcher() -> Dispatcher:
    services = Services(Credentials(), server_version="carnb test")
    table = build_table(services)
    table.add(Method("test.boom", boom))
    table.add(Method("test.task_boom", task_boom, mode="task"))
    table.add(Method("test.echo", echo, mode="task"))
    table.add(Method("test.waits", waits))
    return Dispatcher(services, table)


def authed(**kw: Any) -> ClientSession:
    return ClientSession(authenticated=True, **kw)


def frame(method: str, params: Any = None, id: Any = 1) -> str:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if id is not None:
        msg["id"] = id
    if params is not None:
        msg["params"] = params
    return json.dumps(msg)


def reply_of(outcome: Outcome) -> dict[str, Any]:
    assert isinstance(outcome, Reply) and outcome.text is not None, outcome
    return json.loads(outcome.text)


def settle(outcome: Outcome) -> dict[str, Any] | None:
    assert isinstance(outcome, Deferred), outcome
    text = asyncio.run(outcome.reply)
    return None if text is None else json.loads(text)


def test_an_inline_request_is_a_reply_with_its_result(dispatcher: Dispatcher) -> None:
    s = authed()
    assert reply_of(dispatcher.receive(s, frame("state.set", {"key": "k", "value": 5}))) == {
        "jsonrpc": "2.0",
        "id": 1,
        "result": "ok",
    }
    assert reply_of(dispatcher.receive(s, frame("state.get", {"key": "k"}, id="x")))["result"] == 5


def test_a_notification_runs_and_is_never_answered(dispatcher: Dispatcher) -> None:
    s = authed()
    assert dispatcher.receive(s, frame("state.set", {"key": "k", "value": 1}, id=None)) == Reply(
        None
    )
    assert s.state_get("k") == 1
    assert dispatcher.receive(s, frame("test.boom", id=None)) == Reply(None)


def test_a_call_before_auth_closes_the_connection_after_the_reply(
    dispatcher: Dispatcher,
) -> None:
    s = ClientSession()
    outcome = dispatcher.receive(s, frame("state.get", {"key": "a"}, id=9))
    assert isinstance(outcome, Close)
    assert (outcome.code, outcome.reason) == (1008, "auth required")
    error = json.loads(outcome.text or "")["error"]
    assert error["code"] == -32001 and error["message"].startswith("auth required")
    assert dispatcher.receive(s, frame("state.get", id=None)) == Close(None, 1008, "auth required")
    assert s.state == {}


def test_session_auth_is_the_one_call_allowed_before_auth(dispatcher: Dispatcher) -> None:
    s = ClientSession()
    wrong = reply_of(dispatcher.receive(s, frame("session.auth", {"token": "nope"})))
    assert wrong["error"] == {"code": -32603, "message": "auth failed: token mismatch"}
    assert not s.authenticated
    token = dispatcher.services.credentials.token
    assert reply_of(dispatcher.receive(s, frame("session.auth", {"token": token})))["result"]
    assert s.authenticated


@pytest.mark.parametrize(
    ("text", "code"),
    [("{bad", -32700), ("[1]", -32600), ('{"id":1}', -32600), (b"\x00binary", -32600)],
)
def test_frames_that_are_not_requests_get_an_error_reply(
    dispatcher: Dispatcher, text: str | bytes, code: int
) -> None:
    assert reply_of(dispatcher.receive(authed(), text))["error"]["code"] == code


def test_gate_errors_keep_their_codes(dispatcher: Dispatcher) -> None:
    plain, host = authed(), authed(is_host=True)
    unknown = reply_of(dispatcher.receive(plain, frame("nope")))["error"]
    assert unknown["code"] == -32601 and unknown["message"].startswith("unknown method: nope")
    forbidden = reply_of(dispatcher.receive(plain, frame("agents.register", {"name": "x"})))
    assert forbidden["error"]["code"] == -32603
    assert forbidden["error"]["data"] == {"reason": "forbidden"}
    assert "needs the host role" in forbidden["error"]["message"]
    handshake = reply_of(dispatcher.receive(host, frame("host.subscribe")))["error"]
    assert handshake["code"] == -32005


def test_caller_errors_are_invalid_params(dispatcher: Dispatcher) -> None:
    s = authed()
    missing = reply_of(dispatcher.receive(s, frame("state.get", {})))["error"]
    assert missing == {"code": -32602, "message": "invalid params: key is required"}
    array = reply_of(dispatcher.receive(s, frame("state.get", [1])))["error"]
    assert array["code"] == -32602 and "named fields" in array["message"]


def test_a_task_method_is_a_deferred_reply_matched_by_id(dispatcher: Dispatcher) -> None:
    outcome = dispatcher.receive(authed(), frame("test.echo", {"a": 1}, id="slow"))
    assert settle(outcome) == {"jsonrpc": "2.0", "id": "slow", "result": {"a": 1}}
    assert settle(dispatcher.receive(authed(), frame("test.echo", id=None))) is None


def test_an_inline_handler_that_must_wait_is_deferred(dispatcher: Dispatcher) -> None:
    assert settle(dispatcher.receive(authed(), frame("test.waits")))["result"] == "waited"


def test_a_handler_bug_is_the_same_internal_error_on_every_path(dispatcher: Dispatcher) -> None:
    expected = "internal error in test.boom: ValueError: bad state"
    inline = reply_of(dispatcher.receive(authed(), frame("test.boom")))["error"]
    assert inline == {"code": -32603, "message": expected}
    deferred = settle(dispatcher.receive(authed(), frame("test.task_boom")))
    assert deferred is not None
    assert deferred["error"] == {"code": -32603, "message": expected.replace("boom", "task_boom")}
    with pytest.raises(InternalError) as info:
        asyncio.run(dispatcher.invoke(authed(), "test.boom"))
    assert info.value.message == expected and info.value.code == -32603


def test_invoke_goes_through_the_same_gate_and_raises_typed_errors(
    dispatcher: Dispatcher,
) -> None:
    nb = authed(is_host=True, kind="notebook")
    assert asyncio.run(dispatcher.invoke(nb, "state.set", {"key": "k", "value": 2})) == "ok"
    assert asyncio.run(dispatcher.invoke(nb, "test.echo", {"b": 2})) == {"b": 2}
    assert asyncio.run(dispatcher.invoke(nb, "test.waits")) == "waited"
    with pytest.raises(MethodNotFound):
        asyncio.run(dispatcher.invoke(nb, "nope"))
    with pytest.raises(InvalidParams):
        asyncio.run(dispatcher.invoke(nb, "state.get", {}))


def test_a_deferred_reply_dropped_unstarted_leaves_no_unawaited_coroutine(
    dispatcher: Dispatcher,
) -> None:
    outcome = dispatcher.receive(authed(), frame("test.echo", {"a": 1}))
    assert isinstance(outcome, Deferred)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outcome.discard()
        del outcome
        gc.collect()
    assert [str(w.message) for w in caught if w.category is RuntimeWarning] == []


def test_schema_and_capabilities_are_generated_from_the_table(dispatcher: Dispatcher) -> None:
    host = authed(is_host=True)
    schema = reply_of(dispatcher.receive(host, frame("server.schema")))["result"]
    described = {m["method"]: m for m in schema["methods"]}
    assert described["state.get"]["params"] == {"key": "string", "tenant_id": "string?"}
    assert described["host.subscribe"]["needs_handshake"] is True
    # no memory, runs or browser service: none of their methods is offered
    assert not any(name.startswith(("memory.", "runs.", "browser.")) for name in described)
    plain = reply_of(dispatcher.receive(authed(), frame("capabilities.list")))["result"]
    assert "agents.register" in described
    assert "agents.register" not in {m["method"] for m in plain["methods"]}


# -- the reply cap, all-or-nothing auth, the state budget --------------------------------------
def big(s: ClientSession, p: dict[str, Any], svc: Services) -> Any:
    return "x" * int(p["n"])


@pytest.mark.parametrize("large_reply", [False, True])
def test_a_reply_over_the_cap_is_a_reply_too_large_error(large_reply: bool) -> None:
    services = Services(Credentials(), server_version="carnb test")
    table = build_table(services)
    table.add(Method("test.big", big, large_reply=large_reply))
    d = Dispatcher(services, table, max_reply_bytes=1000)
    s = authed()

    def answer(n: int) -> dict[str, Any]:
        out = d.receive(s, frame("test.big", {"n": n}))
        return settle(out) or {} if large_reply else reply_of(out)

    assert answer(900)["result"] == "x" * 900
    err = answer(1000)["error"]
    assert err["code"] == -32602 and "limit" in err["message"] and err["data"] == {"limit": 1000}


def test_a_failed_auth_leaves_the_session_as_it_was(dispatcher: Dispatcher) -> None:
    class Refusing:
        memory_dir = None

        def namespace_graph(self, namespace: str) -> Any:
            raise InvalidParams("memory_namespace: refused by the graph layer")

    dispatcher.services.memory = Refusing()  # type: ignore[assignment]
    creds = dispatcher.services.credentials
    s = ClientSession()
    out = reply_of(
        dispatcher.receive(
            s, frame("session.auth", {"token": creds.token, "memory_namespace": "n"})
        )
    )
    assert out["error"]["code"] == -32602
    assert not s.authenticated and s.memory_namespace is None


def test_a_reauth_that_changes_role_drops_host_subscriptions(dispatcher: Dispatcher) -> None:
    creds = dispatcher.services.credentials
    s = ClientSession()
    reply_of(dispatcher.receive(s, frame("session.auth", {"host_token": creds.host_token})))
    dispatcher.services.events.subscribe(s)
    assert dispatcher.services.events.unsubscribe(s) is True  # it was subscribed
    dispatcher.services.events.subscribe(s)
    reply_of(dispatcher.receive(s, frame("session.auth", {"token": creds.token})))
    assert s.is_host is False
    assert dispatcher.services.events.unsubscribe(s) is False  # dropped by the re-auth


def test_state_set_keeps_to_the_byte_budget(dispatcher: Dispatcher) -> None:
    from carnb.protocol.session import STATE_BUDGET_BYTES

    s = authed()
    half = "y" * (STATE_BUDGET_BYTES // 2 - 10)
    assert (
        reply_of(dispatcher.receive(s, frame("state.set", {"key": "a", "value": half})))["result"]
        == "ok"
    )
    assert (
        reply_of(dispatcher.receive(s, frame("state.set", {"key": "a", "value": half})))["result"]
        == "ok"
    )  # overwriting reuses the key's share
    assert (
        reply_of(dispatcher.receive(s, frame("state.set", {"key": "b", "value": half})))["result"]
        == "ok"
    )
    err = reply_of(dispatcher.receive(s, frame("state.set", {"key": "c", "value": "z" * 100})))[
        "error"
    ]
    assert err["code"] == -32602 and "budget" in err["message"]
    assert s.state_get("c") is None

"""PeerCalls, the server-to-client request channel, without a socket."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from carnb.app import peercalls as callbacks
from carnb.app.peercalls import PeerCalls
from carnb.errors import CallFailed, CallTimeout, PeerGone
from carnb.protocol.jsonrpc import Response


class Wire:
    def __init__(self, accept: bool = True) -> None:
        self.frames: list[dict[str, Any]] = []
        self.accept = accept

    def send(self, text: str) -> bool:
        self.frames.append(json.loads(text))
        return self.accept

    def requests(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if "id" in f]

    def cancels(self) -> list[dict[str, Any]]:
        return [f["params"] for f in self.frames if f.get("method") == "tools.cancel"]


async def test_result_error_and_own_id_space() -> None:
    wire = Wire()
    calls = PeerCalls(wire.send, name="c1")
    first = asyncio.create_task(calls.request("tools.execute", {"tool": "t"}, timeout=5))
    second = asyncio.create_task(calls.request("tools.execute", {"tool": "u"}, timeout=5))
    await asyncio.sleep(0)
    a, b = wire.requests()
    assert (a["id"], b["id"]) == ("cb-1", "cb-2") and a["params"]["request_id"] == "cb-1"
    assert calls.resolve(Response("cb-2", None, {"code": -32000, "message": "nope"}))
    assert calls.resolve(Response("cb-1", {"ok": True}))
    assert await first == {"ok": True}
    with pytest.raises(CallFailed, match="nope"):
        await second
    assert len(calls) == 0
    assert not calls.resolve(Response("cb-1", "again"))  # answered already: dropped
    assert not calls.resolve(Response(1, "numeric ids are the client's own"))


async def test_timeout_and_cancellation_send_tools_cancel() -> None:
    wire = Wire()
    calls = PeerCalls(wire.send)
    with pytest.raises(CallTimeout):
        await calls.request("tools.execute", {}, timeout=0.05, cancel_params={"action_id": "a"})
    task = asyncio.create_task(
        calls.request("tools.execute", {}, timeout=None, cancel_params={"action_id": "b"})
    )
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [(c["request_id"], c["action_id"]) for c in wire.cancels()] == [
        ("cb-1", "a"),
        ("cb-2", "b"),
    ]
    assert len(calls) == 0


async def test_disconnect_fails_pending_calls_and_refuses_new_ones() -> None:
    calls = PeerCalls(Wire().send, name="c9")
    task = asyncio.create_task(calls.request("tools.execute", {}, timeout=None))
    await asyncio.sleep(0)
    calls.close()
    with pytest.raises(PeerGone, match="c9 disconnected"):
        await task
    with pytest.raises(PeerGone):
        await calls.request("tools.execute", {}, timeout=None)


async def test_a_peer_that_cannot_take_frames_or_owes_too_much(monkeypatch) -> None:
    with pytest.raises(PeerGone, match="not reading"):
        await PeerCalls(Wire(accept=False).send).request("tools.execute", {}, timeout=1)
    monkeypatch.setattr(callbacks, "MAX_PENDING_CALLS", 2)
    calls = PeerCalls(Wire().send)
    tasks = [asyncio.create_task(calls.request("m", {}, timeout=None)) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(CallFailed, match="owes 2"):
        await calls.request("m", {}, timeout=None)
    calls.close()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_request_written_from_the_callers_task_is_bounded_by_its_deadline() -> None:
    wire = Wire()
    written: list[str] = []

    async def stuck_write(text: str) -> bool:  # a peer whose socket is full never drains
        written.append(text)
        await asyncio.Event().wait()
        return True

    calls = PeerCalls(wire.send, send_now=stuck_write)
    with pytest.raises(CallTimeout):
        await calls.request("tools.execute", {}, timeout=0.05, cancel_params={"action_id": "a"})
    assert [json.loads(t)["id"] for t in written] == ["cb-1"]
    assert wire.cancels() == [
        {
            "request_id": "cb-1",
            "action_id": "a",
            "reason": "tools.execute callback timed out after 0.05 s",
        }
    ]
    assert len(calls) == 0


async def test_a_request_written_at_once_is_answered_and_a_refused_one_fails() -> None:
    wire = Wire()

    async def write_now(text: str) -> bool:
        return wire.send(text)

    calls = PeerCalls(wire.send, send_now=write_now)
    task = asyncio.create_task(calls.request("tools.execute", {"tool": "t"}, timeout=5))
    await asyncio.sleep(0)
    assert [r["id"] for r in wire.requests()] == ["cb-1"]
    assert calls.resolve(Response("cb-1", 42))
    assert await task == 42

    async def refuse(text: str) -> bool:
        return False

    with pytest.raises(PeerGone, match="not reading"):
        await PeerCalls(wire.send, send_now=refuse).request("tools.execute", {}, timeout=1)

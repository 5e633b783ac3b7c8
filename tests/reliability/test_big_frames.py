"""Authenticated peers sending the biggest frames they may, against a real
``python -m carnb serve``: no frame is decoded while it could hold the event loop for long (after
auth frames are at most 4 MiB and at most 256k JSON values), and the bulk thread that parses
them and builds big replies takes its sessions in turn, so an attacker's queue never stands in
front of another session's work.

The in-kernel variant (a ticking cell during the attack) is in ``test_kernel_server.py``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from carnb.protocol.jsonrpc import MAX_FRAME_VALUES
from tests.reliability.harness import AClient, RpcFailed, ServerProc, mib, note
from tests.reliability.loopwatch import LoopWatch

pytestmark = pytest.mark.reliability

MiB = 1024 * 1024
WATCH_P99 = 0.100
FRAME_CAP = 4 * MiB


async def authed(url: str, **params: Any) -> AClient:
    c = await AClient.open(url)
    await c.call("session.auth", params)
    return c


def state_set_frame(id_: int, value_json: str) -> str:
    head = f'{{"jsonrpc":"2.0","id":{id_},"method":"state.set",'
    return head + f'"params":{{"key":"k","value":{value_json}}}}}'


def costliest_frames() -> dict[str, str]:
    """The frames that cost the decoder most per byte, each as big as the limits allow."""
    under = MAX_FRAME_VALUES // 2 - 64  # "[0]," is two values
    return {
        "nested arrays at the value limit": state_set_frame(
            1, "[" + ",".join(["[0]"] * under) + "]"
        ),
        "one string at the frame cap": state_set_frame(2, json.dumps("s" * (FRAME_CAP - 200))),
        "escapes at the frame cap": state_set_frame(3, json.dumps("\n" * (FRAME_CAP // 2 - 200))),
        "over the value limit": state_set_frame(
            4, "[" + ",".join(["0"] * (MAX_FRAME_VALUES + 10)) + "]"
        ),
    }


async def send_frame(c: AClient, text: str) -> dict[str, Any]:
    """Send a raw frame and wait for its one reply (set aside as unmatched by the reader)."""
    await c.ws.send(text)
    deadline = time.monotonic() + 60
    while not c.unmatched:
        assert time.monotonic() < deadline, "no reply"
        await asyncio.sleep(0.005)
    reply: dict[str, Any] = c.unmatched.pop(0)
    return reply


def test_big_frames_after_auth_never_hold_the_loop(start_server: Any) -> None:
    srv: ServerProc = start_server()
    frames = costliest_frames()

    async def main() -> tuple[LoopWatch, dict[str, int]]:
        attackers = [await authed(srv.url, token=srv.token) for _ in range(2)]
        # each shape answers as it should, and the connection stays open
        c = attackers[0]
        for name, text in frames.items():
            reply = await send_frame(c, text)
            if name == "over the value limit":
                assert reply["error"]["code"] == -32600, reply
                assert f"at most {MAX_FRAME_VALUES} per frame" in reply["error"]["message"]
            else:
                assert reply.get("result") == "ok", (name, str(reply)[:300])
        assert await c.call("state.get", {"key": "missing"}) is None
        sent = {"frames": 0}

        async def flood(a: AClient) -> None:
            end = time.monotonic() + 4
            while time.monotonic() < end:
                for text in frames.values():
                    await send_frame(a, text)
                    sent["frames"] += 1
                    await asyncio.sleep(0.01)

        async with LoopWatch(srv.url, srv.token) as watch:
            await asyncio.gather(*(flood(a) for a in attackers))
        # over the frame cap: closed with 1009 before the payload is read
        big = await authed(srv.url, token=srv.token)
        with pytest.raises((ConnectionClosed, ConnectionError, RpcFailed)):
            await big.call("state.set", {"key": "k", "value": "x" * (FRAME_CAP + 1)})
        assert big.ws.close_code == 1009
        for a in attackers:
            await a.close()
        return watch, sent

    rss_before = srv.rss()
    watch, sent = asyncio.run(main())
    note("big frames: bystander while 2 peers send the costliest frames", watch.summary())
    note("big frames: frames sent", sent["frames"])
    assert watch.errors == [], watch.summary()
    assert watch.p99() < WATCH_P99, watch.summary()
    assert srv.rss() - rss_before < 200 * MiB, mib(srv.rss() - rss_before)


def test_one_sessions_bulk_work_does_not_queue_in_front_of_anothers(start_server: Any) -> None:
    """Two attackers keep 64 big-trace requests each in flight (every page is built on the bulk
    thread); another agent's large-reply call waits for at most a turn of theirs."""
    srv: ServerProc = start_server("--agent", "writer", "--agent", "victim")

    async def main() -> tuple[list[float], float, int]:
        w = await authed(srv.url, token=srv.agent_token("writer"), agent_id="writer")
        rid = (await w.call("runs.start", {"intent": "big pages"}))["run_id"]
        for _ in range(8):
            await w.call(
                "runs.record_turns", {"run_id": rid, "turns": [{"prompt": "q" * 200_000}] * 10}
            )
        victim = await authed(srv.url, token=srv.agent_token("victim"), agent_id="victim")
        await victim.call("memory.add_fact", {"subject": "needle", "body": "the victim's fact"})
        t0 = time.monotonic()
        await victim.call("memory.query", {"query": "needle"})
        alone = time.monotonic() - t0
        host_a = await authed(srv.url, host_token=srv.host_token)
        host_b = await authed(srv.url, host_token=srv.host_token)
        stop = asyncio.Event()
        pages = {"n": 0}

        async def keep_busy(c: AClient) -> None:
            async def one() -> None:
                while not stop.is_set():
                    await c.request("runs.get_trace", {"run_id": rid, "limit": 10}, timeout=120)
                    pages["n"] += 1

            await asyncio.gather(*(one() for _ in range(64)))

        busy = [asyncio.create_task(keep_busy(c)) for c in (host_a, host_b)]
        await asyncio.sleep(1.0)  # both queues are full
        took = []
        for _ in range(10):
            t0 = time.monotonic()
            assert (await victim.call("memory.query", {"query": "needle"}, timeout=120))[0][
                "subject"
            ] == "needle"
            took.append(time.monotonic() - t0)
        stop.set()
        await asyncio.gather(*busy)
        for c in (w, victim, host_a, host_b):
            await c.close()
        return took, alone, pages["n"]

    took, alone, pages = asyncio.run(main())
    note(
        "bulk fairness: victim memory.query alone / worst under 2x64 trace pages (ms)",
        f"{alone * 1000:.1f} / {max(took) * 1000:.1f} ({pages} pages served)",
    )
    assert pages > 100
    # each trace page is one bulk job of ~2 MiB; 128 of them queued would take seconds
    assert max(took) < 0.5, took

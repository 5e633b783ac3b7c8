"""Server hardening: no request may freeze the server, leak a token or outgrow memory.

Each test replays one attack against a real ``python -m carnb serve`` process, with the loop
watchdog (:mod:`tests.reliability.loopwatch`) as bystander where the attack freezes the loop.
The in-kernel variant of the frames-before-authentication test is in ``test_kernel_server.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.reliability.harness import AClient, RpcFailed, ServerProc, add, mib, note, raw_upgrade
from tests.reliability.loopwatch import LoopWatch

pytestmark = pytest.mark.reliability

MiB = 1024 * 1024
WATCH_P99 = 0.100  # the bystander's state.get round trip, seconds


def nested_frame_text(size: int) -> str:
    """A valid JSON-RPC request of about ``size`` characters whose params hold a wide array of
    small arrays: the costliest frame to parse and depth-walk per byte."""
    head = '{"jsonrpc":"2.0","id":1,"method":"state.set","params":{"key":"k","value":['
    n = (size - len(head) - 4) // 4
    return head + ",".join(["[0]"] * n) + "]}}"


def unmasked_header(length: int) -> bytes:
    """The header of one masked text frame with an all-zero mask (so the payload goes as is)."""
    return bytes([0x81, 0x80 | 127]) + length.to_bytes(8, "big") + b"\0\0\0\0"


def send_big_frame_unauthenticated(port: int, payload: bytes) -> int | None:
    """Upgrade, send one big text frame without authenticating; return the close code seen."""
    s = raw_upgrade(port, timeout=30)
    try:
        s.sendall(unmasked_header(len(payload)))
        # the server may close while we are still sending: that is the point
        with contextlib.suppress(OSError):
            s.sendall(payload)
        s.settimeout(30)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
        if len(data) >= 4 and data[0] & 0x0F == 0x8:
            return int.from_bytes(data[2:4], "big")
        return None
    finally:
        s.close()


async def authed(url: str, **params: Any) -> AClient:
    c = await AClient.open(url)
    await c.call("session.auth", params)
    return c


# -- frames before authentication -----------------------------------------------------------------
def test_an_unauthenticated_peer_cannot_send_a_big_frame(start_server: Any) -> None:
    srv: ServerProc = start_server()
    payload = nested_frame_text(16 * MiB - 64).encode()
    rss_before = srv.rss()

    async def main() -> LoopWatch:
        async with LoopWatch(srv.url, srv.token) as watch:
            t0 = time.monotonic()
            codes = await asyncio.gather(
                *(
                    asyncio.to_thread(send_big_frame_unauthenticated, srv.port, payload)
                    for _ in range(4)
                )
            )
            took = time.monotonic() - t0
        assert codes == [1009] * 4, codes
        note("hardening: 4 unauthenticated 16 MiB frames refused in s", round(took, 2))
        return watch

    watch = asyncio.run(main())
    assert watch.errors == [], watch.summary()
    assert watch.p99() < WATCH_P99, watch.summary()
    grew = srv.rss() - rss_before
    assert grew < 64 * MiB, f"server RSS grew {mib(grew)} MiB"

    async def control() -> None:
        # after session.auth the configured limit applies: a 1 MiB frame is fine
        c = await authed(srv.url, token=srv.token)
        assert await c.call("state.set", {"key": "big", "value": "x" * MiB}) == "ok"
        # ... and before it, a small session.auth is of course fine
        await c.close()

    asyncio.run(control())


# -- replies are bounded and built off the loop ---------------------------------------------------
def test_a_long_trace_is_paged_and_never_freezes_the_server(start_server: Any) -> None:
    srv: ServerProc = start_server("--agent", "writer")
    turns = 120
    turn = {"prompt": "p" * (200 * 1024)}  # 200 KiB each: 24 MB of trace in all

    async def main() -> None:
        c = await authed(srv.url, token=srv.agent_token("writer"), agent_id="writer")
        run = await c.call("runs.start", {"intent": "long"})
        rid = run["run_id"]
        for _ in range(0, turns, 10):
            await c.call("runs.record_turns", {"run_id": rid, "turns": [turn] * 10})
        await c.call("runs.complete", {"run_id": rid, "outcome": {"status": "success"}})
        host = await authed(srv.url, host_token=srv.host_token)
        async with LoopWatch(srv.url, srv.token) as watch:
            # old callers (no cursor) get the first page, not the whole run
            first = await host.request("runs.get_trace", {"run_id": rid})
            assert "result" in first, first
            assert len(json.dumps(first)) <= 3 * MiB
            page = first["result"]
            assert page["records"][0]["index"] == 0
            seen = list(page["records"])
            pages = 1
            while page.get("next_cursor") is not None:
                page = await host.call(
                    "runs.get_trace", {"run_id": rid, "cursor": page["next_cursor"]}
                )
                seen.extend(page["records"])
                pages += 1
            # several readers at once, for seconds, do not freeze the bystander either
            await asyncio.gather(*(for_seconds(3, read_page, host, rid, i * 30) for i in range(4)))
        assert [r["index"] for r in seen] == list(range(turns + 2))
        assert pages > 1
        # runs.subscribe answers with the first page too, and says where to read on
        sub = await host.request("runs.subscribe", {"run_id": rid})
        assert "result" in sub and len(json.dumps(sub)) <= 3 * MiB, str(sub)[:300]
        assert sub["result"]["subscribed"] is True and sub["result"]["next_cursor"] is not None
        assert watch.errors == [] and watch.p99() < WATCH_P99, watch.summary()
        note("hardening: 24 MB trace read in pages", pages)
        note("hardening: bystander during trace paging", watch.summary())
        await c.close()
        await host.close()

    asyncio.run(main())


async def for_seconds(seconds: float, fn: Any, *args: Any, pause: float = 0.0) -> int:
    """Call ``await fn(*args)`` again and again for ``seconds`` (``pause`` seconds apart);
    return how many times."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        await fn(*args)
        n += 1
        await asyncio.sleep(pause)
    return n


async def read_page(host: AClient, rid: str, cursor: int) -> None:
    page = await host.call("runs.get_trace", {"run_id": rid, "cursor": cursor})
    assert page["records"][0]["index"] == cursor


def test_memory_query_caps_k_and_a_reply_over_the_cap_is_a_clear_error(start_server: Any) -> None:
    srv: ServerProc = start_server()

    async def main() -> None:
        c = await authed(srv.url, token=srv.token)
        with pytest.raises(RpcFailed) as bad_k:
            await c.call("memory.query", {"query": "x", "k": 1000})
        assert bad_k.value.code == -32602 and "k" in str(bad_k.value.message)
        body = "b" * (1024 * 1024 - 64)  # facts just under 1 MiB
        for i in range(20):
            await c.call("memory.add_fact", {"subject": f"alpha {i}", "body": body + str(i)})
        replies: list[dict[str, Any]] = []

        async def query() -> None:
            replies.append(await c.request("memory.query", {"query": "alpha", "k": 20}, timeout=60))

        async with LoopWatch(srv.url, srv.token) as watch:
            await for_seconds(3, query)
        reply = replies[0]
        assert all("error" in r for r in replies), "a 20 MiB reply was sent"
        assert reply["error"]["code"] == -32602
        assert "reply" in reply["error"]["message"] and "limit" in reply["error"]["message"]
        assert watch.p99() < WATCH_P99, watch.summary()
        # the connection is still usable, and a smaller k is answered
        assert len(await c.call("memory.query", {"query": "alpha", "k": 3})) == 3
        await c.close()

    asyncio.run(main())


# -- a per-session byte budget for state ----------------------------------------------------------
def test_state_has_a_byte_budget_per_session(start_server: Any) -> None:
    srv: ServerProc = start_server()
    rss_before = srv.rss()
    value = "v" * (3 * MiB)  # three of them pass the 8 MiB budget

    async def main() -> None:
        c = await authed(srv.url, token=srv.token)
        refused = 0
        for i in range(8):
            reply = await c.request("state.set", {"key": f"k{i}", "value": value}, timeout=60)
            if "error" in reply:
                assert reply["error"]["code"] == -32602, reply
                assert "budget" in reply["error"]["message"]
                refused += 1
        assert refused == 6
        # within the budget, values are stored, and overwriting a key reuses its share
        for _ in range(20):
            assert await c.call("state.set", {"key": "m", "value": "y" * MiB}) == "ok"
        assert await c.call("state.get", {"key": "m"}) == "y" * MiB
        await c.close()

    asyncio.run(main())
    grew = srv.rss() - rss_before
    assert grew < 400 * MiB, f"server RSS grew {mib(grew)} MiB"


async def _next_reply(c: AClient) -> str:
    """Wait for the next unmatched reply the client's reader set aside."""
    while not c.unmatched:
        await asyncio.sleep(0.01)
    return json.dumps(c.unmatched.pop(0))


# -- the host token cannot write an agent's run; register does not leak tokens --------------------
def test_the_host_cannot_forge_turns_and_register_returns_no_live_token(
    start_server: Any,
) -> None:
    srv: ServerProc = start_server("--agent", "alice")

    async def main() -> None:
        alice = await authed(srv.url, token=srv.agent_token("alice"), agent_id="alice")
        rid = (await alice.call("runs.start", {"intent": "mine"}))["run_id"]
        host = await authed(srv.url, host_token=srv.host_token, agent_id="alice")
        forged = await host.call(
            "runs.record_turns", {"run_id": rid, "turns": [{"prompt": "forged"}]}
        )
        assert forged["ok"] is False and forged["dropped"] == "run_not_found", forged
        with pytest.raises(RpcFailed):
            await host.call("runs.complete", {"run_id": rid, "outcome": {"status": "success"}})
        trace = await host.call("runs.get_trace", {"run_id": rid})  # reading is still allowed
        assert trace["status"] == "in_progress"
        assert [r["record"] for r in trace["records"]] == ["started"]
        # registering an existing agent does not hand out its token
        reply = await host.request("agents.register", {"name": "alice"})
        assert "error" in reply and srv.agent_token("alice") not in json.dumps(reply), reply
        new = await host.call("agents.register", {"name": "bob"})
        assert new["agent_id"] == "bob" and isinstance(new["token"], str)
        again = await host.request("agents.register", {"name": "bob"})
        assert "error" in again and new["token"] not in json.dumps(again)
        # the owner still writes
        await alice.call("runs.record_turns", {"run_id": rid, "turns": [{"prompt": "real"}]})
        await alice.close()
        await host.close()

    asyncio.run(main())


# -- session.auth is all or nothing ---------------------------------------------------------------
def test_a_second_auth_that_drops_host_drops_host_subscriptions(start_server: Any) -> None:
    srv: ServerProc = start_server()

    async def main() -> None:
        c = await authed(srv.url, host_token=srv.host_token)
        await c.call("server.handshake", {"protocol_version": 3})
        await c.call("host.subscribe")
        await c.call("session.auth", {"token": srv.token})  # now a plain session
        with pytest.raises(RpcFailed):
            await c.call("host.events")
        before = len(c.notifications)
        other = await authed(srv.url, token=srv.token)  # makes host events
        await other.close()
        await asyncio.sleep(0.5)
        events = [n for n in c.notifications[before:] if n["method"] == "host.event"]
        assert events == [], events
        await c.close()

    asyncio.run(main())


def test_a_failed_auth_changes_nothing(start_server: Any) -> None:
    srv: ServerProc = start_server()

    async def main() -> None:
        # a namespace the auth rules accept but the graph layer refuses (over 256 bytes)
        bad_ns = "é" * 200
        c = await AClient.open(srv.url)
        reply = await c.request("session.auth", {"token": srv.token, "memory_namespace": bad_ns})
        assert reply["error"]["code"] == -32602, reply
        reply = await c.request("state.get", {"key": "k"})
        assert reply["error"]["code"] == -32001, reply  # still not authenticated
        await c.close()
        # an authenticated host keeps its role after a failed re-auth
        h = await authed(srv.url, host_token=srv.host_token)
        reply = await h.request("session.auth", {"token": srv.token, "memory_namespace": bad_ns})
        assert "error" in reply
        assert isinstance(await h.call("host.events"), dict)
        await h.close()

    asyncio.run(main())


# -- unauthenticated peers stay out of the event log; errors are rate-limited ---------------------
def test_unauthenticated_connections_do_not_push_events_out(start_server: Any) -> None:
    srv: ServerProc = start_server("--agent", "alice")

    async def main() -> None:
        alice = await authed(srv.url, token=srv.agent_token("alice"), agent_id="alice")
        host = await authed(srv.url, host_token=srv.host_token)
        gate = asyncio.Semaphore(50)

        async def knock() -> None:
            async with gate:
                ws = await connect(srv.url, open_timeout=30)
                await ws.close()

        await asyncio.gather(*(knock() for _ in range(600)))
        events = (await host.call("host.events", {"limit": 10_000}))["events"]
        kinds = [(e.get("kind"), e.get("agent_id")) for e in events]
        assert any(a == "alice" for _, a in kinds), kinds[-5:]
        assert len(events) < 50, f"{len(events)} events after 600 anonymous connects"
        await alice.close()
        await host.close()

    asyncio.run(main())
    add("hardening: anonymous connects", 600)


def test_repeated_errors_are_rate_limited_in_the_log(start_server: Any) -> None:
    import resource

    srv: ServerProc = start_server()
    resource.prlimit(srv.proc.pid, resource.RLIMIT_NOFILE, (48, 48))
    socks: list[socket.socket] = []
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < 6:
            try:
                socks.append(socket.create_connection(("127.0.0.1", srv.port), timeout=1))
            except OSError:
                time.sleep(0.01)
            if len(socks) > 300:
                for s in socks[:100]:
                    s.close()
                del socks[:100]
    finally:
        for s in socks:
            s.close()
    time.sleep(1)
    log = srv.log_text()
    tracebacks = log.count("Traceback")
    lines = log.count("\n")
    note("hardening: log lines / tracebacks in 6 s of fd exhaustion", f"{lines} / {tracebacks}")
    assert tracebacks <= 20 and lines <= 200, f"{lines} lines, {tracebacks} tracebacks"
    assert srv.alive()


# -- lone surrogates are invalid JSON -------------------------------------------------------------
@pytest.mark.parametrize(
    "method,params",
    [
        ("state.set", {"key": "\ud800", "value": 1}),
        ("state.set", {"key": "k", "value": ["ok", {"\udc00x": 1}]}),
        ("runs.start", {"intent": "a\ud83dz", "agent_name": "x"}),
    ],
)
def test_a_lone_surrogate_is_a_parse_error(
    start_server: Any, method: str, params: dict[str, Any]
) -> None:
    srv: ServerProc = start_server()

    async def main() -> None:
        c = await authed(srv.url, token=srv.token)
        request = {"jsonrpc": "2.0", "id": "bad", "method": method, "params": params}
        await c.ws.send(json.dumps(request))  # json.dumps writes a lone surrogate as \udXXX
        reply = json.loads(await asyncio.wait_for(_next_reply(c), 30))
        assert reply["id"] is None and reply["error"]["code"] == -32700, reply
        assert await c.call("state.get", {"key": "k"}) is None  # nothing stored, still open
        # a proper pair (an emoji as \ud83d\ude00) is fine
        assert await c.call("state.set", {"key": "e", "value": "\U0001f600"}) == "ok"
        assert await c.call("state.get", {"key": "e"}) == "\U0001f600"
        await c.close()

    asyncio.run(main())


# -- the loop watchdog under a mixed attack ------------------------------------------------------
def test_a_bystander_is_not_slowed_by_a_mixed_attack(start_server: Any) -> None:
    srv: ServerProc = start_server("--agent", "writer")
    big = nested_frame_text(16 * MiB - 64).encode()

    async def main() -> LoopWatch:
        w = await authed(srv.url, token=srv.agent_token("writer"), agent_id="writer")
        rid = (await w.call("runs.start", {"intent": "mixed"}))["run_id"]
        for _ in range(4):
            await w.call(
                "runs.record_turns", {"run_id": rid, "turns": [{"prompt": "q" * 200_000}] * 10}
            )
        host = await authed(srv.url, host_token=srv.host_token)
        greedy = await authed(srv.url, token=srv.token)

        async def anonymous() -> None:
            try:
                ws = await connect(srv.url, open_timeout=30)
                await ws.close()
            except (OSError, ConnectionClosed):
                pass

        async def trace() -> None:
            await host.request("runs.get_trace", {"run_id": rid})

        keys = iter(range(1_000_000))

        async def state() -> None:
            key = f"g{next(keys) % 3}"
            await greedy.request("state.set", {"key": key, "value": "z" * (3 * MiB)})

        async def query() -> None:
            await greedy.request("memory.query", {"query": "x", "k": 1000})

        def big_frames() -> None:
            end = time.monotonic() + 4
            while time.monotonic() < end:
                send_big_frame_unauthenticated(srv.port, big)
                time.sleep(0.01)

        # Every attacker runs in this process, on the same 2 cores as the server and the
        # bystander: they pause 10 ms between calls so the figure is the server's latency
        # rather than CPU starvation of the whole machine.
        async with LoopWatch(srv.url, srv.token) as watch:
            await asyncio.gather(
                asyncio.to_thread(big_frames),
                asyncio.to_thread(big_frames),
                for_seconds(4, anonymous, pause=0.01),
                for_seconds(4, trace, pause=0.01),
                for_seconds(4, state, pause=0.01),
                for_seconds(4, query, pause=0.01),
            )
        for c in (w, host, greedy):
            await c.close()
        return watch

    watch = asyncio.run(main())
    note("hardening: bystander under the mixed attack", watch.summary())
    assert watch.errors == [], watch.summary()
    assert watch.p99() < WATCH_P99, watch.summary()

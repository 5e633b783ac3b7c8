"""Model runners as attackers, against a real ``python -m carnb serve``: a client with any token
may serve models (``inference.register_runner``), but only the host decides which model answers
an ``infer`` that names none, a runner's stream is capped per call as it arrives, a runner that
never answers can be bounded by the caller, and a chat agent cannot relabel its events.

The in-kernel variants (the notebook's own ``infer``, a ticking cell during the stream attack)
are in ``test_kernel_server.py``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from tests.reliability.harness import AClient, RpcFailed, ServerProc, note
from tests.reliability.loopwatch import LoopWatch

pytestmark = pytest.mark.reliability

MiB = 1024 * 1024
WATCH_P99 = 0.100
NOTEBOOK_MODEL = "tests.reliability.models:notebook_model"


async def authed(url: str, **params: Any) -> AClient:
    c = await AClient.open(url)
    await c.call("session.auth", params)
    return c


async def next_invoke(runner: AClient, timeout: float = 10) -> dict[str, Any]:
    """The next ``inference.runner.invoke`` notification the runner receives."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for i, note_ in enumerate(runner.notifications):
            if note_.get("method") == "inference.runner.invoke":
                del runner.notifications[i]
                params: dict[str, Any] = note_["params"]
                return params
        await asyncio.sleep(0.005)
    raise TimeoutError("no inference.runner.invoke arrived")


def ask(**extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "secret prompt"}], **extra}


# -- only the host decides the default model ---------------------------------------------------
def test_an_agent_cannot_make_its_runner_the_default_model(start_server: Any) -> None:
    srv: ServerProc = start_server("--agent", "mallory", "--model", f"nb={NOTEBOOK_MODEL}")

    async def main() -> None:
        evil = await authed(srv.url, token=srv.agent_token("mallory"), agent_id="mallory")
        with pytest.raises(RpcFailed, match="only the host decides") as refused:
            await evil.call("inference.register_runner", {"models": ["evil"], "default": True})
        assert refused.value.error["data"]["reason"] == "forbidden"
        # refused whole: the name was not taken either
        listed = await evil.call("models.list")
        assert listed["default"] == "nb" and [m["name"] for m in listed["models"]] == ["nb"]

        # a runner without default serves only the names it registered, when they are named
        await evil.call("inference.register_runner", {"models": ["evil"]})
        victim = await authed(srv.url, token=srv.token)
        reply = await victim.call("infer", ask())
        assert reply["model_used"] == "nb" and reply["text"] == "notebook model"
        assert not [n for n in evil.notifications if n["method"] == "inference.runner.invoke"]

        # the host may choose the runner, and may remove any runner's model
        host = await authed(srv.url, host_token=srv.host_token)
        await host.call("models.set_default", {"name": "evil"})
        assert (await victim.call("models.list"))["default"] == "evil"
        removed = await host.call("models.unregister", {"id": "evil"})
        assert removed == {"id": "evil", "unregistered": True, "default": "nb"}
        assert (await victim.call("infer", ask()))["model_used"] == "nb"
        with pytest.raises(RpcFailed, match="unknown model 'evil'"):
            await victim.call("infer", ask(model="evil"))
        with pytest.raises(RpcFailed, match="forbidden|unknown method|-32601"):
            await victim.call("models.unregister", {"id": "nb"})

        # registered by the host, a runner may be the default at once
        await host.call("inference.register_runner", {"models": ["chosen"], "default": True})
        assert (await victim.call("models.list"))["default"] == "chosen"
        for c in (evil, victim, host):
            await c.close()

    asyncio.run(main())


def test_a_runner_never_becomes_the_default_by_itself(start_server: Any) -> None:
    srv: ServerProc = start_server("--agent", "mallory")

    async def main() -> None:
        evil = await authed(srv.url, token=srv.agent_token("mallory"), agent_id="mallory")
        # registered as a notification too: nothing answers, nothing becomes the default
        await evil.ws.send('{"jsonrpc":"2.0","method":"inference.register_runner","params":{}}')
        await evil.call("inference.register_runner", {"models": ["evil"]})
        victim = await authed(srv.url, token=srv.token)
        assert (await victim.call("models.list"))["default"] is None
        started = time.monotonic()
        with pytest.raises(RpcFailed, match="no default model: name one in `model`"):
            await victim.call("infer", ask(context_query="secret"))
        assert time.monotonic() - started < 1.0  # at once, not after a model timeout
        await asyncio.sleep(0.1)
        assert not [n for n in evil.notifications if n["method"] == "inference.runner.invoke"]
        await evil.close()
        await victim.close()

    asyncio.run(main())


def test_a_caller_bounds_a_runner_that_never_answers(start_server: Any) -> None:
    srv: ServerProc = start_server()

    async def main() -> None:
        runner = await authed(srv.url, token=srv.token)
        await runner.call("inference.register_runner", {"models": ["silent"]})
        caller = await authed(srv.url, token=srv.token)
        started = time.monotonic()
        with pytest.raises(RpcFailed, match="did not answer within 0.3 s"):
            await caller.call("infer", ask(model="silent", timeout_ms=300))
        took = time.monotonic() - started
        assert 0.25 < took < 2.0, took
        for bad in (0, -5, 1.5, "300", True):
            with pytest.raises(RpcFailed, match="timeout_ms must be a positive integer"):
                await caller.call("infer", ask(model="silent", timeout_ms=bad))
        await runner.close()
        await caller.close()

    asyncio.run(main())


# -- a runner's stream is capped per call --------------------------------------------------------
def test_a_runner_stream_is_capped_per_call_as_it_arrives(start_server: Any) -> None:
    srv: ServerProc = start_server()
    chunk = "x" * (400 * 1024)

    async def main() -> tuple[LoopWatch, int, int]:
        runner = await authed(srv.url, token=srv.token)
        await runner.call("inference.register_runner", {"models": ["flood"]})
        caller = await authed(srv.url, token=srv.token)
        rss_before = srv.rss()
        async with LoopWatch(srv.url, srv.token) as watch:
            for _ in range(3):  # tool_delta, text and a done payload each count
                pending = asyncio.create_task(caller.call("infer", ask(model="flood")))
                call_id = (await next_invoke(runner))["call_id"]
                await runner.call(
                    "inference.runner.event",
                    {"call_id": call_id, "event": {"type": "tool_start", "name": "t", "index": 0}},
                )
                accepted = 0
                with pytest.raises(RpcFailed, match="more than 1048576 characters") as cut:
                    for _ in range(40):  # 16 MiB if nothing stopped it
                        await runner.call(
                            "inference.runner.event",
                            {
                                "call_id": call_id,
                                "event": {"type": "tool_delta", "index": 0, "data": chunk},
                            },
                        )
                        accepted += 1
                assert cut.value.code == -32602
                assert accepted == 2  # the third chunk passes 1 MiB
                with pytest.raises(RpcFailed, match="more than 1048576 characters"):
                    await pending
                # the call is over: later events for it are refused, nothing more is kept
                with pytest.raises(RpcFailed, match="no pending inference call"):
                    await runner.call(
                        "inference.runner.complete",
                        {"call_id": call_id, "result": {"text": chunk, "tool_calls": []}},
                    )
            # a result that is too big on its own fails the call the same way
            pending = asyncio.create_task(caller.call("infer", ask(model="flood")))
            call_id = (await next_invoke(runner))["call_id"]
            calls = [{"name": "t", "arguments": chunk} for _ in range(3)]
            with pytest.raises(RpcFailed, match="more than 1048576 characters"):
                await runner.call(
                    "inference.runner.complete",
                    {"call_id": call_id, "result": {"text": "", "tool_calls": calls}},
                )
            with pytest.raises(RpcFailed, match="more than 1048576 characters"):
                await pending
            # under the cap, streamed arguments still make a tool call
            pending = asyncio.create_task(caller.call("infer", ask(model="flood")))
            call_id = (await next_invoke(runner))["call_id"]
            for event in (
                {"type": "tool_start", "name": "t", "index": 0, "id": "c1"},
                {"type": "tool_delta", "index": 0, "data": '{"a": '},
                {"type": "tool_delta", "index": 0, "data": '"' + chunk + '"}'},
            ):
                await runner.call("inference.runner.event", {"call_id": call_id, "event": event})
            await runner.call(
                "inference.runner.complete", {"call_id": call_id, "result": {"text": ""}}
            )
            reply = await pending
            assert reply["tool_calls"] == [{"id": "c1", "name": "t", "arguments": {"a": chunk}}]
        rss_after = srv.rss()
        await runner.close()
        await caller.close()
        return watch, rss_before, rss_after

    watch, before, after = asyncio.run(main())
    note("runners: bystander while a runner floods one call", watch.summary())
    assert watch.errors == [], watch.summary()
    assert watch.p99() < WATCH_P99, watch.summary()
    assert after - before < 64 * MiB, (before, after)


# -- a chat agent's events carry the fields the server vouches for -----------------------------
def test_a_chat_agent_cannot_relabel_its_events(start_server: Any) -> None:
    srv: ServerProc = start_server("--agent", "mallory", "--agent", "alice")

    async def main() -> None:
        agent = await authed(srv.url, token=srv.agent_token("mallory"), agent_id="mallory")
        host = await authed(srv.url, host_token=srv.host_token)

        async def accept() -> None:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                for msg in agent.unmatched:
                    if isinstance(msg, dict) and msg.get("method") == "agent.chat":
                        reply = {"jsonrpc": "2.0", "id": msg["id"], "result": {"accepted": True}}
                        await agent.ws.send(json.dumps(reply))
                        return
                await asyncio.sleep(0.005)
            raise TimeoutError("agent.chat never arrived")

        acceptor = asyncio.create_task(accept())
        ack = await host.call("agents.chat", {"agent_id": "mallory", "prompt": "hi"})
        await acceptor
        forged = {
            "session_id": ack["session_id"],
            "kind": "done",
            "delta": "ok",
            "agent_id": "alice",
            "extra": 1,
        }
        await agent.call("agent.chat.event", forged)
        deadline = time.monotonic() + 5
        while not [n for n in host.notifications if n["method"] == "agents.chat.event"]:
            assert time.monotonic() < deadline, host.notifications
            await asyncio.sleep(0.005)
        event = next(n for n in host.notifications if n["method"] == "agents.chat.event")
        assert event["params"]["agent_id"] == "mallory"
        assert event["params"]["session_id"] == ack["session_id"]
        assert event["params"]["extra"] == 1  # other keys still pass through
        await agent.close()
        await host.close()

    asyncio.run(main())

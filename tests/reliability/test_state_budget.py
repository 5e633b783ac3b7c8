"""Every state write counts against the session's one budget, against a real
``python -m carnb serve``: ``state.set`` and a proposal's ``state_write`` actions share the
8 MiB of JSON per session and the 10,000 keys, so proposals cannot store what ``state.set``
refuses."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.reliability.harness import AClient, RpcFailed, ServerProc, mib, note
from tests.reliability.loopwatch import LoopWatch

pytestmark = pytest.mark.reliability

MiB = 1024 * 1024


async def authed(url: str, **params: Any) -> AClient:
    c = await AClient.open(url)
    await c.call("session.auth", params)
    return c


def writes(pid: str, *values: tuple[str, str]) -> dict[str, Any]:
    return {
        "proposal": {
            "id": pid,
            "actions": [
                {"id": f"w{i}", "type": "state_write", "parameters": {"key": key, "value": value}}
                for i, (key, value) in enumerate(values)
            ],
        }
    }


def test_proposal_state_writes_count_against_the_state_budget(start_server: Any) -> None:
    srv: ServerProc = start_server()
    rss_before = srv.rss()
    three = "s" * (3 * MiB)

    async def main() -> LoopWatch:
        c = await authed(srv.url, token=srv.token)
        async with LoopWatch(srv.url, srv.token) as watch:
            stored = await eight_proposals(c)
        assert stored == [0, 1]  # 6 MiB; a third 3 MiB value would pass 8 MiB
        await more_checks(c)
        await c.close()
        return watch

    async def eight_proposals(c: AClient) -> list[int]:
        stored = []
        for i in range(8):  # 24 MiB if nothing counted them
            try:
                result = await c.call("proposal.submit", writes(f"p{i}", (f"k{i}", three)))
            except RpcFailed as exc:
                assert exc.code == -32602, exc.error
                assert "nothing was run" in str(exc.message) and "budget" in str(exc.message)
                assert exc.error["data"]["budget"] == 8 * MiB
                continue
            assert result["results"][0]["status"] == "succeeded", result
            stored.append(i)
        return stored

    async def more_checks(c: AClient) -> None:
        assert sorted(await c.call("state.keys")) == ["k0", "k1"]
        # state.set sees the proposals' share of the budget
        with pytest.raises(RpcFailed, match="budget"):
            await c.call("state.set", {"key": "k9", "value": three})
        # overwriting a key a proposal wrote reuses its share, by either path
        await c.call("state.set", {"key": "k0", "value": "small"})
        ok = await c.call("proposal.submit", writes("again", ("k2", three)))
        assert ok["results"][0]["status"] == "succeeded"
        # a proposal whose writes would not all fit runs nothing
        await c.call("state.set", {"key": "k0", "value": None})
        before = sorted(await c.call("state.keys"))
        with pytest.raises(RpcFailed, match="nothing was run"):
            await c.call("proposal.submit", writes("two", ("a", "t" * MiB), ("b", "u" * MiB)))
        assert sorted(await c.call("state.keys")) == before

    watch = asyncio.run(main())
    note("state: bystander while proposals write past the budget", watch.summary())
    assert watch.errors == [] and watch.p99() < 0.100, watch.summary()
    grew = srv.rss() - rss_before
    note("state: server RSS growth after 8 proposals of 3 MiB writes (MiB)", mib(grew))
    assert grew < 100 * MiB, f"server RSS grew {mib(grew)} MiB"

"""Memory calls sent back to back on one connection, without waiting for replies, are applied
in arrival order per graph, whether a call runs inline on the loop or in a worker thread (a
large write, a bound graph): a reply is sent once its write is committed, and every later call
sees it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Client, agent_auth

BIG = "word " * 8000  # over the inline-write threshold: stored in a worker thread


def pipelined(c: Client, calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    for i, (method, params) in enumerate(calls):
        c.send({"jsonrpc": "2.0", "id": i, "method": method, "params": params})
    replies = [c.recv_reply(i) for i in range(len(calls))]
    return [r.get("result", r.get("error")) for r in replies]


@pytest.mark.parametrize("bound", [False, True])
def test_pipelined_calls_apply_in_arrival_order(runtime, connect_client, bound: bool) -> None:
    c = connect_client(auth=agent_auth(runtime, "alice")) if bound else connect_client()
    calls: list[tuple[str, dict[str, Any]]] = []
    for i in range(20):
        body = BIG + f"marker{i}" if i % 4 == 0 else f"small marker{i}"
        calls.append(("memory.add_fact", {"subject": "s", "body": body, "fact_id": f"f{i}"}))
        calls.append(("memory.fact_count", {}))
    calls.append(("memory.delete", {"id": "f3"}))
    calls.append(("memory.fact_count", {}))
    calls.append(("memory.query", {"query": "marker19", "k": 1}))
    results = pipelined(c, calls)
    assert results[0:40:2] == list(range(1, 21))
    assert results[1:40:2] == list(range(1, 21))
    assert results[40]["deleted"] is True and results[40]["fact_count"] == 19
    assert results[41] == 19
    assert [f["fact_id"] for f in results[42]] == ["f19"]

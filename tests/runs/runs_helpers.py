"""Callers and small helpers shared by the run store tests."""

from __future__ import annotations

from typing import Any

from carnb.runs import Caller, RunStore

AGENT_A = Caller(client_id="s1", agent_id="agent-a")
AGENT_A_LATER = Caller(client_id="s7", agent_id="agent-a")  # agent-a on another connection
AGENT_B = Caller(client_id="s2", agent_id="agent-b")
UNBOUND = Caller(client_id="s3")
UNBOUND_2 = Caller(client_id="s4")
HOST = Caller(client_id="s5", is_host=True)


def turns(n: int, start: int = 0, **extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "prompt": f"p{start + i}",
            "tool": "search",
            "parameters": {"q": start + i},
            "output": f"o{start + i}",
            **extra,
        }
        for i in range(n)
    ]


def indexes(store: RunStore, run_id: str) -> list[int]:
    trace = store.get_trace(HOST, run_id)
    return [r["index"] for r in trace["records"]]


def settle(store: RunStore) -> None:
    """Wait until every committed record was announced to listeners (a PostgreSQL store
    announces from its notification thread; SQLite already did, in the writing thread)."""
    sync = getattr(store, "sync", None)
    if sync is not None:
        assert sync(), "records were not announced in time"

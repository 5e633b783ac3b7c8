"""The authorisation matrix (authorize_run_access) for every run operation and every caller."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from carnb.errors import CarnbError, Forbidden, NotFound
from carnb.protocol.session import ClientSession
from carnb.runs import ACTIONS, Caller, RunStore, as_caller
from tests.runs.runs_helpers import AGENT_A, AGENT_A_LATER, AGENT_B, HOST, UNBOUND, UNBOUND_2, turns

UNKNOWN = "run-00000000000000000000000000000000"

# Who may do what to a run agent-a started (in session s1), and to a run an unbound session
# started under agent_name "bot" (session s3). "owner": everything; "host": read, subscribe,
# cancel; "none": nothing, and the same answers as for an unknown run id.
AGENT_RUN = [
    (AGENT_A, "owner"),
    (AGENT_A_LATER, "owner"),
    (AGENT_B, "none"),
    (UNBOUND, "none"),
    (HOST, "host"),
]
NAME_RUN = [(UNBOUND, "owner"), (UNBOUND_2, "none"), (AGENT_A, "none"), (HOST, "host")]
ALLOWED = {"owner": ACTIONS, "host": {"read", "subscribe", "cancel"}, "none": set()}


def _agent_run(store: RunStore) -> str:
    return store.start(AGENT_A, intent="agent-a's run")["run_id"]


def _name_run(store: RunStore) -> str:
    return store.start(UNBOUND, intent="bot's run", agent_name="bot")["run_id"]


CASES = [(_agent_run, c, r) for c, r in AGENT_RUN] + [(_name_run, c, r) for c, r in NAME_RUN]
IDS = [f"agent-run/{c.client_id}:{r}" for _, c, r in CASES[:5]] + [
    f"name-run/{c.client_id}:{r}" for _, c, r in CASES[5:]
]


def _outcome(fn: Callable[[], Any], run_id: str) -> tuple[str, Any]:
    """A call's answer with the run id blanked, so two runs' answers compare equal."""
    try:
        result = fn()
    except CarnbError as exc:
        return type(exc).__name__, exc.message.replace(run_id, "<id>")
    if isinstance(result, dict) and result.get("run_id") == run_id:
        result = {**result, "run_id": "<id>"}
    return "ok", result


@pytest.mark.parametrize(("make_run", "caller", "role"), CASES, ids=IDS)
def test_authorize_follows_the_table(
    store: RunStore, make_run: Callable[[RunStore], str], caller: Caller, role: str
) -> None:
    run_id = make_run(store)
    for action in sorted(ACTIONS):
        summary = store.authorize(caller, run_id, action)
        if action in ALLOWED[role]:
            assert summary is not None and summary["run_id"] == run_id, action
        else:
            assert summary is None, action
        assert store.authorize(caller, UNKNOWN, action) is None
    with pytest.raises(ValueError, match="unknown run action"):
        store.authorize(caller, run_id, "delete")


@pytest.mark.parametrize(("make_run", "caller", "role"), CASES, ids=IDS)
def test_read_write_and_end_follow_the_table(
    store: RunStore, make_run: Callable[[RunStore], str], caller: Caller, role: str
) -> None:
    run_id = make_run(store)

    trace = store.get_trace(caller, run_id)
    written = store.record_turns(caller, run_id, turns(2))
    if role == "none":
        assert trace == {"run_id": run_id, "not_found": True}
    else:
        assert trace["status"] == "in_progress" and trace["records"][0]["record"] == "started"
    if role == "owner":
        assert written == {"run_id": run_id, "base_index": 1, "count": 2, "ok": True}
    else:  # the host reads but does not write someone else's turns
        assert written == {
            "run_id": run_id,
            "ok": False,
            "dropped": "run_not_found",
            "base_index": 0,
            "count": 0,
        }

    run_to_complete, run_to_cancel = make_run(store), make_run(store)
    if role == "owner":
        assert store.complete(caller, run_to_complete, {"status": "success"})["ok"] is True
        assert store.cancel(caller, run_to_cancel, "stop")["status"] == "cancelled"
    elif role == "host":
        with pytest.raises(Forbidden, match="only the run's owner may complete.*runs.cancel"):
            store.complete(caller, run_to_complete, {"status": "success"})
        assert store.cancel(caller, run_to_cancel, "host stop")["status"] == "cancelled"
        assert store.get_trace(HOST, run_to_cancel)["records"][-1]["reason"] == "host stop"
    else:
        with pytest.raises(NotFound, match="run not found"):
            store.complete(caller, run_to_complete, {"status": "success"})
        with pytest.raises(NotFound, match="run not found"):
            store.cancel(caller, run_to_cancel, "stop")

    expected = {
        "owner": {"completed", "cancelled"},
        "host": {"in_progress", "cancelled"},
        "none": {"in_progress"},
    }[role]
    statuses = {store.get_trace(HOST, r)["status"] for r in (run_to_complete, run_to_cancel)}
    assert statuses == expected
    # Whatever was refused wrote nothing.
    turn_records = store.get_trace(HOST, run_id)["records"][1:]
    assert len(turn_records) == (2 if role == "owner" else 0)


@pytest.mark.parametrize(
    ("make_run", "caller", "role"),
    [c for c in CASES if c[2] == "none"],
    ids=[i for i, c in zip(IDS, CASES, strict=True) if c[2] == "none"],
)
def test_a_non_owner_learns_nothing_beyond_an_unknown_id(
    store: RunStore, make_run: Callable[[RunStore], str], caller: Caller, role: str
) -> None:
    run_id = make_run(store)
    calls: list[Callable[[str], Callable[[], Any]]] = [
        lambda r: lambda: store.get_trace(caller, r),
        lambda r: lambda: store.record_turns(caller, r, turns(1)),
        lambda r: lambda: store.complete(caller, r, {"status": "success"}),
        lambda r: lambda: store.cancel(caller, r, "x"),
        lambda r: lambda: store.authorize(caller, r, "read"),
    ]
    for call in calls:
        assert _outcome(call(run_id), run_id) == _outcome(call(UNKNOWN), UNKNOWN)
    # Also after the run ended: a non-owner does not learn that it is terminal.
    store.end_incomplete(run_id)
    for call in calls:
        assert _outcome(call(run_id), run_id) == _outcome(call(UNKNOWN), UNKNOWN)
    owner = store.get_trace(HOST, run_id)["agent_id"]
    assert store.list_runs(caller, owner) == {"agent_id": owner, "runs": []}


def test_list_runs_shows_each_caller_only_what_it_may_read(store: RunStore) -> None:
    a1 = store.start(AGENT_A, intent="a1")["run_id"]
    a2 = store.start(AGENT_A_LATER, intent="a2")["run_id"]
    n1 = store.start(UNBOUND, intent="n1", agent_name="bot")["run_id"]
    n2 = store.start(UNBOUND_2, intent="n2", agent_name="bot")["run_id"]

    def ids(caller: Caller, agent: str) -> list[str]:
        return [r["run_id"] for r in store.list_runs(caller, agent)["runs"]]

    assert ids(AGENT_A, "agent-a") == [a2, a1]
    assert ids(AGENT_A_LATER, "agent-a") == [a2, a1]
    assert ids(HOST, "agent-a") == [a2, a1]
    assert ids(AGENT_B, "agent-a") == []
    assert ids(UNBOUND, "agent-a") == []
    assert ids(HOST, "name:bot") == [n2, n1]
    assert ids(UNBOUND, "name:bot") == [n1]  # the name is shared; the runs are not
    assert ids(UNBOUND_2, "name:bot") == [n2]
    assert ids(AGENT_A, "name:bot") == []


def test_host_started_run_for_an_agent_belongs_to_both(store: RunStore) -> None:
    run_id = store.start(HOST, intent="x", agent_id="agent-b")["run_id"]
    assert store.authorize(AGENT_B, run_id, "complete") is not None
    assert store.authorize(Caller("s9", is_host=True), run_id, "complete") is None  # other host
    assert store.authorize(Caller("s9", is_host=True), run_id, "cancel") is not None


def test_a_session_object_can_be_the_caller(store: RunStore) -> None:
    session = ClientSession(agent_id="agent-a")
    caller = as_caller(session)
    assert caller == Caller(client_id=session.client_id, agent_id="agent-a", is_host=False)
    run_id = store.start(session, intent="x")["run_id"]
    assert store.record_turns(session, run_id, turns(1))["ok"] is True
    assert store.authorize(AGENT_A, run_id, "record_turns") is not None
    with pytest.raises(TypeError, match="not a caller"):
        as_caller(object())

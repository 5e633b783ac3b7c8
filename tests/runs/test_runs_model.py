"""Property tests: random operation sequences by random callers agree with a tiny model."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carnb.errors import CarnbError
from carnb.runs import RunStore, slug
from tests.runs.runs_helpers import AGENT_A, AGENT_A_LATER, AGENT_B, HOST, UNBOUND, turns

CALLERS = {"a": AGENT_A, "a2": AGENT_A_LATER, "b": AGENT_B, "u": UNBOUND, "h": HOST}
OWNERS = {"a", "a2"}

ops = st.lists(
    st.tuples(
        st.sampled_from(["turns", "complete", "cancel", "incomplete"]),
        st.sampled_from(sorted(CALLERS)),
        st.integers(min_value=1, max_value=5),
    ),
    max_size=12,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sequence=ops)
def test_random_operations_match_the_model(tmp_path: Path, sequence: list) -> None:
    with RunStore(tmp_path / "model.sqlite3") as store:
        run_id = store.start(AGENT_A, intent="model")["run_id"]
        status, count = "in_progress", 1  # the model: status and number of records
        for op, who, n in sequence:
            caller = CALLERS[who]
            if op == "turns":
                r = store.record_turns(caller, run_id, turns(n))
                if who in OWNERS and status == "in_progress":
                    assert r == {"run_id": run_id, "base_index": count, "count": n, "ok": True}
                    count += n
                else:
                    assert r["ok"] is False and r["count"] == 0
                    want = "run_terminal" if who in OWNERS else "run_not_found"
                    assert r["dropped"] == want
            elif op == "incomplete":
                ended = store.end_incomplete(run_id)
                assert ended == (status == "in_progress")
                if ended:
                    status, count = "incomplete", count + 1
            else:
                may = who in OWNERS or (op == "cancel" and who == "h")
                try:
                    if op == "complete":
                        store.complete(caller, run_id, {"status": "success"})
                    else:
                        store.cancel(caller, run_id, "stop")
                    ok = True
                except CarnbError:
                    ok = False
                assert ok == (may and status == "in_progress")
                if ok:
                    status = "completed" if op == "complete" else "cancelled"
                    count += 1
            trace = store.get_trace(HOST, run_id)
            assert trace["status"] == status
            assert [r["index"] for r in trace["records"]] == list(range(count))
            kinds = [r["record"] for r in trace["records"]]
            assert kinds[0] == "started" and "started" not in kinds[1:]
            assert kinds.count("ended") == (status != "in_progress")
            assert status == "in_progress" or kinds[-1] == "ended"


@given(st.text(max_size=80))
def test_slug_is_url_safe_bounded_and_stable(name: str) -> None:
    s = slug(name)
    assert re.fullmatch(r"([a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?)?", s), s
    assert slug(s) == s

"""``%car run replay|fork|diff`` and fork lineage in ``%car run list``, in an IPython shell: the
notebook's own session drives an agent loop (infer with memory context, recorded model turns,
proposals through a notebook tool), then replays, forks and diffs it."""

from __future__ import annotations

import time
from typing import Any

import pytest

import carnb
from carnb.kernel import extension
from carnb.kernel.calls import CarMagicError
from tests.compat import loopmodels
from tests.server.test_time_travel_wire import agent_loop

pytestmark = pytest.mark.kernel


@pytest.fixture
def rt(loaded: Any) -> Any:
    ext = extension.active()
    assert ext is not None and ext.engine.runtime is not None
    calls = {"adder": 0}

    def adder(request: dict[str, Any]) -> Any:
        calls["adder"] += 1
        return loopmodels.adder(request)

    carnb.model(adder, name="adder")
    carnb.model(
        lambda r: {"tool_calls": [{"id": "f", "name": "finish", "arguments": {"answer": "42"}}]},
        name="finisher",
    )

    @carnb.tool
    def add(a: float, b: float) -> dict[str, float]:
        """add two numbers"""
        return {"sum": a + b}

    return Notebook(ext.engine.runtime, calls)


class Notebook:
    """The notebook's runtime and how often the adder model was called."""

    def __init__(self, runtime: Any, calls: dict[str, int]) -> None:
        self.runtime = runtime
        self.model_calls = calls
        self.token = runtime.token

    def call(self, method: str, params: Any = None) -> Any:
        return self.runtime.call(method, params)

    def loop(self, goal: str, **kw: Any) -> str:
        return agent_loop(self, goal, agent_name="notebook", **kw)


def wait_ended(loaded: Any, run_id: str) -> Any:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        trace = loaded.run_line_magic("car", f"run trace {run_id}")
        if trace.trace["status"] != "in_progress":
            return trace
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not end")


def test_replay_fork_diff_and_lineage(loaded: Any, rt: Any) -> None:
    loaded.run_line_magic("car", "memory add adding 'add the numbers one at a time'")
    parent = rt.loop("add 1, 2 and 3", system="wrong", context_query="adding")
    before = rt.model_calls["adder"]

    replayed = loaded.run_line_magic("car", f"run replay {parent}")
    assert replayed.report["reproduced"] is True and rt.model_calls["adder"] == before
    assert "reproduces from its recording" in replayed.text() and "0 model calls" in replayed.text()

    forked = loaded.run_line_magic(
        "car", f"run fork {parent} --at 2 --model finisher --system 'be quick'"
    )
    assert forked.reply["forked_from"] == {"run_id": parent, "turn": 2}
    assert "`%car run diff" in forked.text()
    wait_ended(loaded, forked.run_id)

    answered = loaded.run_line_magic(
        "car", f"""run fork {parent} --at 1 --tool-output add='{{"sum": 7}}' --max-turns 8"""
    )
    trace = wait_ended(loaded, answered.run_id)
    assert trace.trace["records"][-1]["outcome"]["summary"] == "7"

    diff = loaded.run_line_magic("car", f"run diff {parent} {forked.run_id}")
    assert diff.first_difference == 2
    assert [r["same"] for r in diff.rows] == [True, False, False, False]
    assert diff.rows[1]["tool_calls_b"] == ['finish({"answer": "42"})']
    assert any("one at a time" in fact for fact in diff.rows[0]["context_facts_a"])
    html = diff._repr_mimebundle_()["text/html"]
    assert "<del>" in html and "differs" in html and rt.token not in html
    frame = diff.to_dataframe()
    assert list(frame["turn"]) == [1, 2, 3, 4] and frame["tokens_a"][0] == 15

    listed = loaded.run_line_magic("car", "run list --agent name:notebook")
    order = [r[0].text.lstrip("\u00a0↳ ") for r in listed.rows]
    assert order == [parent, forked.run_id, answered.run_id]  # forks under it, oldest first
    assert listed.rows[order.index(forked.run_id)][0].text.startswith("↳ ")
    assert "forked from" in listed.text()


def test_a_fork_with_live_shows_its_timeline_as_it_runs(loaded: Any, rt: Any) -> None:
    parent = rt.loop("add 1, 2")
    live = loaded.run_line_magic("car", f"run fork {parent} --at 2 --model finisher --live")
    wait_ended(loaded, live.run_id)
    deadline = time.monotonic() + 10
    while not any(r.get("record") == "ended" for r in live.records.values()):
        assert time.monotonic() < deadline, "the live timeline did not reach the end"
        time.sleep(0.05)
    live.flush()
    kinds = [live.records[i]["record"] for i in sorted(live.records)]
    assert kinds == ["started", "model_turn", "turn", "model_turn", "turn", "ended"]


def test_fork_errors_are_one_line(loaded: Any, rt: Any) -> None:
    parent = rt.loop("add 1")
    with pytest.raises(CarMagicError, match="at is 9, but run"):
        loaded.run_line_magic("car", f"run fork {parent} --at 9")
    with pytest.raises(CarMagicError, match="is not ACTION=VALUE"):
        loaded.run_line_magic("car", f"run fork {parent} --at 1 --tool-output nothing")


def test_the_panel_lists_forks_under_their_parent_and_opens_their_trace(
    loaded: Any, rt: Any
) -> None:
    from tests.kernel.test_panel import wait_for

    panel = loaded.run_line_magic("car", "status")
    parent = rt.loop("add 1, 2 and 3")
    forked = loaded.run_line_magic("car", f"run fork {parent} --at 2 --model finisher")
    wait_ended(loaded, forked.run_id)
    deeper = loaded.run_line_magic("car", f"run fork {forked.run_id} --at 2 --answer done")
    wait_ended(loaded, deeper.run_id)
    assert wait_for(lambda: panel.lineage.value.count("success") == 2)
    (table,) = [panel.lineage.value]
    assert "forks, under their parent" in table
    # the parent (the notebook's run, ended), its fork under it, the fork's fork under that
    assert table.index(parent) < table.index(forked.run_id) < table.index(deeper.run_id)
    assert "@ turn 2" in table and "\u00a0\u00a0↳ " in table
    shown = [b.tooltip.removeprefix("live trace of ") for b in panel.traces.pick.children[1:]]
    assert shown[-3:] == [parent, forked.run_id, deeper.run_id]  # each under its parent
    button = panel.traces.buttons[forked.run_id]
    assert button.description.startswith("↳ @2 ") and button.description.endswith("(ended)")
    button.click()
    live = panel.traces.live
    assert live is not None and live.run_id == forked.run_id
    kinds = [live.records[i]["record"] for i in sorted(live.records)]
    assert kinds == ["started", "model_turn", "turn", "model_turn", "turn", "ended"]
    text = panel.snapshot().text()
    lines = [line for line in text.splitlines() if forked.run_id in line]
    assert any(line.lstrip().startswith("↳ " + forked.run_id) for line in lines), text
    assert rt.token not in panel.snapshot().html()


def test_the_notebooks_own_infer_in_a_run_is_kept_for_replay(loaded: Any, rt: Any) -> None:
    loaded.run_cell("%car run start ask the adder")
    run_id = carnb.current().session.current_run_id
    loaded.run_cell("%%car infer --model adder\nadd 1 and 2")
    loaded.run_cell("%car run complete")
    trace = loaded.run_line_magic("car", f"run trace {run_id}").trace
    kinds = [r["record"] for r in trace["records"]]
    assert kinds[:3] == ["started", "model_turn", "turn"]  # the infer, then its cell's turn
    kept = trace["records"][1]
    assert kept["inference"]["unattached"] is True and kept["model_id"] == "adder"
    assert kept["inference"]["request"]["messages"][-1]["content"] == "add 1 and 2"
    before = rt.model_calls["adder"]
    replayed = loaded.run_line_magic("car", f"run replay {run_id}")
    assert replayed.report["model_turns"] == 1 and replayed.report["recorded_requests"] == 1
    assert rt.model_calls["adder"] == before


def test_run_ids_are_shown_short_and_typed_as_a_prefix(loaded: Any, rt: Any) -> None:
    from carnb.kernel.style import shorten, typeable

    parent = rt.loop("add 1, 2")
    forked = loaded.run_line_magic("car", f"run fork {typeable(parent)} --at 2 --model finisher")
    assert forked.reply["forked_from"]["run_id"] == parent  # the prefix named the parent
    message = forked.text()
    assert parent not in message and forked.run_id not in message
    assert f"run {shorten(forked.run_id)} forks {shorten(parent)} at model turn 2" in message
    assert f"`%car run diff {typeable(parent)} {typeable(forked.run_id)}`" in message
    assert f'title="{forked.run_id}"' in forked._repr_mimebundle_()["text/html"]
    wait_ended(loaded, forked.run_id)

    # the short form as shown (with its "…") is accepted too
    trace = loaded.run_line_magic("car", f"run trace {shorten(forked.run_id)}")
    assert trace.trace["run_id"] == forked.run_id
    diff = loaded.run_line_magic("car", f"run diff {typeable(parent)} {typeable(forked.run_id)}")
    assert diff.first_difference == 2
    replayed = loaded.run_line_magic("car", f"run replay {typeable(parent)}")
    assert replayed.report["run_id"] == parent and parent not in replayed.text()

    listed = loaded.run_line_magic("car", "run list --agent name:notebook")
    html = listed._repr_mimebundle_()["text/html"]
    # the "forked from" column: the short parent id, the full id on hover only
    assert f'title="{parent}">{shorten(parent)}</span> @ turn 2' in html
    assert f">{parent}<" not in html and f"{parent} @ turn 2" in listed.text()


def test_an_ambiguous_run_prefix_is_a_clear_error() -> None:
    from carnb.kernel.calls import CarCommandError
    from carnb.kernel.run_ids import resolve_run_id

    known = ["run-" + "ab" * 16, "run-" + "ac" * 16, "run-" + "ff" * 16]
    assert resolve_run_id("run-ab", lambda: known, "%car run trace") == known[0]
    assert resolve_run_id("ff", lambda: known, "%car run trace") == known[2]
    assert resolve_run_id("run-ffff…", lambda: known, "%car run trace") == known[2]
    assert resolve_run_id("run-0", lambda: known, "%car run trace") == "run-0"  # server decides
    with pytest.raises(CarCommandError, match=r"%car run fork: 'run-a' is the start of 2 runs"):
        resolve_run_id("run-a", lambda: known, "%car run fork")

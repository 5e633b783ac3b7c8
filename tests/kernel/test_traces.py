"""Run traces in the notebook: the static view is readable (full source of a cell, durations),
the live view grows while an outside agent records turns, .to_dataframe() with pandas, the
recorded [N] of a %%car run cell; and agents known only from the data directory."""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import carnb
from tests.conftest import Client


def wait_for(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


CELL = "total = 0\nfor i in range(3):\n    total += i\ntotal"


def test_static_trace_shows_the_whole_cell_and_durations(loaded: Any) -> None:
    loaded.run_line_magic("car", "run start read me")
    loaded.run_cell(CELL, store_history=True)
    loaded.run_line_magic("car", "run complete --summary done")
    result = loaded.run_line_magic("car", "run trace")
    text = str(result)
    # the source keeps its lines (not squashed into one), the output is there
    assert "        for i in range(3):\n            total += i" in text
    assert "output:\n        3" in text
    html = result._repr_mimebundle_()["text/html"]
    assert "<details" in html and "for i in range(3):\n    total += i" in html
    assert re.search(r"ended +completed", text) and "turn    cell [" in text
    assert "read me" in text.splitlines()[0]
    # the title: the full run id in the text (for copying), shortened in HTML, full on hover
    run_id = result.trace["run_id"]
    assert text.startswith(f"run {run_id} · ")
    assert f'title="{run_id}">{run_id[:12]}…</span> · agent' in html
    assert f">{run_id}<" not in html


def test_to_dataframe(loaded: Any) -> None:
    pd = pytest.importorskip("pandas")
    started = loaded.run_line_magic("car", "run start frames")
    loaded.run_cell("1 + 1", store_history=True)
    loaded.run_line_magic("car", "run complete")
    frame = loaded.run_line_magic("car", f"run trace {started.run_id}").to_dataframe()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame["kind"]) == ["started", "turn", "ended"]
    assert frame.loc[1, "prompt"] == "1 + 1" and frame.loc[1, "output"] == "2"
    runs = loaded.run_line_magic("car", "run list").to_dataframe()
    assert list(runs["run_id"]) == [started.run_id]
    loaded.run_line_magic("car", "memory add deploy 'needs CI' --id f1")
    facts = loaded.run_line_magic("car", "memory query deploy").to_dataframe()
    assert list(facts["fact_id"]) == ["f1"]


def test_to_dataframe_without_pandas_says_so(loaded: Any, monkeypatch: Any) -> None:
    loaded.run_line_magic("car", "run start no pandas")
    loaded.run_line_magic("car", "run complete")
    trace = loaded.run_line_magic("car", "run trace")
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now fails
    with pytest.raises(ImportError, match="needs pandas.*pip install pandas"):
        trace.to_dataframe()


def test_live_trace_grows_while_an_outside_agent_records(loaded: Any) -> None:
    rt = carnb.current()
    loaded.run_line_magic("car", "agent add scout")
    agent = Client(rt.url)
    try:
        token = rt.credentials.agents.token_for("scout")
        agent.call("session.auth", {"token": token, "agent_id": "scout"})
        run_id = agent.call("runs.start", {"intent": "outside work"})["run_id"]
        live = loaded.run_line_magic("car", f"run trace {run_id} --live")
        assert len(live.timeline.children) == 1  # started
        for i in range(3):
            turn = {"tool": "search", "parameters": {"q": f"query {i}"}, "output": f"hit {i}"}
            agent.call("runs.record_turns", {"run_id": run_id, "turns": [turn]})
            # the loop thread appends the entry by itself (no cell runs meanwhile)
            wait_for(lambda n=i + 2: len(live.timeline.children) == n)
        assert "tool search" in live.timeline.children[-1].value
        assert "hit 2" in live.timeline.children[-1].value
        agent.call("runs.complete", {"run_id": run_id, "outcome": {"status": "success"}})
        wait_for(lambda: "completed" in live.title.value)
        assert live._unwatch is None  # an ended run: the view stopped watching the store
        assert len(live.timeline.children) == 5
        assert [r["record"] for r in live.records.values()] == [
            "started",
            "turn",
            "turn",
            "turn",
            "ended",
        ]
    finally:
        agent.close()
    loaded.run_line_magic("unload_ext", "carnb")
    assert live.widget.comm is None  # closed with the engine


def test_live_trace_of_a_long_run_shows_every_record_then_grows(
    loaded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run of 250 turns spans three `runs.get_trace` pages (100 records each): the live view
    shows all of them, turns recorded while it opens arrive with no gap and none twice, and it
    keeps growing; the static view's cap does not apply to it."""
    from carnb.kernel import cmd_runs

    monkeypatch.setattr(cmd_runs, "TRACE_SHOWN_RECORDS", 120)  # a cap below the run's length
    rt = carnb.current()
    loaded.run_line_magic("car", "agent add scout")
    agent = Client(rt.url)
    try:
        token = rt.credentials.agents.token_for("scout")
        agent.call("session.auth", {"token": token, "agent_id": "scout"})
        run_id = agent.call("runs.start", {"intent": "a long run"})["run_id"]
        for start in range(0, 250, 50):
            turns = [{"tool": "step", "parameters": {"n": n}} for n in range(start, start + 50)]
            agent.call("runs.record_turns", {"run_id": run_id, "turns": turns})
        static = loaded.run_line_magic("car", f"run trace {run_id}")
        assert len(static.trace["records"]) == 200 and static.trace["next_cursor"] == 200

        more = 40  # recorded one by one while the live view reads its pages

        def record_more() -> None:
            writer = Client(rt.url)
            try:
                writer.call("session.auth", {"token": token, "agent_id": "scout"})
                for n in range(250, 250 + more):
                    turn = {"tool": "step", "parameters": {"n": n}}
                    reply = writer.call("runs.record_turns", {"run_id": run_id, "turns": [turn]})
                    assert reply.get("ok") is not False, reply
            finally:
                writer.close()

        writer = threading.Thread(target=record_more)
        writer.start()
        live = loaded.run_line_magic("car", f"run trace {run_id} --live")
        writer.join(30)
        total = 1 + 250 + more  # started + turns
        wait_for(lambda: len(live.timeline.children) == total)
        assert sorted(live.records) == list(range(total))
        steps = [r["turn"]["parameters"]["n"] for r in live.records.values() if "turn" in r]
        assert sorted(steps) == list(range(250 + more))  # each turn once
        agent.call("runs.record_turns", {"run_id": run_id, "turns": [{"tool": "last"}]})
        wait_for(lambda: len(live.timeline.children) == total + 1)
        assert "tool last" in live.timeline.children[-1].value
    finally:
        agent.close()


def test_agents_on_disk_are_listed_and_reattached(loaded: Any) -> None:
    loaded.run_line_magic("car", "agent add scout")
    loaded.run_line_magic("car", "auth --agent scout")
    loaded.run_line_magic("car", "memory add scouting 'remember the trail'")
    loaded.run_line_magic("car", "run start explore")
    loaded.run_line_magic("car", "run complete")
    loaded.run_line_magic("reload_ext", "carnb")  # a new runtime: nothing registered
    listed = loaded.run_line_magic("car", "agent list")
    assert listed.agents == [
        {"agent": "scout", "status": "on disk", "sessions": "", "memory": "yes", "runs": 1}
    ]
    added = loaded.run_line_magic("car", "agent add scout")
    assert "re-attached (memory graph, 1 run(s) on disk)" in str(added)
    [row] = loaded.run_line_magic("car", "agent list").agents
    assert row["status"] == "idle"
    loaded.run_line_magic("car", "auth --agent scout")
    assert loaded.run_line_magic("car", "memory count").value == 1


@pytest.mark.kernel
def test_car_run_cell_records_its_own_execution_count(kernel: Any) -> None:
    kernel.ok("%load_ext carnb")
    kernel.ok("x = 1")
    msg_id = kernel.submit("%%car run counted\nx + 1")
    kernel.collect(msg_id)
    [count] = kernel.value(
        "[n for n, s in enumerate(In) if s.startswith('get_ipython().run_cell_magic')]"
    )  # its [N]
    kernel.ok("t = %car run trace")
    assert kernel.value("[t['parameters'] for t in t.turns]") == [{"execution_count": count}]


@pytest.mark.kernel
def test_live_trace_widget_updates_in_a_real_kernel_while_idle(kernel: Any) -> None:
    """An outside agent records turns while no cell runs: the kernel still sends the new
    timeline entries (widget updates from the loop thread)."""

    kernel.ok("%load_ext carnb")
    kernel.ok("info = %car agent add scout --show-tokens")
    env = kernel.value("info.env")
    agent = Client(env["CAR_DAEMON_URL"])
    try:
        agent.call(
            "session.auth", {"token": env["CAR_AGENT_TOKEN"], "agent_id": env["CAR_AGENT_ID"]}
        )
        run_id = agent.call("runs.start", {"intent": "outside work"})["run_id"]
        shown = kernel.ok(f"live = %car run trace {run_id} --live\nlive")
        assert shown.data("application/vnd.jupyter.widget-view+json")
        turn = {"tool": "fetch", "parameters": {"url": "x"}, "output": "marker-output-7"}
        agent.call("runs.record_turns", {"run_id": run_id, "turns": [turn]})
        kernel.wait_widget_text("marker-output-7")
        agent.call("runs.complete", {"run_id": run_id, "outcome": {"status": "success"}})
    finally:
        agent.close()
    kernel.ok("live.flush()")
    assert kernel.value("[r['record'] for r in live.records.values()]") == [
        "started",
        "turn",
        "ended",
    ]


def test_the_live_trace_has_the_static_traces_look(loaded: Any) -> None:
    """Colours per record kind and single line spacing come from carnb's stylesheet, which
    applies under its root class: the live widget carries both, as the panel does."""
    from carnb.kernel.style import ROOT, STYLESHEET

    loaded.run_line_magic("car", "run start look alike")
    loaded.run_cell("x = 1")
    live = loaded.run_line_magic("car", "run trace --live")
    try:
        assert ROOT in live.widget._dom_classes
        assert live.title.value.startswith(STYLESHEET)
        run_id = live.trace["run_id"]
        assert f'title="{run_id}">' in live.title.value and f">{run_id}<" not in live.title.value
        assert any("carnb-trace-turn" in child.value for child in live.timeline.children)
        assert re.search(r"\.widget-html\{height:auto;min-height:0", STYLESHEET)
    finally:
        loaded.run_line_magic("car", "run complete")


def test_the_live_trace_shows_turn_details_as_the_static_trace_does(loaded: Any) -> None:
    """The same record carries the same classes live and static: a turn's details sit in the
    stylesheet's grey code box (``pre.carnb-trace-detail``), inside a ``carnb-trace`` block."""
    from carnb.kernel.style import STYLESHEET

    loaded.run_line_magic("car", "run start boxes")
    loaded.run_cell(CELL, store_history=True)
    loaded.run_line_magic("car", "run complete --summary done")
    static = loaded.run_line_magic("car", "run trace")._repr_mimebundle_()["text/html"]
    live = loaded.run_line_magic("car", "run trace --live")
    try:
        live.flush()
        shown = "".join(child.value for child in live.timeline.children)
        classes = re.compile(r'class="([^"]+)"')
        live_classes = set(classes.findall(shown)) | {" ".join(live.timeline._dom_classes)}
        static_entries = static[static.index('<div class="carnb-trace">') :]
        assert set(classes.findall(static_entries)) <= live_classes | {"carnb-h", "carnb-id"}
        assert '<pre class="carnb-trace-detail">' in shown  # the cell's source and output
        assert "for i in range(3):\n    total += i" in shown
        assert "pre.carnb-trace-detail{display:block" in STYLESHEET
        assert re.search(
            r"pre\.carnb-trace-detail\{[^}]*background:var\(--jp-layout-color2", STYLESHEET
        )
        assert "style=" not in shown  # no inline style that the stylesheet cannot match
    finally:
        live.close()

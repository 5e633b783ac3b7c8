"""The status panel: what it shows, that the loop thread updates it while the kernel thread is
blocked, that bursts are throttled, and that it never shows a token."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import pytest

import carnb
from carnb.kernel.panel_trace import shown_runs
from tests.conftest import Client


def wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def html(panel: Any) -> str:
    return panel.title.value + panel.mine.value + panel.others.value


def test_status_shows_the_notebook_session(loaded: Any) -> None:
    panel = loaded.run_line_magic("car", "status")
    assert "carnb-panel" in panel.widget._dom_classes
    rt = carnb.current()
    assert rt.url in panel.title.value
    assert 'data-authenticated="yes"' in panel.mine.value
    assert 'data-host="yes"' in panel.mine.value
    assert 'data-agent="(none)"' in panel.mine.value
    assert 'data-browser="not launched"' in panel.mine.value
    assert loaded.run_line_magic("car", "status") is panel  # one panel, shown again
    bundle = panel._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "notebook" in bundle["text/plain"]
    # A static copy beside the widget: what a notebook without a live kernel shows.
    static = bundle["text/html"]
    assert 'class="carnb-out carnb-panel-static"' in static
    assert rt.url in static and 'data-authenticated="yes"' in static


def test_snapshot_is_a_static_copy_of_that_moment(loaded: Any) -> None:
    panel = loaded.run_line_magic("car", "status")
    before = loaded.run_line_magic("car", "status --snapshot")
    assert before is not panel and "application/vnd.jupyter.widget-view+json" not in (
        before._repr_mimebundle_()
    )
    loaded.run_line_magic("car", "agent add scout")
    loaded.run_cell("%car auth --agent scout")
    after = loaded.run_line_magic("car", "status --snapshot")
    assert 'data-agent="(none)"' in before.html() and 'data-agent="scout"' in after.html()
    assert 'data-agent="scout"' in panel.mine.value  # the live panel moved on
    assert "snapshot at" in after.html() and "notebook" in after.text()


def test_panel_follows_cells(loaded: Any) -> None:
    panel = loaded.run_line_magic("car", "status")
    loaded.run_line_magic("car", "agent add scout")
    loaded.run_cell("%car auth --agent scout")
    assert 'data-agent="scout"' in panel.mine.value  # refreshed after the cell
    loaded.run_cell('%car memory add deploy "needs green CI"')
    assert 'data-facts="1"' in panel.mine.value
    loaded.run_cell("%car run start watch me")
    rid = carnb.current().session.current_run_id
    assert f'data-run="{rid}"' in panel.mine.value and 'data-turns="0"' in panel.mine.value
    loaded.run_cell("1 + 1")
    loaded.run_cell("2 + 2")
    assert 'data-turns="2"' in panel.mine.value
    loaded.run_cell("%car run complete")
    assert 'data-run="(none)"' in panel.mine.value


def test_loop_thread_updates_while_the_kernel_thread_is_blocked(loaded: Any) -> None:
    panel = loaded.run_line_magic("car", "status")
    rt = carnb.current()
    loaded.run_line_magic("car", "agent add scout")
    token = rt.credentials.agents.token_for("scout")
    before = panel.refreshes
    done = threading.Event()
    seen: dict[str, Any] = {}

    def agent() -> None:
        c = Client(rt.url)
        c.call("session.auth", {"agent_id": "scout", "token": token})
        c.call("memory.add_fact", {"subject": "a", "body": "first"})
        c.call("memory.add_fact", {"subject": "b", "body": "second"})
        rid = c.call("runs.start", {"intent": "external"})["run_id"]
        c.call("runs.record_turns", {"run_id": rid, "turns": [{"prompt": "p1"}, {"prompt": "p2"}]})
        seen["rid"], seen["client"] = rid, c
        done.set()

    threading.Thread(target=agent, daemon=True).start()
    # The kernel thread is blocked (as in a cell running time.sleep): no cell ends, no flush;
    # only the loop thread can change the panel meanwhile.
    assert done.wait(20)

    def shows_the_agent() -> bool:
        rows = [r for r in panel.rows if r["agent_id"] == "scout"]
        return bool(rows) and rows[0]["run_turns"] == 2 and rows[0]["fact_count"] == 2

    assert wait_for(shows_the_agent)
    assert panel.refreshes > before
    others = panel.others.value
    row = next(r for r in panel.rows if r["agent_id"] == "scout")
    assert row["current_run_id"] == seen["rid"]
    assert f'title="{seen["rid"]}"' in others and "<td>scout</td>" in others
    assert '<td class="carnb-num">2</td>' in others  # the run's turns
    seen["client"].close()
    assert wait_for(lambda: all(r["agent_id"] != "scout" for r in panel.rows))
    # The session that ended stays, greyed, with its last run (ended) and state.
    assert wait_for(lambda: '<tr class="carnb-ended">' in panel.others.value)
    ended = panel.others.value.split('<tr class="carnb-ended">')[1]
    ended = ended.split("</tr>")[0]
    assert "<td>scout</td>" in ended and "ended" in ended and f'title="{seen["rid"]}"' in ended
    assert '<td class="carnb-num">2</td>' in ended  # its run's final turn count
    assert "1 ended" in panel.title.value


def test_bursts_are_throttled(loaded: Any) -> None:
    panel = loaded.run_line_magic("car", "status")
    rt = carnb.current()
    for name in ("a1", "a2"):
        loaded.run_line_magic("car", f"agent add {name}")
    c = Client(rt.url)
    try:
        before, t0 = panel.refreshes, time.monotonic()
        n = 40
        for i in range(n):  # each re-auth changes the session: one event each
            agent = "a1" if i % 2 else "a2"
            c.call(
                "session.auth", {"agent_id": agent, "token": rt.credentials.agents.token_for(agent)}
            )
        assert wait_for(lambda: any(r["agent_id"] == "a1" for r in panel.rows))
        time.sleep(0.3)
        elapsed = time.monotonic() - t0
        refreshes = panel.refreshes - before
        # At most one refresh per interval (plus the one a burst starts with), never one per event.
        assert 1 <= refreshes <= math.ceil(elapsed / panel.interval) + 1
        if elapsed < n * panel.interval / 2:
            assert refreshes < n // 2
    finally:
        c.close()


def test_panel_never_shows_a_token(loaded: Any) -> None:
    panel = loaded.run_line_magic("car", "status")
    rt = carnb.current()
    env = loaded.run_line_magic("car", "agent add scout").env
    c = Client(rt.url)
    try:
        c.call("session.auth", {"agent_id": "scout", "token": env["CAR_AGENT_TOKEN"]})
        loaded.run_cell("%car auth --agent scout")
        panel.flush()
        secrets = [rt.token, rt.host_token, env["CAR_AGENT_TOKEN"]]
        shown = html(panel) + panel._repr_mimebundle_()["text/plain"]
        for widget in (panel.title, panel.mine, panel.others, panel.widget):
            shown += str(widget.get_state())
        assert not any(s in shown for s in secrets)
    finally:
        c.close()


def test_a_finished_run_stays_visible_greyed(loaded: Any) -> None:
    panel = loaded.run_line_magic("car", "status")
    loaded.run_cell("%car run start look")
    rid = carnb.current().session.current_run_id
    loaded.run_cell("%car run complete")
    assert 'data-run="(none)"' in panel.mine.value
    mine = panel.mine.value
    assert f'title="{rid}"' in mine and "carnb-muted" in mine and "ended" in mine


def test_unload_closes_the_panel(loaded: Any) -> None:
    panel = loaded.run_line_magic("car", "status")
    loaded.run_line_magic("unload_ext", "carnb")
    assert panel.widget.comm is None  # closed widgets drop their comm
    assert panel._unwatch is None  # every session listener and event watcher detached


def test_a_run_opens_its_live_trace_in_the_panel(loaded: Any) -> None:
    """A button per run the panel shows; a click (as the frontend's) opens that run's live
    trace inside the panel, which grows while an outside client records turns; close it."""
    panel = loaded.run_line_magic("car", "status")
    rt = carnb.current()
    loaded.run_line_magic("car", "agent add scout")
    agent = Client(rt.url)
    try:
        agent.call(
            "session.auth",
            {"agent_id": "scout", "token": rt.credentials.agents.token_for("scout")},
        )
        rid = agent.call("runs.start", {"intent": "outside work"})["run_id"]
        assert wait_for(lambda: rid in panel.traces.buttons)
        button = panel.traces.buttons[rid]
        assert button in panel.traces.pick.children and "…" in button.description
        assert panel.traces.box.children == ()  # nothing open yet
        early = [{"tool": "step", "parameters": {"n": n}} for n in range(150)]  # > one page
        agent.call("runs.record_turns", {"run_id": rid, "turns": early})
        button.click()  # what a click in the browser does, on the kernel thread
        live = panel.traces.live
        assert live is not None and live.run_id == rid
        assert live.widget in panel.traces.box.children
        assert sorted(live.records) == list(range(151))  # started + every turn so far
        assert len(live.timeline.children) == 151
        for i in range(3):
            turn = {"tool": "search", "parameters": {"q": i}, "output": f"hit {i}"}
            agent.call("runs.record_turns", {"run_id": rid, "turns": [turn]})
            # the loop thread grows it by itself: no cell runs meanwhile
            assert wait_for(lambda n=i + 152: len(live.timeline.children) == n)
        assert "hit 2" in live.timeline.children[-1].value
        agent.call("runs.complete", {"run_id": rid, "outcome": {"status": "success"}})
        assert wait_for(lambda: "completed" in live.title.value)
        # the ended run stays on the panel (greyed) and keeps its button
        assert wait_for(lambda: "(ended)" in panel.traces.buttons[rid].description)
        panel.traces.close_button.click()
        assert panel.traces.live is None and panel.traces.box.children == ()
        assert live.widget.comm is None  # closed, not just hidden
    finally:
        agent.close()


def test_the_panel_opens_one_trace_at_a_time_and_says_when_it_cannot(loaded: Any) -> None:
    panel = loaded.run_line_magic("car", "status")
    loaded.run_cell("%car run start first")
    first = carnb.current().session.current_run_id
    loaded.run_cell("1 + 1")
    loaded.run_cell("%car run complete")
    assert shown_runs(panel.rows, panel.ended) == [(first, True)]  # shown greyed
    loaded.run_cell("%car run start second")
    second = carnb.current().session.current_run_id
    assert shown_runs(panel.rows, panel.ended) == [(second, False)]
    assert list(panel.traces.buttons) == [second]
    assert panel.traces.open(first) is not None
    one = panel.traces.live
    assert one is not None and [r["record"] for r in one.records.values()] == [
        "started",
        "turn",
        "ended",
    ]
    two = panel.traces.open(second)
    assert two is not None and panel.traces.live is two and one.widget.comm is None
    loaded.run_cell("2 + 2")  # a recorded cell: the panel's trace shows it once the cell ends
    assert len(two.timeline.children) == 2 and "2 + 2" in two.timeline.children[-1].value
    assert panel.traces.open("run-unknown") is None
    assert panel.traces.live is None and two.widget.comm is None
    assert "cannot show the trace of run-unknown" in panel.traces.note.value
    loaded.run_line_magic("unload_ext", "carnb")
    assert panel.traces.box.comm is None and panel.traces.pick.comm is None


@pytest.mark.kernel
def test_a_click_in_a_real_kernel_opens_the_run_trace_in_the_panel(kernel: Any) -> None:
    """The frontend's click message reaches the kernel thread; the trace then grows in the
    panel from the loop thread while no cell runs."""
    kernel.ok("%load_ext carnb")
    kernel.ok("panel = %car status")
    kernel.ok("info = %car agent add scout --show-tokens")
    env = kernel.value("info.env")
    agent = Client(env["CAR_DAEMON_URL"])
    try:
        agent.call(
            "session.auth", {"token": env["CAR_AGENT_TOKEN"], "agent_id": env["CAR_AGENT_ID"]}
        )
        rid = agent.call("runs.start", {"intent": "watched from the panel"})["run_id"]
        assert wait_for(lambda: rid in kernel.value("list(panel.traces.buttons)"), 15)
        model_id = kernel.value(f"panel.traces.buttons[{rid!r}].model_id")
        click = {"method": "custom", "content": {"event": "click"}}
        msg = kernel.kc.session.msg("comm_msg", {"comm_id": model_id, "data": click})
        kernel.kc.shell_channel.send(msg)
        assert wait_for(
            lambda: kernel.value("panel.traces.live and panel.traces.live.run_id") == rid
        )
        turn = {"tool": "fetch", "parameters": {"url": "x"}, "output": "marker-output-9"}
        agent.call("runs.record_turns", {"run_id": rid, "turns": [turn]})
        kernel.wait_widget_text("marker-output-9")
    finally:
        agent.close()
    assert kernel.value("len(panel.traces.live.timeline.children)") == 2


@pytest.mark.kernel
def test_unload_leaves_the_panels_last_state_in_its_outputs(kernel: Any) -> None:
    kernel.ok("%load_ext carnb")
    shown = kernel.ok("%car status").outputs
    assert len(shown) == 1 and "application/vnd.jupyter.widget-view+json" in shown[0]["data"]
    display_id = shown[0]["transient"]["display_id"]
    kernel.ok("%car agent add scout\n%car auth --agent scout")
    unloaded = kernel.ok("%unload_ext carnb")
    (update,) = unloaded.updates
    assert update["transient"]["display_id"] == display_id
    html = update["data"]["text/html"]
    assert "application/vnd.jupyter.widget-view+json" not in update["data"]
    assert 'data-agent="scout"' in html and "(stopped)" in html


def test_the_final_state_of_an_ended_agent(loaded: Any) -> None:
    """An agent that records turns, runs a proposal and leaves within one refresh interval: the
    panel keeps its last proposal, its run's final turn count, and its own row agrees."""
    panel = loaded.run_line_magic("car", "status")
    panel.interval = 5.0  # no refresh while the agent works: only the final state counts
    rt = carnb.current()
    loaded.run_line_magic("car", "agent add scout")
    token = rt.credentials.agents.token_for("scout")
    c = Client(rt.url)
    c.call("session.auth", {"agent_id": "scout", "token": token})
    panel.flush()
    rid = c.call("runs.start", {"intent": "quick"})["run_id"]
    panel.flush()  # the panel saw the run open, with no turns yet
    c.call("runs.record_turns", {"run_id": rid, "turns": [{"prompt": "a"}, {"prompt": "b"}]})
    c.call(
        "proposal.submit",
        {
            "proposal": {
                "id": "p1",
                "actions": [
                    {"id": "w", "type": "state_write", "parameters": {"key": "k", "value": 1}}
                ],
            }
        },
    )
    c.call("runs.complete", {"run_id": rid, "outcome": {"status": "success"}})
    c.close()
    assert wait_for(
        lambda: (panel.flush(), not any(r["agent_id"] == "scout" for r in panel.rows))[1]
    )
    ended = panel.others.value.split('<tr class="carnb-ended">')[1].split("</tr>")[0]
    # the final count (two turns and the proposal's action), not the 0 the panel last saw
    assert '<td class="carnb-num">3</td>' in ended, ended
    assert 'data-action="w"' in panel.tools.value  # the ended agent's proposal row stays
    # the notebook's own row and the table agree on its ended run's turns
    loaded.run_cell("%car run start mine")
    loaded.run_cell("x = 1")
    loaded.run_cell("%car run complete")
    panel.flush()
    mine = panel.mine.value
    assert 'data-turns="1"' in mine
    me = panel.others.value.split('<tr class="carnb-me">')[1].split("</tr>")[0]
    assert '<td class="carnb-num">1</td>' in me

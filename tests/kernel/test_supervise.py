"""``%car supervise`` and ``%car approvals``: the approvals widget decides while a cell is busy,
in-process (an IPython shell) and in a real kernel."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import carnb
from tests.conftest import Client
from tests.server.proposing import Served, action, proposal, submit


def wait_for(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def proposer(url: str, token: str) -> Client:
    c = Client(url)
    c.call("session.auth", {"token": token})
    c.call("tools.register", [{"name": "rm"}, {"name": "read"}])
    return c


def in_background(c: Client, body: dict[str, Any]) -> tuple[threading.Thread, list[Served]]:
    out: list[Served] = []
    thread = threading.Thread(target=lambda: out.append(submit(c, body, timeout=30)), daemon=True)
    thread.start()
    return thread, out


def test_the_widget_shows_full_parameters_and_its_buttons_decide(loaded: Any) -> None:
    widget = loaded.run_line_magic("car", "supervise --tools rm")
    rt = carnb.current()
    c = proposer(rt.url, rt.token)
    try:
        thread, out = in_background(c, proposal(action("a1", tool="rm", parameters={"path": "/x"})))
        assert wait_for(lambda: widget.intents)
        (intent_id,) = widget.intents
        assert wait_for(lambda: intent_id in widget.controls)
        card = widget.controls[intent_id]["card"].value
        assert "/x" in card and "fail-closed" in card and "rm" in card
        row = widget.controls[intent_id]["row"]
        assert widget.controls[intent_id]["box"].children == (
            widget.controls[intent_id]["card"],
            row,
        )
        assert rt.token not in card and rt.host_token not in widget.html()
        controls = widget.controls[intent_id]
        controls["deny"].click()  # no reason: refused, said in the widget, nothing decided
        assert wait_for(lambda: "did not land" in widget.status.value)
        controls["reason"].value = "not on Fridays"
        controls["deny"].click()
        thread.join(10)
        assert out[0].statuses() == {"a1": "rejected"}
        assert "not on Fridays" in out[0].by_id("a1")["error"]
        assert wait_for(lambda: "decided: deny" in widget.controls[intent_id]["card"].value)
        assert controls["allow"].disabled
        # decided: the verdict as text, no buttons left to look clickable
        assert wait_for(lambda: controls["box"].children == (controls["card"],))
        assert "decided: deny by" in controls["card"].value
        assert "carnb-muted" in controls["card"].value
        static = widget._repr_mimebundle_()
        assert "not on Fridays" in static["text/html"] and "deny" in static["text/plain"]
    finally:
        c.close()


def test_a_function_supervisors_decisions_show_in_the_widget(loaded: Any) -> None:
    widget = loaded.run_line_magic("car", "supervise --tools nothing")
    rt = carnb.current()
    carnb.supervisor(lambda intent: ("deny", "rule 7"), name="rules")
    c = proposer(rt.url, rt.token)
    try:
        served = submit(c, proposal(action("a1", tool="read")))
        assert served.statuses() == {"a1": "rejected"}
        assert wait_for(
            lambda: any(
                "rule 7" in i["decisions"][0]["reason"]
                for i in widget.intents.values()
                if i["decisions"]
            )
        )
    finally:
        c.close()


def test_the_panel_shows_a_proposal_the_gate_refused_as_the_sessions_last(loaded: Any) -> None:
    panel = loaded.run_line_magic("car", "status")
    rt = carnb.current()
    carnb.supervisor(lambda intent: ("deny", "rule 7"), name="rules", tools=["rm"])
    c = proposer(rt.url, rt.token)
    try:
        assert submit(c, proposal(action("r1", tool="read"), pid="ran")).statuses() == {
            "r1": "succeeded"
        }
        assert wait_for(lambda: 'data-action="r1" data-status="succeeded"' in panel.tools.value)
        refused = submit(c, proposal(action("x1", tool="rm"), pid="refused"))
        assert refused.statuses() == {"x1": "rejected"}
        # the refused proposal replaces the one that ran, its action named by its tool
        assert wait_for(lambda: 'data-action="x1" data-status="rejected"' in panel.tools.value)
        value = panel.tools.value
        assert "refused" in value and 'data-action="r1"' not in value
        assert "rm rejected" in value and "rule 7" in value  # the reason on hover
    finally:
        c.close()


def test_approvals_lists_and_resolves_the_ledger(loaded: Any) -> None:
    rt = carnb.current()
    c = Client(rt.url)
    try:
        c.call("session.auth", {"token": rt.token})
        approval = c.call("host.request_approval", {"title": "rotate the keys?"})
    finally:
        c.close()
    listed = loaded.run_line_magic("car", "approvals")
    assert "rotate the keys?" in listed.text()
    done = loaded.run_line_magic("car", f"approvals approve {approval['id']} --notes fine")
    assert "approved" in done.text()
    assert "no approval is pending" in loaded.run_line_magic("car", "approvals").text()
    assert "approved by" in loaded.run_line_magic("car", "approvals --all").text()


@pytest.mark.kernel
def test_the_buttons_work_in_a_real_kernel_while_a_cell_is_busy(kernel: Any) -> None:
    kernel.ok("%load_ext carnb")
    kernel.ok("import carnb\nw = %car supervise --tools rm\nw")
    url, token = kernel.value("carnb.current().url"), kernel.value("carnb.current().token")
    c = proposer(url, token)
    try:
        thread, out = in_background(c, proposal(action("a1", tool="rm", parameters={"p": 1})))
        assert wait_for(lambda: kernel.value("len(w.controls)") == 1, 15)
        allow = kernel.value("next(iter(w.controls.values()))['allow'].model_id")
        assert kernel.value("w.routed") is True
        # the cell that waits for the agent: the kernel's main thread is busy until it is decided
        busy = kernel.submit(
            "import time\nt0 = time.time()\n"
            "while next(iter(w.intents.values()))['outcome'] is None and time.time() - t0 < 20:\n"
            "    time.sleep(0.01)\n"
            "print('decided while busy after', round(time.time() - t0, 2))"
        )
        time.sleep(0.5)
        click = {"method": "custom", "content": {"event": "click"}}
        kernel.kc.shell_channel.send(
            kernel.kc.session.msg("comm_msg", {"comm_id": allow, "data": click})
        )
        done = kernel.collect(busy, timeout=30)
        assert done.status == "ok", done.text
        waited = float(done.stdout.split()[-1])
        assert 0.4 <= waited < 10, done.stdout  # decided during the busy cell, not after it
        thread.join(10)
        assert out[0].statuses() == {"a1": "succeeded"}
    finally:
        c.close()


def test_the_panel_counts_the_decisions_waiting(loaded: Any) -> None:
    panel = loaded.run_line_magic("car", "status")
    loaded.run_line_magic("car", "supervise")
    rt = carnb.current()
    c = proposer(rt.url, rt.token)
    try:
        thread, out = in_background(c, proposal(action("a1", tool="read")))
        assert wait_for(lambda: "1</span> decision(s) waiting" in panel.title.value)
        (intent,) = rt.call("supervision.pending", {})["intents"]
        rt.call("supervision.decide", {"intent_id": intent["id"], "decision": {"kind": "allow"}})
        thread.join(10)
        assert out[0].statuses() == {"a1": "succeeded"}
        assert wait_for(lambda: "waiting" not in panel.title.value)
    finally:
        c.close()

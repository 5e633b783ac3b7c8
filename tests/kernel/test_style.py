"""The shared output style: short ids, times, tables and key/value blocks in HTML and text."""

from __future__ import annotations

import re
from datetime import datetime

from carnb.kernel import style
from carnb.kernel.render import KeyValues, Table

RUN_ID = "run-3f2a9c0112345678abcdef0123456789"


def test_short_id_keeps_the_full_id_on_hover_and_in_text() -> None:
    c = style.short_id(RUN_ID)
    assert c.text == RUN_ID
    assert f'title="{RUN_ID}"' in c.html
    shown = re.sub(r"<[^>]+>", "", c.html)
    assert shown == "run-3f2a9c01…"
    assert style.short_id("nb-1").html == '<span class="carnb-id">nb-1</span>'
    assert style.short_id(None).text == ""


def test_times_read_as_clock_and_offsets() -> None:
    iso = "2026-11-28T09:17:30.123456Z"
    local = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone()
    assert style.clock(iso) == local.strftime("%H:%M:%S")
    assert style.clock(local.timestamp()) == local.strftime("%H:%M:%S")
    assert style.clock("not a time") == "" and style.clock(None) == ""
    cell = style.when(iso)
    assert cell.text == local.strftime("%H:%M:%S") and local.isoformat()[:19] in cell.html
    assert style.offset(2) == "+2.0 s"
    assert style.offset(0.04) == "+0.0 s"
    assert style.offset(185.2) == "+3 min 05 s"
    assert style.offset(None) == ""


def test_tables_escape_values_and_use_the_theme_variables() -> None:
    t = Table(
        ["id", "turns", "note"],
        [[style.short_id(RUN_ID), 3, "<b>x</b>"]],
        title="runs",
        row_classes=["carnb-ended"],
    )
    html = t._repr_mimebundle_()["text/html"]
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html
    assert '<tr class="carnb-ended">' in html
    assert '<td class="carnb-num">3</td>' in html
    # Colours only through JupyterLab's variables: no hard-coded light backgrounds.
    assert "--jp-layout-color" in style.STYLESHEET and "--jp-ui-font-color1" in style.STYLESHEET
    assert not re.search(r"background:#(?:f|e)", style.STYLESHEET)
    # The text fallback keeps the full id and aligns the columns.
    lines = t.text().splitlines()
    assert lines[0] == "runs" and RUN_ID in lines[2] and lines[1].index("turns") > len(RUN_ID)


def test_key_values_and_empty_tables() -> None:
    kv = KeyValues({"url": "http://x/?a=1&b=2", "elements": 1}, title="page")
    assert "a=1&amp;b=2" in kv.html() and 'class="carnb-kv' in kv.html()
    assert kv.text().splitlines()[1].startswith("url ")
    empty = Table(["a"], [], empty="no runs")
    assert "carnb-note" in empty.html() and empty.text() == "no runs"


def test_hints_show_code_not_backticks() -> None:
    from carnb.kernel.render import Message

    html = Message("finish it with `%car run complete` <now>").html()
    assert "<code>%car run complete</code>" in html and "`" not in html and "&lt;now&gt;" in html
    assert style.code_spans("a ` b") == "a ` b"  # unpaired: left alone


def test_run_list_shows_short_ids_and_clock_times_on_one_line() -> None:
    from carnb.kernel.cmd_runs import RunList

    started = "2026-11-28T09:17:30.123456Z"
    runs = [{"run_id": RUN_ID, "status": "completed", "turn_count": 2, "started_at": started}]
    html = RunList("agent:x", runs).html()
    assert f'title="{RUN_ID}">run-3f2a9c01…</span>' in html
    assert style.clock(started) + "</span>" in html and started not in html.split("title=")[0]
    # Ids and times never wrap onto two lines.
    assert re.search(r"\.carnb-id,[^{]*\.carnb-time\{[^}]*white-space:nowrap", style.STYLESHEET)
    assert RUN_ID in RunList("agent:x", runs).text()


def test_a_valid_proposal_with_conflicts_says_so_beside_valid() -> None:
    from carnb.kernel.render_tools import Verification

    racy = Verification({"valid": True, "conflicts": [["basket", "tea", "cake"]]})
    assert "valid      yes, with write conflicts" in racy.text()
    assert "valid      yes\n" in Verification({"valid": True}).text() + "\n"


def test_a_proposals_actions_are_one_short_line_each() -> None:
    from carnb.kernel.render_tools import panel_tools_html

    long_id = "call_0_" + "9f" * 12
    proposal = {
        "proposal_id": "p",
        "running": False,
        "dropped": 0,
        "actions": [
            {"action_id": long_id, "status": "succeeded", "duration_ms": 3.0, "error": None},
            {"action_id": "b", "status": "rejected", "duration_ms": None, "error": "policy"},
        ],
    }
    html = panel_tools_html([{"client_id": "c1", "tools": [], "proposal": proposal}])
    # named by its tool when the events say it, else by its shortened id; the full id on hover
    assert f'title="action {long_id}"' in html and f">{long_id}" not in html
    assert ">b rejected<" in html
    named = {**proposal["actions"][0], "name": "fetch_page"}  # type: ignore[dict-item]
    html = panel_tools_html(
        [{"client_id": "c1", "tools": [], "proposal": {**proposal, "actions": [named]}}]
    )
    assert f'title="action {long_id}">fetch_page succeeded 3.0 ms<' in html
    assert re.search(r"\.carnb-action\{display:block\}", style.STYLESHEET)

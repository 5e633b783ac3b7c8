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

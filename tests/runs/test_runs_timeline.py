"""Trace views: one readable line per record, in text and in escaped HTML."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from carnb.runs import RunStore, TraceView, render_html, render_text
from carnb.runs.timeline import shorten
from tests.runs.runs_helpers import AGENT_A


def _trace(store: RunStore) -> dict:
    run_id = store.start(AGENT_A, intent="summarise the report")["run_id"]
    store.record_turns(
        AGENT_A,
        run_id,
        [
            {
                "prompt": "Read   the\nreport",
                "tool": "read_file",
                "parameters": {"path": "r.md"},
                "output": "x" * 500,
            },
            {"prompt": "<script>alert(1)</script>", "output": "done & dusted"},
            {"model": "m1", "tokens": 42},
            {"tool": "search", "error": "timeout"},
        ],
    )
    store.complete(AGENT_A, run_id, {"status": "success", "summary": "three findings"})
    return store.get_trace(AGENT_A, run_id)


def test_text_has_one_line_per_record_with_index_kind_offset_summary(store: RunStore) -> None:
    trace = _trace(store)
    lines = render_text(trace).splitlines()
    assert lines[0].startswith(f"run {trace['run_id']} · agent agent-a · completed")
    body = lines[1:]
    assert len(body) == len(trace["records"]) == 6
    pattern = re.compile(r"^  #(\d+)\s+\+(\d+\.\d{3})s  (started|turn|ended)\s+(.*)$")
    parsed = [pattern.match(line) for line in body]
    assert all(parsed), body
    assert [int(m.group(1)) for m in parsed] == list(range(6))  # type: ignore[union-attr]
    offsets = [float(m.group(2)) for m in parsed]  # type: ignore[union-attr]
    assert offsets[0] == 0.0 and offsets == sorted(offsets)
    summaries = [m.group(4) for m in parsed]  # type: ignore[union-attr]
    assert summaries[0] == 'intent "summarise the report"'
    assert summaries[1].startswith('tool read_file {"path":"r.md"} prompt "Read the report" → xxx')
    assert summaries[1].endswith("…") and len(summaries[1]) < 200  # long output is cut
    assert summaries[2] == 'prompt "<script>alert(1)</script>" → done & dusted'
    assert summaries[3] == '{"model":"m1","tokens":42}'
    assert summaries[4] == "tool search error: timeout"
    assert summaries[5] == "completed: success — three findings"
    assert str(TraceView(trace)) == render_text(trace)


def test_html_escapes_content_and_has_a_row_per_record(store: RunStore) -> None:
    trace = _trace(store)
    page = render_html(trace)
    assert "<script>" not in page and "&lt;script&gt;" in page and "done &amp; dusted" in page

    class Rows(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.rows: list[list[str]] = []
            self.in_td = False

        def handle_starttag(self, tag: str, attrs: list) -> None:
            if tag == "tr":
                self.rows.append([])
            self.in_td = tag in ("td", "th")
            if self.in_td:
                self.rows[-1].append("")

        def handle_endtag(self, tag: str) -> None:
            self.in_td = False if tag in ("td", "th") else self.in_td

        def handle_data(self, data: str) -> None:
            if self.in_td:
                self.rows[-1][-1] += data

    parser = Rows()
    parser.feed(page)
    header, *rows = parser.rows
    assert header == ["#", "time", "kind", "summary"]
    assert [r[0] for r in rows] == [str(i) for i in range(6)]
    assert [r[2] for r in rows] == ["started", "turn", "turn", "turn", "turn", "ended"]
    assert rows[2][3] == 'prompt "<script>alert(1)</script>" → done & dusted'
    assert TraceView(trace)._repr_html_() == page


def test_ended_runs_with_a_reason_and_unknown_runs(store: RunStore) -> None:
    run_id = store.start(AGENT_A, intent="x")["run_id"]
    store.end_incomplete(run_id, "socket closed")
    text = render_text(store.get_trace(AGENT_A, run_id))
    assert text.splitlines()[-1].endswith("ended    incomplete: socket closed")
    missing = {"run_id": "run-x", "not_found": True}
    assert render_text(missing) == "run run-x: not found"
    assert "run run-x: not found" in render_html(missing) and "<table" not in render_html(missing)


def test_shorten_is_one_line_within_width() -> None:
    assert shorten("a\n\n b\tc") == "a b c"
    assert shorten("y" * 100, 10) == "y" * 9 + "…"
    assert shorten({"k": [1, 2]}) == '{"k":[1,2]}'


def test_a_model_turn_reads_as_the_model_its_text_and_the_calls_it_asked_for(
    store: RunStore,
) -> None:
    run_id = store.start(AGENT_A, intent="loop")["run_id"]
    store.record_model_turn(
        AGENT_A,
        run_id,
        {
            "turn_index": 1,
            "assistant_text": "adding",
            "requested_tool_calls": [{"name": "add", "arguments": {}}, {"name": "log"}],
            "model_id": "m1",
        },
    )
    line = render_text(store.get_trace(AGENT_A, run_id)).splitlines()[2]
    assert line.split("model_turn", 1)[1].strip() == 'model m1 "adding" → add, log'

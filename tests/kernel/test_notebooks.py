"""Every notebook in notebooks/ executed headless with nbclient, as CI does: outputs and the
widget state (the status panel and the memory explorer) asserted, including updates the panel
sent while a cell was still running."""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO
from tests.kernel.conftest import needs_chromium

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(240)]

NOTEBOOKS = REPO / "notebooks"
TOKEN_LIKE = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")


class RecordingClient(NotebookClient):
    """nbclient, plus a log of every widget update (cell index, model id, state) as it arrived,
    and the widget state after each cell."""

    def __init__(self, nb: Any, **kw: Any) -> None:
        super().__init__(nb, on_cell_executed=self._after_cell, **kw)
        self.updates: list[tuple[int, str, dict[str, Any]]] = []
        self.after: dict[int, dict[str, dict[str, Any]]] = {}

    def handle_comm_msg(self, outs: Any, msg: dict[str, Any], cell_index: int) -> None:
        super().handle_comm_msg(outs, msg, cell_index)
        state = (msg["content"].get("data") or {}).get("state")
        if state:
            self.updates.append((cell_index, msg["content"]["comm_id"], dict(state)))

    def _after_cell(self, cell: Any, cell_index: int, **kw: Any) -> None:
        self.after[cell_index] = copy.deepcopy(self.widget_state)


def execute(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, home: Path | None = None
) -> tuple[Any, Any]:
    work = tmp_path / "nb"
    work.mkdir(parents=True)
    shutil.copy(NOTEBOOKS / name, work / name)
    monkeypatch.setenv("CARNB_HOME", str(home or tmp_path / "home"))
    monkeypatch.setenv("CAR_NO_VERSION_WARNING", "1")
    nb = nbformat.read(work / name, as_version=4)
    client = RecordingClient(
        nb,
        timeout=120,
        kernel_name="python3",
        store_widget_state=True,
        resources={"metadata": {"path": str(work)}},
    )
    client.execute()
    return nb, client


def text(cell: Any) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type == "error":
            parts.append(f"{out.ename}: {out.evalue}")
        else:
            parts.append(out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def cell_index(nb: Any, startswith: str) -> int:
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and cell.source.startswith(startswith):
            return i
    raise AssertionError(f"no cell starts with {startswith!r}")


def out(nb: Any, startswith: str) -> str:
    return text(nb.cells[cell_index(nb, startswith)])


def widget(state: dict[str, dict[str, Any]], css: str) -> dict[str, Any]:
    """The state of the box with CSS class ``css`` with its children's HTML joined as 'html'."""
    for model in state.values():
        if css in (model.get("_dom_classes") or []):
            kids = [state[c.removeprefix("IPY_MODEL_")] for c in model.get("children", [])]
            return {**model, "html": "".join(str(k.get("value", "")) for k in kids)}
    raise AssertionError(f"no widget with class {css}")


def panel_after(client: Any, nb: Any, startswith: str) -> str:
    return widget(client.after[cell_index(nb, startswith)], "carnb-panel")["html"]


def snapshot_html(nb: Any) -> str:
    """The static panel ``%car status --snapshot`` left in the notebook (no widget)."""
    cell = nb.cells[cell_index(nb, "%car status --snapshot")]
    (output,) = cell.outputs
    assert "application/vnd.jupyter.widget-view+json" not in output.data
    return str(output.data["text/html"])


def no_tokens_anywhere(nb: Any) -> None:
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            for mime, value in (o.get("data") or {"text": o.get("text", "")}).items():
                if mime == "image/png":
                    continue
                assert not TOKEN_LIKE.search(re.sub(r"base64,[A-Za-z0-9+/=]+", "", str(value)))
    assert not TOKEN_LIKE.search(str(nb.metadata.get("widgets", {})))


def test_quickstart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb, client = execute("01-quickstart.ipynb", tmp_path, monkeypatch)
    assert out(nb, "%load_ext carnb").startswith("carnb: CAR session server on ws://127.0.0.1:")
    server = out(nb, "info = %car server")
    assert "export CAR_AUTH_TOKEN=********" in server and "1 connected session(s)" in server
    assert "the client read back: hello from another process" in out(nb, "client_code")
    assert "graph          agent:demo" in out(nb, "%car auth --agent demo")
    assert "deploy-1" in out(nb, "%car memory query deploy ci")
    assert "completed: success" in out(nb, "%%car run") and "29" in out(nb, "%%car run")
    assert "agent demo · completed" in out(nb, "%car run trace")
    panel = panel_after(client, nb, "%car auth --agent demo")
    assert 'data-agent="demo"' in panel and 'data-graph="agent:demo"' in panel
    stored = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    final = widget({k: v["state"] for k, v in stored.items()}, "carnb-panel")["html"]
    assert 'data-agent="demo"' in final and 'data-facts="2"' in final
    no_tokens_anywhere(nb)


def test_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb, client = execute("02-memory.ipynb", tmp_path, monkeypatch)
    assert "the agent wrote 6 facts; its graph holds 6" in out(nb, "agent_code")
    counts = [
        text(c)
        for c in nb.cells
        if c.cell_type == "code" and c.source.strip().endswith("%car memory count")
    ]
    assert counts[0].strip() == "0 facts in ephemeral"
    assert "6 facts in agent:scout" in counts[1]
    assert "staging deploys need a green CI run" in out(nb, "%car memory query deploy")
    ctx = out(nb, "%car memory context")
    assert ctx.index("## Constraints") < ctx.index("never log access") < ctx.index("## Facts")
    panel = panel_after(client, nb, "%car auth --agent scout")
    assert 'data-agent="scout"' in panel and 'data-facts="6"' in panel
    first = widget(client.after[cell_index(nb, "explorer = ")], "carnb-explore")["html"]
    assert 'data-facts="6"' in first and "4 result(s)" in first
    searched = widget(client.after[cell_index(nb, "rows = explorer")], "carnb-explore")["html"]
    assert "postgres 16" in searched and "Tuesdays" not in searched
    # provenance, explain, an edit made in the explorer and its undo, and the diff between
    found = out(nb, "import time")
    assert "'scout'" in found and "'orders'" in found and "'postgres'" in found
    assert "('the orders service uses postgres 17', 'edited in the notebook')" in out(
        nb, "edited = explorer.edit"
    )
    edited = widget(client.after[cell_index(nb, "edited = explorer.edit")], "carnb-explore")
    assert "notebook as agent scout, edited in the notebook" in edited["html"]  # written by
    assert "<td>edit</td><td>db-1</td>" in edited["html"]  # the edit history
    diff = out(nb, "%car memory diff")
    assert "added" in diff and "superseded" in diff and "postgres 17" in diff
    assert "['the orders service uses postgres 16']" in out(nb, "explorer.undo()")
    undone = widget(client.after[cell_index(nb, "explorer.undo()")], "carnb-explore")["html"]
    assert "undone" in undone
    assert "6 facts written to memory/scout/facts.json" in out(nb, "%car memory persist")
    assert "into namespace:scratch" in out(nb, "%car auth --namespace scratch")
    assert "5 facts in namespace:scratch" in out(nb, "%car memory delete")
    assert "6 facts in agent:scout" in text(nb.cells[-1])
    assert (tmp_path / "home" / "memory" / "scout" / "facts.json").exists()
    no_tokens_anywhere(nb)


def test_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb, client = execute("03-runs.ipynb", tmp_path, monkeypatch)
    assert "12.07" in out(nb, "%%car run clean")
    trace = text(nb.cells[cell_index(nb, "%%car run clean") + 1])
    assert "completed" in trace and "turn" in trace
    panel = panel_after(client, nb, "sorted(clean)")
    assert re.search(r'data-run="run-[0-9a-f]+"', panel) and 'data-turns="2"' in panel
    traces = [text(c) for c in nb.cells if c.cell_type == "code" and c.source == "%car run trace"]
    assert "spread computed" in traces[1] and traces[1].count(" turn ") == 3
    agent_cell = cell_index(nb, "%car status\nagent_code")
    run_id = re.search(r"the agent's run: (run-[0-9a-f]+)", text(nb.cells[agent_cell]))
    assert run_id is not None
    # Watched live: while the cell waited on the agent, the panel showed its run as it grew.
    live = [s["value"] for i, _, s in client.updates if i == agent_cell and "value" in s]
    seen_turns = {
        int(m)
        for v in live
        if run_id.group(1) in v and "<td>tracer</td>" in v
        for m in re.findall(
            rf'title="{run_id.group(1)}">[^<]*</span></td><td class="carnb-num">(\d+)</td>', v
        )
    }
    assert len(seen_turns) >= 2 and seen_turns <= {0, 1, 2, 3, 4}, seen_turns
    assert "write summary: done" in out(nb, "%car run trace {agent_run}")
    assert "summarise the weekly report" in out(nb, "%car run list --agent tracer")
    panel = snapshot_html(nb)
    assert 'data-agent="tracer"' in panel
    assert re.search(r'data-run="run-[0-9a-f]+"', panel)  # the bound agent's current run
    # The live panel moved on: the run completed in the last cell.
    assert 'data-run="(none)"' in widget(client.widget_state, "carnb-panel")["html"]
    final = text(nb.cells[-1])
    # both lines of the cell show: the completion message, then the list (two runs, success)
    assert final.startswith("run run-") and "completed: success" in final
    assert "follow up on the summary" in final and final.count("success") == 3
    no_tokens_anywhere(nb)


def test_agent_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb, client = execute("06-agent-loop.ipynb", tmp_path, monkeypatch)
    assert "stand-in  python  ✓" in out(nb, "import json, time")
    tried = out(nb, "%%car infer --context scratch")
    assert "Adding 2." in tried and '{"a": 0, "b": 2}' in tried
    assert "context injected" in tried and "never delete the scratch folder" in tried
    waited = cell_index(nb, "out, err = agent.communicate")
    assert "success - The total is 9." in text(nb.cells[waited])
    # watched live: while that cell waited, the live trace grew and the panel showed the agent
    stored = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    state = {k: v["state"] for k, v in stored.items()}
    live_box = next(
        m for m in state.values() if "carnb-live-trace" in (m.get("_dom_classes") or [])
    )
    title, timeline = (state[c.removeprefix("IPY_MODEL_")] for c in live_box["children"])
    entries = [str(state[c.removeprefix("IPY_MODEL_")]["value"]) for c in timeline["children"]]
    assert "completed" in str(title["value"]) and len(entries) == 1 + 2 * 5 + 1
    assert sum("model stand-in" in e for e in entries) == 5
    grown = {
        len(s["children"])
        for i, _, s in client.updates
        if i == waited and isinstance(s.get("children"), list)
    }
    assert len(grown) >= 2  # the timeline was updated more than once while the cell ran
    panels = [s["value"] for i, _, s in client.updates if i == waited and "value" in s]
    assert any("<td>janitor</td>" in v for v in panels)
    trace = out(nb, "%car run trace {run_id}")
    assert "agent janitor · completed" in trace and trace.count("model_turn") == 5
    turns = text(nb.cells[-1]).splitlines()
    assert [t.split()[0] for t in turns] == ["add", "add", "add", "rm", "finish"]
    assert "rejected   denied by policy 'never-rm'" in turns[3]
    no_tokens_anywhere(nb)


def test_time_travel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb, _ = execute("09-time-travel.ipynb", tmp_path, monkeypatch)
    assert "success - The total is 8." in out(nb, "import os, subprocess, sys")
    replayed = out(nb, "before = model_calls")
    assert "model calls during the replay: 0" in replayed
    assert "reproduces from its recording" in replayed and "no divergence" in replayed
    forked = out(nb, "fixed = ")
    assert "at model turn 3" in forked
    assert not re.search(r"run-[0-9a-f]{32}", forked)  # short ids, the commands take them
    assert out(nb, "deadline = ").strip() == "The total is 9."
    diff = out(nb, "diff = %car run diff")
    assert "the first difference is at turn 3" in diff
    assert 'A add({"a": 5, "b": 3})' in diff and 'B add({"a": 5, "b": 4})' in diff
    listed = out(nb, "%car run list --agent adder")
    assert "↳ " in listed and "@ turn 3" in listed
    no_tokens_anywhere(nb)
    # the agent's file goes to a temporary folder, not beside the notebook
    assert sorted(p.name for p in (tmp_path / "nb").iterdir()) == ["09-time-travel.ipynb"]


@pytest.mark.browser
@needs_chromium
def test_browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb, client = execute("04-browser.ipynb", tmp_path, monkeypatch)
    assert "title     carnb demo page" in out(nb, "page = %car browser open")
    assert "Hi Ada" in out(nb, "after = %car browser click")
    shot = nb.cells[cell_index(nb, "%car browser screenshot")].outputs[0]
    assert "image/png" in shot.data and 'src="data:image/png;base64,' in shot.data["text/html"]
    panel = snapshot_html(nb)
    assert re.search(r'data-browser="launched: http://127\.0\.0\.1:\d+/"', panel)
    assert "second page" in out(nb, "second = %car browser click")
    script = out(nb, "%%car browser")
    assert script.count(" ok ") >= 4 and "error" not in script
    scrolled = re.search(r'"scroll_y": (\d+)', script)
    assert scrolled is not None and int(scrolled.group(1)) > 0  # the page is long enough
    assert "browser slot closed" in out(nb, "%car browser close")
    final = widget(client.widget_state, "carnb-panel")["html"]
    assert 'data-browser="closed"' in final


def test_propose_verify_execute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb, client = execute("05-propose-verify-execute.ipynb", tmp_path, monkeypatch)
    tools = out(nb, "%car tools")
    assert "delete_folder" in tools and "notebook, shared with planner" in tools
    assert "protect-etc" in out(nb, "%car policy list")
    racy = out(nb, "%%car propose\n")
    assert re.search(r"tea\s+cake\s+basket", racy) and "not executed" in racy
    order = out(nb, '%%car propose --run\n{"id": "order"')
    assert "3 executed, 0 rejected" in order and "[tea] → [cake] → [save]" in order
    assert re.search(r"tea\s+succeeded\s+\{.*\"total\":5\.0\}\s+\d+\.\d ms", order)
    cleanup = out(nb, '%%car propose --run\n{"id": "cleanup"')
    assert re.search(r"etc\s+rejected\s+denied by policy 'protect-etc'", cleanup)
    assert re.search(r"cache\s+skipped", cleanup) and "deleted" not in cleanup
    assert "agent: ready" in out(nb, "import os, subprocess, sys")
    with_agent = [text(c) for c in nb.cells if c.cell_type == "code" and c.source == "%car tools"]
    assert "check_stock" not in with_agent[0]  # before the agent connected
    assert re.search(r"planner\s+check_stock\s+item: string.*own \(client\)", with_agent[1])
    assert re.search(r"planner\s+price\s.*notebook, shared with planner", with_agent[1])
    agent = out(nb, "agent.stdin.write")
    assert "verify racy: conflicts [['a', 'b', 'stock']]" in agent
    assert re.search(r"quote\s+succeeded .*\"total\": 7\.5", agent)
    assert "denied by policy 'no-pallets'" in agent
    # Watched live: while the cell waited, the panel showed the agent's proposal action by
    # action (each tool call running, then succeeded).
    agent_cell = cell_index(nb, "agent.stdin.write")
    seen = {
        pair
        for i, _, state in client.updates
        if i == agent_cell and "restock" in str(state.get("value", ""))
        for pair in re.findall(r'data-action="(\w+)" data-status="(\w+)"', state["value"])
    }
    assert {("stock", "running"), ("stock", "succeeded"), ("more", "running")} <= seen, seen
    snap = snapshot_html(nb)
    assert "tools and proposals" in snap and "cleanup" in snap
    no_tokens_anywhere(nb)


def test_supervise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb, client = execute("08-supervise.ipynb", tmp_path, monkeypatch)
    agent = out(nb, "import os, subprocess, sys, time")
    assert "pressing Allow on deploy-1 in code" in agent
    assert re.search(r"read-1\s+read_file\s+succeeded", agent)
    assert re.search(
        r"rm-1\s+rm\s+rejected\s+denied by supervisor python:rules: rules: nothing", agent
    )
    assert re.search(r"deploy-1\s+deploy\s+succeeded", agent)
    assert re.search(
        r"deploy-2\s+deploy\s+rejected .*no decision within 6 s \(fail-closed\)", agent
    )
    (shown,) = [c for c in nb.cells if c.cell_type == "code" and c.source == "approvals"]
    plain = text(shown)
    assert "deploy-1" in plain and "allow by" in plain and "deploy-2" in plain
    static = [o.data["text/html"] for o in shown.outputs if "text/html" in o.get("data", {})]
    assert static and "staging is fine" in static[0] and "fail-closed" in static[0]
    assert "the ledger is empty" in out(nb, "%car approvals --all")
    no_tokens_anywhere(nb)


def test_every_notebook_is_executed_here() -> None:
    tested = {
        "01-quickstart.ipynb",
        "02-memory.ipynb",
        "03-runs.ipynb",
        "04-browser.ipynb",
        "05-propose-verify-execute.ipynb",
        "06-agent-loop.ipynb",
        "07-team.ipynb",  # tests/kernel/test_notebook_team.py (it needs PostgreSQL)
        "08-supervise.ipynb",
        "09-time-travel.ipynb",
        "10-observe.ipynb",
    }
    assert {p.name for p in NOTEBOOKS.glob("*.ipynb")} == tested


def test_agent_loop_run_again_on_the_same_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run All twice on one data directory: the second run follows its own agent's run, not
    the newest one on disk, and writes nothing beside the notebook."""
    home = tmp_path / "home"
    first, _ = execute("06-agent-loop.ipynb", tmp_path / "first", monkeypatch, home)
    second, _ = execute("06-agent-loop.ipynb", tmp_path / "second", monkeypatch, home)
    ids = [
        re.search(r"the agent's run: (run-[0-9a-f]+)", out(nb, "import os, subprocess, sys"))
        for nb in (first, second)
    ]
    assert ids[0] is not None and ids[1] is not None and ids[0].group(1) != ids[1].group(1)
    assert sorted(p.name for p in (tmp_path / "second" / "nb").iterdir()) == ["06-agent-loop.ipynb"]


def test_observe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.observe.conftest import find_phoenix

    phoenix = find_phoenix()
    if phoenix is not None:  # the copy in tmp_path cannot find the repository's by its path
        monkeypatch.setenv("CARNB_PHOENIX", phoenix)
    nb, client = execute("10-observe.ipynb", tmp_path, monkeypatch)
    cost = out(nb, "cost = %car cost")
    assert "scout" in cost and "sage" in cost
    large = (1200 + 1500 + 1800) * 3.0 / 1e6 + 3 * 150 * 15.0 / 1e6
    assert f"{large:.6f}".rstrip("0") in cost
    assert "2 runs recorded" in out(nb, "import json, subprocess")
    assert "8 model turns of 2 runs" in out(nb, "dataset = ")
    assert sorted(p.name for p in (tmp_path / "nb").iterdir()) == ["10-observe.ipynb"]
    read_back = out(nb, "if phoenix_url:\n    from phoenix.client")
    if phoenix is not None:
        assert "'AGENT': 2" in read_back and "'LLM': 8" in read_back and "'TOOL': 8" in read_back
        assert "spans_sent" in out(nb, "%car otel") or "spans sent" in out(nb, "%car otel")
    else:
        assert "nothing to read back" in read_back
    no_tokens_anywhere(nb)

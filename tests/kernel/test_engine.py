"""The notebook engine without IPython: parsed ``%car`` command lines run on a real runtime,
cells recorded as run turns, ``%%car run`` bracketing a plain callable, and the runtime's view
methods (``watch``, ``asnapshots``) the panel relies on."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from carnb.config import Settings
from carnb.kernel.calls import CarCommandError, NotLoaded
from carnb.kernel.cellrun import Cell
from carnb.kernel.engine import NotebookEngine
from carnb.kernel.parser import build_cell_parser, parse
from carnb.runtime import Runtime
from tests.conftest import REPO, Client
from tests.kernel.conftest import car


@pytest.fixture
def engine(home: Path) -> Iterator[NotebookEngine]:
    nb = NotebookEngine()
    nb.start(Settings(home=home, browser=False))
    yield nb
    nb.close()


def car_cell(nb: NotebookEngine, line: str, cell: Cell) -> Any:
    args = parse(build_cell_parser(), line)
    return args.func(nb, args, cell)


def finished_cell(source: str, count: int, result: Any = None, error: Any = None) -> Any:
    """What IPython hands ``post_run_cell``, reduced to the fields the recorder reads."""
    info = SimpleNamespace(raw_cell=source, silent=False)
    return SimpleNamespace(
        info=info, execution_count=count, result=result, error_in_exec=error, error_before_exec=None
    )


def test_the_engine_imports_no_ipython() -> None:
    code = (
        "import sys, carnb.kernel.engine, carnb.kernel.parser; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('IPython', 'ipywidgets', 'traitlets', 'ipykernel')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == "[]"


def test_commands_run_on_the_notebook_session(engine: NotebookEngine) -> None:
    assert car(engine, 'memory add deploy "staging needs green CI"').value == 1
    assert car(engine, "memory add rollback 'keep the last build'").value == 2
    assert car(engine, "memory count").value == 2
    rows = car(engine, "memory query staging deploy").facts
    assert rows and rows[0]["subject"] == "deploy"
    assert engine.notebook()["fact_count"] == 2


def test_cells_become_turns_of_the_open_run(engine: NotebookEngine) -> None:
    started = car(engine, "run start tidy the notes")
    assert engine.open_run() == started.run_id
    engine.recorder.post_run_cell(finished_cell("%car run start tidy the notes", 1))  # skipped
    engine.after_cell(finished_cell("x = 40 + 2", 2))
    engine.after_cell(finished_cell("x", 3, result=42))
    engine.after_cell(finished_cell("1/0", 4, error=ZeroDivisionError("division by zero")))
    car(engine, "run complete --summary done")
    assert engine.open_run() is None
    turns = car(engine, "run trace").turns  # the last run once none is open
    assert [t["prompt"] for t in turns] == ["x = 40 + 2", "x", "1/0"]
    assert turns[1]["output"] == "42"
    assert turns[2]["error"] == "ZeroDivisionError: division by zero"


def test_bracket_runs_the_cell_as_one_turn(engine: NotebookEngine) -> None:
    shown: list[Any] = []
    cell = Cell(source="21 * 2", execution_count=7, run=lambda: 21 * 2, show=shown.append)
    assert car_cell(engine, "run answer", cell) == 42
    (done,) = shown
    assert engine.open_run() is None and engine.last_run_id == done.run_id
    trace = car(engine, f"run trace {done.run_id}")
    assert trace.trace["status"] == "completed"
    assert trace.trace["records"][-1]["outcome"]["status"] == "success"
    (turn,) = trace.turns
    assert turn["prompt"] == "21 * 2" and turn["parameters"] == {"execution_count": 7}

    def fail() -> Any:
        raise ValueError("bad cell")

    with pytest.raises(ValueError, match="bad cell"):
        car_cell(engine, "run doomed", Cell("boom()", 8, fail, shown.append))
    assert engine.open_run() is None and len(shown) == 1  # no success line for a failure
    failed = car(engine, "run trace")
    assert failed.trace["records"][-1]["outcome"]["status"] == "failure"
    (turn,) = failed.turns
    assert turn["error"] == "ValueError: bad cell"


def test_commands_without_a_running_runtime_say_how_to_load(home: Path) -> None:
    nb = NotebookEngine()
    with pytest.raises(NotLoaded, match="`%load_ext carnb` first"):
        car(nb, "memory count")
    rt = nb.start(Settings(home=home, browser=False))
    rt.close()  # stopped behind the engine's back
    with pytest.raises(NotLoaded, match="has stopped"):
        car(nb, "memory count")
    assert nb.open_run() is None
    nb.close()
    with pytest.raises(NotLoaded, match="`%load_ext carnb` first"):
        car(nb, "run list")


def test_a_second_open_run_is_refused(engine: NotebookEngine) -> None:
    car(engine, "run start first")
    with pytest.raises(CarCommandError, match="still open"):
        car(engine, "run start second")


# -- the runtime's view methods -------------------------------------------------------------------
def test_watch_reports_attach_change_and_detach(runtime: Runtime) -> None:
    changes: list[str] = []
    changed = threading.Event()

    def on_change() -> None:
        assert threading.current_thread().name == "carnb-loop"  # widgets are written there
        changes.append("x")
        changed.set()

    async def start() -> Any:
        return runtime.watch(on_change)

    def wait_change() -> None:
        assert changed.wait(5), "no change reported"
        changed.clear()

    remove = runtime.run_on_loop(start(), timeout=5)
    c = Client(runtime.url)
    try:
        # a connection is shown once it authenticates (peers without a token stay out of the
        # host's events and the panel)
        c.call("session.auth", {"token": runtime.token})
        wait_change()  # attached and authenticated
    finally:
        c.close()
    wait_change()  # detached
    runtime.call_soon(remove)
    time.sleep(0.2)
    changed.clear()
    c = Client(runtime.url)
    try:
        c.call("session.auth", {"token": runtime.token})
    finally:
        c.close()
    assert not changed.wait(0.5), "a removed watch still reports"


def test_asnapshots_know_every_fact_count(runtime: Runtime) -> None:
    c = Client(runtime.url)  # not authenticated: no graph and no count yet
    try:
        deadline = time.monotonic() + 5
        while len(runtime.snapshots()) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        sid = next(s["client_id"] for s in runtime.snapshots() if s["kind"] == "socket")

        async def both() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            return runtime.snapshots(), await runtime.asnapshots()

        plain, counted = runtime.run_on_loop(both(), timeout=5)
    finally:
        c.close()
    assert next(s for s in plain if s["client_id"] == sid)["fact_count"] is None
    assert next(s for s in counted if s["client_id"] == sid)["fact_count"] == 0  # starts empty
    assert {s["client_id"] for s in counted} == {s["client_id"] for s in plain}
    assert runtime.notebook()["client_id"] in {s["client_id"] for s in counted}


def test_asnapshots_count_a_graph_the_session_never_counted(make_runtime: Any) -> None:
    rt = make_runtime(auth=False, browser=False)  # no session.auth: no count set at binding
    c = Client(rt.url)
    try:
        assert c.call("memory.query", {"query": "anything"}) == []  # creates its own graph
        (plain,) = [s for s in rt.snapshots() if s["kind"] == "socket"]

        async def counted() -> list[dict[str, Any]]:
            return await rt.asnapshots()

        (snap,) = [s for s in rt.run_on_loop(counted(), timeout=5) if s["kind"] == "socket"]
    finally:
        c.close()
    assert plain["fact_count"] is None
    assert snap["fact_count"] == 0


def test_a_long_trace_is_read_page_by_page(engine: NotebookEngine) -> None:
    """The server pages ``runs.get_trace`` (100 records by default): ``%car run trace`` shows
    every turn of a run longer than one page, in order."""
    started = car(engine, "run start a long run")
    rid = started.run_id
    turns = [{"prompt": f"step {i}", "output": str(i)} for i in range(250)]
    for first in range(0, len(turns), 100):
        engine.calls.call(
            "runs.record_turns", {"run_id": rid, "turns": turns[first : first + 100]}, what="t"
        )
    car(engine, "run complete --summary done")
    trace = car(engine, f"run trace {rid}")
    assert [t["prompt"] for t in trace.turns] == [f"step {i}" for i in range(250)]
    assert trace.trace["status"] == "completed"
    assert trace.trace["next_cursor"] is None

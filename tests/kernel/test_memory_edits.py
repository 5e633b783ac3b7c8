"""The explorer's edits (add, edit, delete, pin, unpin, undo, their history), provenance and
explanations in its table, and ``%car memory diff``, on the notebook engine over a real
runtime."""

from __future__ import annotations

import time
from typing import Any

import pytest

from carnb.errors import CarnbError
from carnb.kernel.engine import NotebookEngine
from tests.kernel.conftest import car


def bodies(nb: NotebookEngine, words: str) -> list[str]:
    return [r["body"] for r in car(nb, f"memory query {words} -k 10").facts]


def test_edit_delete_pin_and_undo_in_the_explorer(nb: NotebookEngine) -> None:
    car(nb, 'memory add deploy "deploys on tuesday" --id d1')
    ex = car(nb, "memory explore deploys")
    edit = ex.edit("d1", "deploys on wednesday")
    assert bodies(nb, "deploys") == ["deploys on wednesday"]
    row = ex.last_rows[0]
    assert row["provenance"]["action"] == "edited in the notebook"
    assert "notebook, edited in the notebook" in ex.results.value  # the written-by column
    assert "deploys exact" in ex.results.value  # the why column
    assert ex.undo() is edit and bodies(nb, "deploys") == ["deploys on tuesday"]
    ex.pin("d1")
    assert "pinned" in car(nb, "memory query deploys").facts[0]["tags"]
    ex.delete("d1")
    assert bodies(nb, "deploys") == []
    ex.undo()  # the delete: the fact is back with its id and tags
    back = car(nb, "memory query deploys").facts[0]
    assert (back["fact_id"], back["tags"]) == ("d1", ["pinned"])
    ex.undo()  # the pin
    assert car(nb, "memory query deploys").facts[0]["tags"] == []
    added = ex.add("kafka", "consumer lag alert at ten thousand")
    assert added.fact_id.startswith("nb-") and bodies(nb, "kafka") != []
    history = ex.history.value
    order = [history.index(f"<td>{a}</td>") for a in ("add", "delete", "edit")]
    assert order == sorted(order)  # newest first
    assert history.count("undone") == 3
    with pytest.raises(CarnbError, match="no fact 'ghost'"):
        ex.edit("ghost", "x")
    assert "error: " in ex.history.value
    static = ex._repr_mimebundle_()["text/html"]
    assert "carnb-edits" in static and "token" not in static.lower()


def test_the_buttons_run_the_same_edits(nb: NotebookEngine) -> None:
    car(nb, 'memory add deploy "deploys on tuesday" --id d1')
    ex = car(nb, "memory explore deploys")
    ex.fact_box.value, ex.body_box.value = "d1", "deploys on friday"
    ex.buttons["edit"].click()
    deadline = time.monotonic() + 10
    while bodies(nb, "deploys") != ["deploys on friday"]:
        assert time.monotonic() < deadline, "the edit button did nothing"
        time.sleep(0.05)
    assert "edit" in ex.history.value


def test_diff_since_a_time_and_since_a_run(nb: NotebookEngine) -> None:
    car(nb, 'memory add old "written before" --id before')
    car(nb, 'memory add gone "deleted later" --id gone')
    time.sleep(0.01)
    run_id = car(nb, "run start cleanup").run_id
    car(nb, 'memory add new "written in the run" --id after')
    car(nb, 'memory add old "rewritten" --id v2 --supersedes before')
    car(nb, "memory delete gone")
    out = car(nb, f"memory diff --since {run_id}")
    assert [r["fact_id"] for r in out.changes["added"]] == ["after", "v2"]
    assert [r["fact_id"] for r in out.changes["superseded"]] == ["before"]
    assert [r["fact_id"] for r in out.changes["deleted"]] == ["gone"]
    text = out.text()
    assert f"since run {run_id} started" in text and "deleted" in text
    assert car(nb, f"memory diff --since {time.time() + 60}").text().endswith("nothing changed")


def test_the_explorer_evaluates_the_selector_on_labelled_cases(nb: NotebookEngine) -> None:
    car(nb, 'memory add build "pip install fails behind the proxy" --id proxy-fix')
    car(nb, 'memory add lunch "the menu has soup" --id soup')
    ex = car(nb, "memory explore")
    report = ex.evaluate([
        {"id": "c1", "request": {"query": "pip install fails", "trigger": {"tool_error": True}},
         "relevant_fact_ids": ["proxy-fix"]},
        {"id": "c2", "request": {"query": "weather tomorrow"}, "relevant_fact_ids": []},
    ])  # fmt: skip
    assert report["selective"]["precision"] == 1.0
    html = ex.evaluation.value
    assert "intervention selector on 2 case(s)" in html and "<td>passive_retrieval</td>" in html


def test_undoing_a_delete_in_the_explorer_restores_the_supersession_chain(
    nb: NotebookEngine,
) -> None:
    car(nb, 'memory add db "postgres 14" --id v1')
    car(nb, 'memory add db "postgres 15" --id v2 --supersedes v1')
    car(nb, 'memory add db "postgres 16" --id v3 --supersedes v2')
    ex = car(nb, "memory explore postgres")
    ex.delete("v2")
    ex.undo()
    chain = nb.calls.call("memory.history", {"fact_id": "v1"}, what="test")
    assert [(r["fact_id"], r["superseded_by"]) for r in chain] == [
        ("v3", None), ("v2", "v3"), ("v1", "v2")]  # fmt: skip
    assert bodies(nb, "postgres") == ["postgres 16"]


@pytest.mark.kernel
def test_an_edit_typed_and_clicked_in_the_explorer_widget_of_a_real_kernel(kernel: Any) -> None:
    """What the frontend sends (the boxes' new values, then a click on "edit", then on "undo")
    reaches the kernel thread as comm messages; the edit lands in the graph, the table and the
    edit history update while no cell runs."""
    kernel.ok("%load_ext carnb")
    kernel.ok('%car memory add deploy "deploys on tuesday" --id d1')
    kernel.ok("ex = %car memory explore deploys")

    def send(widget: str, data: dict[str, Any]) -> None:
        comm_id = kernel.value(f"ex.{widget}.model_id")
        msg = kernel.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
        kernel.kc.shell_channel.send(msg)

    def typed(widget: str, text: str) -> None:
        send(widget, {"method": "update", "state": {"value": text}, "buffer_paths": []})

    def click(name: str) -> None:
        send(f'buttons["{name}"]', {"method": "custom", "content": {"event": "click"}})

    typed("fact_box", "d1")
    typed("body_box", "deploys on friday")
    click("edit")
    kernel.wait_widget_text("deploys on friday")
    bodies = "[r['body'] for r in ex.last_rows]"
    deadline = time.monotonic() + 15
    while kernel.value(bodies) != ["deploys on friday"]:
        assert time.monotonic() < deadline, "the edit did not reach the table"
        time.sleep(0.1)
    row = kernel.value("ex.last_rows[0]['provenance']['action']")
    assert row == "edited in the notebook"
    assert "<td>edit</td>" in kernel.value("ex.history.value")
    click("undo")
    deadline = time.monotonic() + 15
    while kernel.value(bodies) != ["deploys on tuesday"]:
        assert time.monotonic() < deadline, "the undo did not reach the table"
        time.sleep(0.1)
    assert "undone" in kernel.value("ex.history.value")

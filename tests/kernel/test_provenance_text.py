"""How the explorer and ``%car memory query`` say who wrote a fact."""

from __future__ import annotations

from carnb.kernel.explore import provenance_text


def test_a_fact_written_in_a_run_names_the_agent_and_a_short_run_id() -> None:
    run_id = "run-" + "3f2a9c01" + "0" * 24
    text = provenance_text(
        {"session_kind": "socket", "agent_id": "alice", "run_id": run_id, "turn": 2}
    )
    assert text == "agent alice, run run-3f2a9c01… turn 2"


def test_an_edit_in_the_notebook_says_so_and_no_provenance_says_nothing() -> None:
    edited = {"session_kind": "notebook", "agent_id": "scout", "action": "edited in the notebook"}
    assert provenance_text(edited) == "notebook as agent scout, edited in the notebook"
    assert provenance_text({}) == "" and provenance_text(None) == ""

"""Execution levels, dependency cycles and write conflicts of the proposal DAG."""

from __future__ import annotations

import pytest

from carnb.agentir import build_plan, verify
from carnb.errors import InvalidParams
from tests.agentir.helpers import call, proposal, write


def levels(*actions: dict[str, object]) -> list[list[str]]:
    return verify(proposal(*actions))["execution_levels"]


def test_independent_actions_share_one_level() -> None:
    assert levels(call("a"), call("b", parameters={"x": 1}), write("c", "k", 1)) == [
        ["a", "b", "c"]
    ]


def test_chain_gives_one_level_per_link() -> None:
    assert levels(
        call("a", expected_effects={"a_out": 1}),
        call("b", expected_effects={"b_out": 1}, state_dependencies=["a_out"]),
        call("c", state_dependencies=["b_out"]),
    ) == [["a"], ["b"], ["c"]]


def test_a_reader_does_not_wait_for_a_later_writer() -> None:
    """As in the reference engine: a read placed before an overwrite sees the old value."""
    assert levels(
        call("c", state_dependencies=["b_out"]),
        call("b", expected_effects={"b_out": 1}, parameters={"x": 1}),
    ) == [["c", "b"]]


def test_same_key_state_writes_land_in_proposal_order() -> None:
    assert levels(write("first", "k", 1), write("other", "j", 1), write("second", "k", 2)) == [
        ["first", "other"],
        ["second"],
    ]


def test_explicit_depends_on_orders_actions_in_any_position() -> None:
    assert levels(
        call("late_first", depends_on=["b"]),
        call("b", parameters={"x": 1}),
    ) == [["b"], ["late_first"]]


def test_diamond() -> None:
    assert levels(
        call("top", expected_effects={"t": 1}),
        call("left", expected_effects={"l": 1}, state_dependencies=["t"]),
        call("right", expected_effects={"r": 1}, state_dependencies=["t"]),
        call("bottom", state_dependencies=["l", "r"]),
    ) == [["top"], ["left", "right"], ["bottom"]]


def test_reader_waits_for_every_writer_of_its_key() -> None:
    assert levels(
        call("w1", expected_effects={"k": 1}),
        call("pre", expected_effects={"p": 1}),
        call("w2", expected_effects={"k": 2}, state_dependencies=["p"]),
        call("r", state_dependencies=["k"]),
    ) == [["w1", "pre"], ["w2"], ["r"]]


def test_read_modify_write_waits_for_earlier_writers_only() -> None:
    assert levels(
        write("init", "n", 1),
        call("inc", expected_effects={"n": 2}, state_dependencies=["n"]),
    ) == [["init"], ["inc"]]
    assert levels(
        call("inc", expected_effects={"n": 2}, state_dependencies=["n"]),
        write("init", "n", 1),
    ) == [["inc", "init"]]


def test_unknown_dependency_keys_do_not_order_anything() -> None:
    assert levels(call("a", state_dependencies=["nobody_writes_this"]), call("b")) == [["a", "b"]]


def test_two_action_cycle_is_named() -> None:
    plan = build_plan(
        proposal(
            write("c1", "m", 1, depends_on=["c2"]),
            write("c2", "n", 1, depends_on=["c1"]),
            call("after", state_dependencies=["n"]),
            call("free"),
        ).actions
    )
    assert len(plan.cycles) == 1
    cycle = plan.cycles[0]
    assert cycle[0] == cycle[-1] and sorted(cycle[:-1]) == ["c1", "c2"]
    assert [[i for i in level] for level in plan.levels] == [[3]]
    assert sorted(plan.blocked) == [0, 1, 2]


def test_self_dependency_is_a_cycle() -> None:
    plan = build_plan(proposal(call("a", depends_on=["a"])).actions)
    assert plan.cycles == [["a", "a"]] and plan.levels == []


def test_state_dependencies_alone_never_form_a_cycle() -> None:
    plan = build_plan(
        proposal(
            call("a", expected_effects={"n": 1}, state_dependencies=["n", "m"]),
            call("b", expected_effects={"m": 2}, state_dependencies=["n"]),
        ).actions
    )
    assert plan.cycles == [] and plan.levels == [[0], [1]]


def test_long_cycle_through_many_actions() -> None:
    n = 50
    actions = [call(f"a{i}", parameters={"i": i}, depends_on=[f"a{(i - 1) % n}"]) for i in range(n)]
    plan = build_plan(proposal(*actions).actions)
    assert len(plan.cycles) == 1 and len(plan.cycles[0]) == n + 1


def test_depends_on_an_unknown_action_is_refused() -> None:
    with pytest.raises(InvalidParams, match=r"depends_on names 'ghost'"):
        proposal(call("a", depends_on=["ghost"]))


def test_unordered_writers_conflict_ordered_ones_do_not() -> None:
    result = verify(
        proposal(
            call("a", expected_effects={"k": 1}),
            call("b", expected_effects={"k": 2}, parameters={"x": 1}),
            call("c", expected_effects={"o": 1, "gate": 1}),
            call("d", expected_effects={"o": 2}, state_dependencies=["gate"]),
        )
    )
    assert result["conflicts"] == [("a", "b", "k")]


def test_conflict_across_levels_without_a_path() -> None:
    result = verify(
        proposal(
            call("early", expected_effects={"k": 1}),
            call("x", expected_effects={"g": 1}, parameters={"n": 1}),
            call("late", expected_effects={"k": 2}, state_dependencies=["g"]),
        )
    )
    assert result["conflicts"] == [("early", "late", "k")]

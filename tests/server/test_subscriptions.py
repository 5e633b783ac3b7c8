"""A subscriber gets each record once: events announced while its snapshot is read are held,
and only those after the snapshot's cursor are handed back."""

from __future__ import annotations

from carnb.app.subscriptions import RunSubscriptions
from carnb.protocol.session import ClientSession


def _ev(cursor: int) -> dict[str, object]:
    return {"run_id": "r", "cursor": cursor}


def test_events_during_the_snapshot_are_held_and_not_repeated() -> None:
    subs, s = RunSubscriptions(), ClientSession()
    subs.add("r", s)
    assert subs.due("r", 3, _ev(3)) == []  # announced while the snapshot is read
    assert subs.due("r", 4, _ev(4)) == []
    assert subs.seen("r", s, 3) == [_ev(4)]  # the snapshot already held 0..3
    assert subs.due("r", 4, _ev(4)) == []  # never twice
    assert subs.due("r", 5, _ev(5)) == [s]


def test_without_an_event_a_new_subscriber_is_due_as_before() -> None:
    subs, s = RunSubscriptions(), ClientSession()
    subs.add("r", s)
    assert subs.due("r", 1) == [s]
    assert subs.seen("r", s, 0) == []

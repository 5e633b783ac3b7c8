"""Ended sessions and runs stay listed for a while, then go (the panel's bookkeeping)."""

from __future__ import annotations

from typing import Any

from carnb.kernel.linger import Lingering


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def snap(cid: str, run: str | None = None, turns: int = 0) -> dict[str, Any]:
    return {"client_id": cid, "me": cid == "nb", "current_run_id": run, "run_turns": turns}


def test_a_session_that_leaves_stays_until_the_linger_time_passes() -> None:
    clock = Clock()
    lg = Lingering(60, clock)
    assert lg.update([snap("nb"), snap("agent", "run-1", 3)]) == []
    assert lg.next_expiry() is None
    clock.now += 5
    ended = lg.update([snap("nb")])
    assert [r["client_id"] for r in ended] == ["agent"]
    assert ended[0]["ended_at"] == 1005.0 and ended[0]["me"] is False
    assert ended[0]["ended_run"].run_id == "run-1" and ended[0]["ended_run"].turns == 3
    assert lg.next_expiry() == 60
    clock.now += 59
    assert len(lg.update([snap("nb")])) == 1
    clock.now += 2
    assert lg.update([snap("nb")]) == [] and lg.next_expiry() is None


def test_a_run_that_ends_is_kept_on_its_live_session() -> None:
    clock = Clock()
    lg = Lingering(60, clock)
    lg.update([snap("nb", "run-1", 2)])
    live = [snap("nb")]
    lg.update(live)
    assert live[0]["ended_run"].run_id == "run-1"
    live = [snap("nb", "run-2")]  # a new run hides the old one
    lg.update(live)
    assert live[0]["ended_run"] is None
    clock.now += 61
    live = [snap("nb")]
    lg.update(live)
    assert live[0]["ended_run"].run_id == "run-2"


def test_a_session_that_comes_back_is_live_again() -> None:
    lg = Lingering(60, Clock())
    lg.update([snap("a")])
    assert len(lg.update([])) == 1
    assert lg.update([snap("a")]) == []

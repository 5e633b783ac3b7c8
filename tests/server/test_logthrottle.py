"""The log throttle: repeats beyond the burst are dropped and counted."""

from __future__ import annotations

import logging

from carnb.server.logthrottle import Throttle, ThrottleFilter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(msg: str, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord("carnb.test", level, __file__, 1, msg, None, None)


def test_repeats_beyond_the_burst_are_dropped_then_counted() -> None:
    clock = Clock()
    f = ThrottleFilter(Throttle(burst=3, window=10, clock=clock))
    passed = [f.filter(record("accept failed")) for _ in range(100)]
    assert passed.count(True) == 3
    assert f.filter(record("another kind"))  # other kinds have their own allowance
    clock.now = 11  # a new window: the next record says how many were left out
    r = record("accept failed")
    assert f.filter(r) and "97 more like this" in str(r.msg)


def test_plain_info_records_pass() -> None:
    f = ThrottleFilter(Throttle(burst=1, window=10, clock=Clock()))
    assert all(f.filter(record("connection closed", logging.INFO)) for _ in range(50))

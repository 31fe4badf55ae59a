"""Clocks passed into core classes, so tests can move time by hand."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Wall time for the wire and monotonic time for latency, both in nanoseconds."""

    def time_ns(self) -> int: ...

    def monotonic_ns(self) -> int: ...


class LiveClock:
    """The host's clocks."""

    def time_ns(self) -> int:
        return time.time_ns()

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()


class TestClock:
    """A clock that moves only when told to."""

    __test__ = False  # not a pytest test class

    def __init__(self, start_ns: int = 1_700_000_000_000_000_000) -> None:
        self._wall = start_ns
        self._mono = 1_000_000_000

    def time_ns(self) -> int:
        return self._wall

    def monotonic_ns(self) -> int:
        return self._mono

    def advance(self, ns: int) -> None:
        if ns < 0:
            raise ValueError(f"a clock cannot go back (advance by {ns} ns)")
        self._wall += ns
        self._mono += ns

"""Trading states, breakers and order-rate buckets: what both deciders (the risk actor's core
and a trading node's gate) keep the same way."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from hft_ray.clock import Clock
from hft_ray.types import REVERT_CLOSE, REVERT_OPEN, ExecutionReport


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


SEVERITY = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


def most_severe(states: list[TradingState]) -> TradingState:
    return max(states, key=SEVERITY.__getitem__, default=TradingState.ACTIVE)


@dataclass
class Breaker:
    """A tripped breaker: the state it forces and why; cleared only by `resume`."""

    forces: TradingState
    detail: str
    ts_ns: int


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up."""

    def __init__(self, rate: float, burst: float, clock: Clock) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock.monotonic_ns()

    def has(self, n: int) -> bool:
        now = self._clock.monotonic_ns()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * 1e-9 * self._rate)
        self._at = now
        return self._tokens + 1e-9 >= n

    def take(self, n: int) -> bool:
        if not self.has(n):
            return False
        self._tokens -= n
        return True


class OrderRate:
    """The order-rate limits: one bucket over all venues (two tokens an arbitrage, one a leg)
    and, if configured, one per venue."""

    def __init__(
        self,
        venues: list[str],
        clock: Clock,
        per_s: float,
        burst: float,
        venue_per_s: float | None,
        venue_burst: float,
    ) -> None:
        self._all = TokenBucket(per_s, burst, clock)
        self._venues = (
            {v: TokenBucket(venue_per_s, venue_burst, clock) for v in venues}
            if venue_per_s is not None
            else {}
        )

    def take(self, buy: str, sell: str) -> str:
        """Take a token per leg; '' or which limit refused."""
        buckets = [self._venues[v] for v in (buy, sell) if v in self._venues]
        if not all(b.has(1) for b in buckets):
            return "venue_rate_limited"
        if not self._all.take(2):
            return "rate_limited"
        for b in buckets:
            b.take(1)
        return ""


@dataclass
class Reservation:
    """What an approved trade may still spend or move until its outcome is booked: quote at
    the buy leg's limit price plus its fee on the buy venue, the base size on the sell venue
    and, in each venue's position, the size in the leg's direction."""

    symbol: int
    buy_venue: str
    sell_venue: str
    quote_reserved: float
    base_reserved: float
    kind: str = "arb"
    owner: str = ""  # the trading node whose gate approved it; '' for the risk actor's own
    gross_reserved: float = 0.0  # gross exposure (quote) a gate counted against its lease


#: An open reversion position: (symbol, lower venue, higher venue) -> (bought on, sold on, size).
Reverting = dict[tuple[int, str, str], tuple[str, str, float]]


def pair_key(symbol: int, x: str, y: str) -> tuple[int, str, str]:
    return (symbol, min(x, y), max(x, y))


def book_reversion(reverting: Reverting, trade: Reservation, matched: float) -> None:
    """Open or shrink a reversion position by what both legs of `trade` matched."""
    key = pair_key(trade.symbol, trade.buy_venue, trade.sell_venue)
    if trade.kind == REVERT_OPEN and matched > 0:
        reverting[key] = (trade.buy_venue, trade.sell_venue, matched)
    elif trade.kind == REVERT_CLOSE and key in reverting:
        bought_on, sold_on, size = reverting[key]
        if size - matched > 1e-12:
            reverting[key] = (bought_on, sold_on, size - matched)
        else:
            del reverting[key]


def matched_size(report: ExecutionReport) -> float:
    """What both legs of a trade filled alike (a repair order aside)."""
    legs = report.fills[:2]
    return min(r.filled for r in legs) if len(legs) == 2 else 0.0


def open_reversion(reverting: Reverting, symbol: int, buy: str, sell: str) -> float:
    """How much of a reversion position a close that buys on `buy` and sells on `sell` may
    undo: it must buy where the open sold and sell where it bought."""
    held = reverting.get(pair_key(symbol, buy, sell))
    if held is None or held[1] != buy or held[0] != sell:
        return 0.0
    return held[2]

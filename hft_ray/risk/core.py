"""RiskCore: every opportunity is approved, clipped or rejected here, with a reason.

Checks, in order: trading state; how old the opportunity is; minimum edge; trades in flight
on the symbol; order rate (a token bucket, two orders per arbitrage); then the size is clipped
to the order notional limit, to the position limit per asset and venue, and to the inventory
each venue holds net of what in-flight trades have reserved. A clip that leaves less than a
tradable size is a rejection naming the limit that bound. Positions come from the fills that
executors report, through the same `Ledger` that rebuilds them from the journal.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from hft_ray.clock import Clock
from hft_ray.config import HftConfig
from hft_ray.detect.reference import floor_to_lots
from hft_ray.ledger import Ledger
from hft_ray.markets import Markets, leg_limit_prices
from hft_ray.store.base import DECISION, Record
from hft_ray.types import (
    ARB,
    REVERT_CLOSE,
    REVERT_OPEN,
    Approval,
    ExecutionReport,
    Opportunity,
    Universe,
)


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up."""

    def __init__(self, rate: float, burst: int, clock: Clock) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock.monotonic_ns()

    def take(self, n: int) -> bool:
        now = self._clock.monotonic_ns()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * 1e-9 * self._rate)
        self._at = now
        if self._tokens + 1e-9 < n:
            return False
        self._tokens -= n
        return True


@dataclass
class _InFlight:
    symbol: int
    buy_venue: str
    sell_venue: str
    quote_reserved: float
    base_reserved: float
    kind: str = ARB


class RiskCore:
    def __init__(
        self, config: HftConfig, universe: Universe, markets: Markets, clock: Clock
    ) -> None:
        self._markets = markets
        self._limits = config.risk
        self._statarb_notional = config.detector.statarb.max_notional
        # Open reversion positions: (symbol, lower venue, higher venue) -> (bought on, sold
        # on, size), booked from fills.
        self._reverting: dict[tuple[int, str, str], tuple[str, str, float]] = {}
        self._slippage_bps = config.execution.slippage_bps
        self._universe = universe
        self._clock = clock
        self._max_age_ns = int(config.risk.max_opportunity_age_ms * 1e6)
        self._bucket = TokenBucket(self._limits.max_orders_per_s, self._limits.order_burst, clock)
        self.state = TradingState.ACTIVE
        self.state_reason = ""
        # Fail closed: nothing is approved until the actor has seen the store answer.
        self.store_ok = False
        self.ledger = Ledger()
        self._start_balances = {name: dict(v.balances) for name, v in config.venues.items()}
        self._in_flight: dict[str, _InFlight] = {}
        self.approved = 0
        self.clipped = 0
        self.rejected: Counter[str] = Counter()
        self.legs_failed = 0
        self.trades = 0
        self.unwinds = 0

    # -- decisions ----------------------------------------------------------------------------

    def evaluate(self, opp: Opportunity) -> tuple[Approval | None, Record]:
        """Decide on one opportunity; the decision record is returned for the journal."""
        size, reason = self._decide(opp)
        now_ns = self._clock.time_ns()
        approval = None
        if reason and size <= 0:
            self.rejected[reason] += 1
            verdict = "rejected"
        else:
            verdict = "clipped" if size < opp.size else "approved"
            self.clipped += verdict == "clipped"
            self.approved += 1
            approval = Approval(opp, size, self._clock.monotonic_ns())
            self._reserve(opp, size)
        record: Record = {
            "type": DECISION,
            "ts_ns": now_ns,
            "opp_id": opp.opp_id,
            "kind": opp.kind,
            "symbol": self._universe.symbols[opp.symbol],
            "buy_venue": self._universe.venues[opp.buy_venue],
            "sell_venue": self._universe.venues[opp.sell_venue],
            "size_requested": opp.size,
            "size_approved": size if approval else 0.0,
            "edge_bps": opp.edge_bps,
            "verdict": verdict,
            "reason": reason,
            "state": self.state.value,
        }
        return approval, record

    def _decide(self, opp: Opportunity) -> tuple[float, str]:
        if not self.store_ok:
            return 0.0, "store_unavailable"
        closing = opp.kind == REVERT_CLOSE
        # REDUCING admits only orders that shrink exposure: closing a reversion position.
        allowed = (
            (TradingState.ACTIVE, TradingState.REDUCING) if closing else (TradingState.ACTIVE,)
        )
        if self.state not in allowed:
            return 0.0, f"state_{self.state.value.lower()}"
        if self._clock.monotonic_ns() - opp.detect_mono_ns > self._max_age_ns:
            return 0.0, "stale_opportunity"
        # A crossed book must pay after fees; a reversion trade is a bet on the spread instead.
        if opp.kind == ARB and opp.edge_bps < self._limits.min_edge_bps:
            return 0.0, "edge_below_min"
        open_size = self._open_reversion(opp) if closing else math.inf
        if open_size <= 0:
            return 0.0, "no_open_position"
        busy = sum(1 for f in self._in_flight.values() if f.symbol == opp.symbol)
        if busy >= self._limits.max_in_flight_per_symbol:
            return 0.0, "in_flight"
        symbol = self._universe.symbols[opp.symbol]
        buy = self._universe.venues[opp.buy_venue]
        sell = self._universe.venues[opp.sell_venue]
        buy_spec = self._markets.spec(buy, symbol)
        sell_spec = self._markets.spec(sell, symbol)
        base, quote = symbol.split("/")
        buy_px, _ = leg_limit_prices(
            buy_spec, sell_spec, opp.buy_worst, opp.sell_worst, self._slippage_bps
        )
        notional = self._limits.max_order_notional
        if opp.kind != ARB:
            notional = min(notional, self._statarb_notional)
        caps = {
            "max_order_notional": notional / buy_px,
            "open_position": open_size,
            "insufficient_inventory": min(
                self._available(buy, quote) / (buy_px * (1.0 + buy_spec.taker_fee)),
                self._available(sell, base),
            ),
        }
        max_pos = self._limits.max_position.get(base)
        if max_pos is not None:
            caps["max_position"] = min(
                max_pos - self._exposure(buy, base, +1.0),
                max_pos - self._exposure(sell, base, -1.0),
            )
        binding, cap = min(caps.items(), key=lambda kv: kv[1])
        size = min(opp.size, cap)
        size = floor_to_lots(size, buy_spec.lot, sell_spec.lot)
        too_small = (
            size <= 0
            or size < max(buy_spec.min_amount, sell_spec.min_amount)
            or size * opp.buy_avg < buy_spec.min_notional
            or size * opp.sell_avg < sell_spec.min_notional
        )
        if too_small:
            return 0.0, binding if cap < opp.size else "below_min_size"
        if not self._bucket.take(2):
            return 0.0, "rate_limited"
        return size, binding if size < opp.size else ""

    def _pair(self, symbol: int, x: str, y: str) -> tuple[int, str, str]:
        return (symbol, min(x, y), max(x, y))

    def _open_reversion(self, opp: Opportunity) -> float:
        """How much of a reversion position this close may undo: it must buy where the open
        sold and sell where it bought."""
        buy = self._universe.venues[opp.buy_venue]
        sell = self._universe.venues[opp.sell_venue]
        held = self._reverting.get(self._pair(opp.symbol, buy, sell))
        if held is None or held[1] != buy or held[0] != sell:
            return 0.0
        return held[2]

    def _available(self, venue: str, asset: str) -> float:
        start = self._start_balances[venue].get(asset, 0.0)
        reserved = sum(
            f.quote_reserved if f.buy_venue == venue else 0.0
            for f in self._in_flight.values()
            if self._quote_of(f) == asset
        ) + sum(
            f.base_reserved if f.sell_venue == venue else 0.0
            for f in self._in_flight.values()
            if self._base_of(f) == asset
        )
        return max(0.0, start + self.ledger.position(venue, asset) - reserved)

    def _exposure(self, venue: str, asset: str, direction: float) -> float:
        """The asset's position on the venue, in `direction`, counting in-flight trades."""
        pending = sum(
            f.base_reserved
            for f in self._in_flight.values()
            if self._base_of(f) == asset
            and (f.buy_venue == venue if direction > 0 else f.sell_venue == venue)
        )
        return direction * self.ledger.position(venue, asset) + pending

    def _base_of(self, f: _InFlight) -> str:
        return self._universe.symbols[f.symbol].split("/")[0]

    def _quote_of(self, f: _InFlight) -> str:
        return self._universe.symbols[f.symbol].split("/")[1]

    def _reserve(self, opp: Opportunity, size: float) -> None:
        """Hold what the legs may spend: quote at the buy leg's limit price plus its fee."""
        buy = self._universe.venues[opp.buy_venue]
        sell = self._universe.venues[opp.sell_venue]
        symbol = self._universe.symbols[opp.symbol]
        buy_spec, sell_spec = self._markets.spec(buy, symbol), self._markets.spec(sell, symbol)
        buy_px, _ = leg_limit_prices(
            buy_spec, sell_spec, opp.buy_worst, opp.sell_worst, self._slippage_bps
        )
        self._in_flight[opp.opp_id] = _InFlight(
            symbol=opp.symbol,
            buy_venue=buy,
            sell_venue=sell,
            quote_reserved=size * buy_px * (1.0 + buy_spec.taker_fee),
            base_reserved=size,
            kind=opp.kind,
        )

    # -- outcomes -----------------------------------------------------------------------------

    def on_execution(self, report: ExecutionReport) -> None:
        """Book an executor's fills and release what the trade had reserved."""
        trade = self._in_flight.pop(report.opp_id, None)
        if trade is not None and trade.kind != ARB:
            self._book_reversion(trade, report)
        for r in report.fills:
            self.ledger.apply_fill(r.venue, r.symbol, r.side, r.filled, r.avg_price, r.fee_quote)
        self.legs_failed += report.legs_failed
        self.unwinds += int(report.unwound)
        self.trades += int(any(r.filled > 0 for r in report.fills))
        if report.legs_unknown:
            self.halt(f"leg_unknown:{report.opp_id}")
        elif report.journal_failed:
            self.halt(f"journal_write_failed:{report.opp_id}")

    def _book_reversion(self, trade: _InFlight, report: ExecutionReport) -> None:
        """Open or shrink a reversion position by what both legs matched."""
        matched = min(r.filled for r in report.fills[:2]) if len(report.fills) >= 2 else 0.0
        key = self._pair(trade.symbol, trade.buy_venue, trade.sell_venue)
        if trade.kind == REVERT_OPEN and matched > 0:
            self._reverting[key] = (trade.buy_venue, trade.sell_venue, matched)
        elif trade.kind == REVERT_CLOSE and key in self._reverting:
            bought_on, sold_on, size = self._reverting[key]
            if size - matched > 1e-12:
                self._reverting[key] = (bought_on, sold_on, size - matched)
            else:
                del self._reverting[key]

    def halt(self, reason: str) -> None:
        self.state = TradingState.HALTED
        self.state_reason = reason

    def resume(self) -> None:
        self.state = TradingState.ACTIVE
        self.state_reason = ""

    def in_flight(self) -> int:
        return len(self._in_flight)

    def snapshot(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "state_reason": self.state_reason,
            "approved": self.approved,
            "clipped": self.clipped,
            "rejected": dict(self.rejected),
            "trades": self.trades,
            "legs_failed": self.legs_failed,
            "unwinds": self.unwinds,
            "in_flight": len(self._in_flight),
            "reversion_positions": len(self._reverting),
            **self.ledger.snapshot(),
        }

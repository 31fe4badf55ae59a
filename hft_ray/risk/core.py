"""RiskCore: every opportunity is approved, clipped or rejected here, with a reason.

Checks, in order: the store answers and the state is restored; trading state; how old the
opportunity and its newest book are; minimum edge; trades in flight on the symbol; then the
size is clipped to the order notional limit, the position limit per asset and venue, the
inventory each venue holds net of what in-flight trades have reserved, and the gross exposure
limit (in REDUCING, to what shrinks exposure); last, the order rate per venue and overall (token
buckets). A clip that leaves less than a tradable size is a rejection naming the limit that
bound. Positions come from the fills that executors report, through the same `Ledger` that
rebuilds them from the journal.

Breakers switch the trading state on their own and stay tripped until resumed by hand:
daily loss, an unknown leg and a lost journal write, consecutive leg failures -> HALTED;
drawdown from the PnL peak, venue rejection rate, net position across venues -> REDUCING.
Everything the core knows is in `state()`, which the actor persists and `restore` reads back.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter, deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from hft_ray.clock import Clock
from hft_ray.config import HftConfig
from hft_ray.detect.reference import floor_to_lots
from hft_ray.execute.core import order_from_record
from hft_ray.ledger import Ledger
from hft_ray.markets import Markets, leg_limit_prices
from hft_ray.store.base import DECISION, EXECUTION, INTENT, ORDER, Record
from hft_ray.types import (
    ARB,
    REVERT_CLOSE,
    REVERT_OPEN,
    Approval,
    ExecutionReport,
    Opportunity,
    OrderResult,
    Universe,
)

_DAY_NS = 86_400 * 10**9
#: How far back a restore replays the journal; reports arrive within seconds of their trade.
_REPORTED_WINDOW_NS = 600 * 10**9


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


_SEVERITY = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up."""

    def __init__(self, rate: float, burst: int, clock: Clock) -> None:
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


@dataclass
class _InFlight:
    symbol: int
    buy_venue: str
    sell_venue: str
    quote_reserved: float
    base_reserved: float
    kind: str = ARB


@dataclass
class Breaker:
    """A tripped breaker: the state it forces and why; cleared only by `resume`."""

    forces: TradingState
    detail: str
    ts_ns: int


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
        book_age_ms = config.risk.max_book_age_ms or config.feed.max_book_age_ms
        self._max_book_age_ns = int(book_age_ms * 1e6)
        self._bucket = TokenBucket(self._limits.max_orders_per_s, self._limits.order_burst, clock)
        per_venue = self._limits.max_venue_orders_per_s
        self._venue_buckets = (
            {
                v: TokenBucket(per_venue, self._limits.venue_order_burst, clock)
                for v in config.venues
            }
            if per_venue is not None
            else {}
        )
        self.breakers: dict[str, Breaker] = {}
        # Fail closed: nothing is approved until the actor has seen the store answer and has
        # restored what an earlier incarnation left there.
        self.store_ok = False
        self.restored = False
        self.ledger = Ledger()
        self._start_balances = {name: dict(v.balances) for name, v in config.venues.items()}
        self._in_flight: dict[str, _InFlight] = {}
        # Trades booked in the last `_REPORTED_WINDOW_NS`, by opportunity id, with when: a
        # report seen again (an executor's after the journal replay) is booked once. Older
        # ones are dropped at each save: a restore replays only that window of the journal.
        self._reported: dict[str, int] = {}
        self._marks: dict[str, float] = {}  # base asset -> last price seen
        self._peak_pnl = 0.0
        self._day = clock.time_ns() // _DAY_NS
        self._day_start_pnl = 0.0
        self._leg_failure_streak = 0
        self._venue_rejects: deque[bool] = deque(maxlen=self._limits.reject_rate_window)
        self.approved = 0
        self.clipped = 0
        self.rejected: Counter[str] = Counter()
        self.legs_failed = 0
        self.trades = 0
        self.unwinds = 0
        self.dirty = False  # changed since the actor last persisted `state_record()`

    @property
    def state(self) -> TradingState:
        """The most severe state any tripped breaker forces."""
        forced = [b.forces for b in self.breakers.values()]
        return max(forced, key=_SEVERITY.__getitem__, default=TradingState.ACTIVE)

    @property
    def state_reason(self) -> str:
        state = self.state
        return ", ".join(f"{n}: {b.detail}" for n, b in self.breakers.items() if b.forces == state)

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
            # Persisted with the next save; a rejection alone changes only a counter (the
            # journal has every decision), so it does not cost a save of its own.
            self.dirty = True
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
        if not self.restored:
            return 0.0, "restoring"
        state = self.state
        closing = opp.kind == REVERT_CLOSE
        if state == TradingState.HALTED or (
            state == TradingState.REDUCING and opp.kind == REVERT_OPEN
        ):
            return 0.0, f"state_{state.value.lower()}"
        now = self._clock.monotonic_ns()
        if now - opp.detect_mono_ns > self._max_age_ns:
            return 0.0, "stale_opportunity"
        if now - opp.tick_mono_ns > self._max_book_age_ns:
            return 0.0, "stale_book"
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
        self._marks[base] = opp.buy_avg
        buy_px, sell_px = leg_limit_prices(
            buy_spec, sell_spec, opp.buy_worst, opp.sell_worst, self._slippage_bps
        )
        notional = self._limits.max_order_notional
        if opp.kind != ARB:
            notional = min(notional, self._statarb_notional)
        caps = {
            # Each leg's notional at its limit price; the sell leg's is the larger on a crossing.
            "max_order_notional": notional / max(buy_px, sell_px),
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
        if state == TradingState.REDUCING and not closing:
            # Only towards flat: buy where short, sell where long, never past zero.
            caps["state_reducing"] = max(
                0.0, min(-self._exposure(buy, base, +1.0), -self._exposure(sell, base, -1.0))
            )
        elif self._limits.max_gross_exposure_quote is not None and not closing:
            caps["max_gross_exposure"] = self._gross_cap(
                buy, sell, base, opp.size, self._limits.max_gross_exposure_quote
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
        venue_buckets = [self._venue_buckets[v] for v in (buy, sell) if v in self._venue_buckets]
        if not all(b.has(1) for b in venue_buckets):
            return 0.0, "venue_rate_limited"
        if not self._bucket.take(2):
            return 0.0, "rate_limited"
        for b in venue_buckets:
            b.take(1)
        return size, binding if size < opp.size else ""

    def _gross_cap(self, buy: str, sell: str, base: str, size: float, ceiling: float) -> float:
        """The largest size up to `size` that keeps gross exposure at most `ceiling` (quote),
        or, when it is already above, that does not raise it. Buying on `buy` and selling on
        `sell` moves both venues' positions; the change is convex in the size, so the sizes
        allowed form an interval from zero, found by bisection."""
        gross = self.gross_exposure()
        mark = self._marks.get(base, 0.0)
        p_buy = self._exposure(buy, base, +1.0)
        p_sell = -self._exposure(sell, base, -1.0)
        headroom = max(ceiling - gross, 0.0)

        def change(s: float) -> float:
            return mark * (abs(p_buy + s) - abs(p_buy) + abs(p_sell - s) - abs(p_sell))

        if change(size) <= headroom + 1e-9:
            return size
        lo, hi = 0.0, size
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if change(mid) <= headroom + 1e-9 else (lo, mid)
        return lo

    def gross_exposure(self) -> float:
        """Sum over venues and base assets of |position| x last price, in quote."""
        bases = {s.split("/")[0] for s in self._universe.symbols}
        return sum(
            abs(self._exposure(v, a, +1.0)) * self._marks.get(a, 0.0)
            for v in self._universe.venues
            for a in bases
        )

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
        """Book an executor's fills, release what the trade had reserved, check the breakers.

        A report seen before (an executor's, after the journal replay already booked it) is
        ignored, so a restart never books a trade twice."""
        if report.opp_id in self._reported:
            return
        self._reported[report.opp_id] = self._clock.time_ns()
        self.dirty = True
        self._roll_day()
        trade = self._in_flight.pop(report.opp_id, None)
        if trade is not None and trade.kind != ARB:
            self._book_reversion(trade, report)
        for r in report.fills:
            self.ledger.apply_fill(
                r.venue,
                r.symbol,
                r.side,
                r.filled,
                r.avg_price,
                r.fee_quote,
                r.client_id,
                r.fee_base,
            )
            if r.filled > 0:
                self._marks[r.symbol.split("/")[0]] = r.avg_price
        for r in report.fills[:2]:  # the two legs; a repair order is ours, not the venue's
            self._venue_rejects.append(r.status == "rejected")
        self.legs_failed += report.legs_failed
        self.unwinds += int(report.unwound)
        self.trades += int(any(r.filled > 0 for r in report.fills))
        self._leg_failure_streak = self._leg_failure_streak + 1 if report.legs_failed else 0
        self._check_breakers(report)

    def _roll_day(self) -> None:
        day = self._clock.time_ns() // _DAY_NS
        if day != self._day:
            self._day, self._day_start_pnl = day, self.ledger.realized_pnl_quote

    def _check_breakers(self, report: ExecutionReport) -> None:
        lim = self._limits
        pnl = self.ledger.realized_pnl_quote
        self._peak_pnl = max(self._peak_pnl, pnl)
        if report.legs_unknown:
            self.trip("leg_unknown", TradingState.HALTED, report.opp_id)
        if report.journal_failed:
            self.trip("journal_write_failed", TradingState.HALTED, report.opp_id)
        daily_loss = self._day_start_pnl - pnl
        if lim.max_daily_loss_quote is not None and daily_loss >= lim.max_daily_loss_quote:
            self.trip("max_daily_loss", TradingState.HALTED, f"lost {daily_loss:.4f} today")
        drawdown = self._peak_pnl - pnl
        if lim.max_drawdown_quote is not None and drawdown >= lim.max_drawdown_quote:
            self.trip("max_drawdown", TradingState.REDUCING, f"{drawdown:.4f} below the peak")
        if self._leg_failure_streak >= lim.max_consecutive_leg_failures:
            self.trip(
                "consecutive_leg_failures",
                TradingState.HALTED,
                f"{self._leg_failure_streak} trades in a row",
            )
        window = self._venue_rejects
        if len(window) == window.maxlen:
            rate = sum(window) / len(window)
            if rate > lim.max_reject_rate:
                self.trip("reject_rate", TradingState.REDUCING, f"{rate:.0%} of the last orders")
        for asset, limit in lim.max_net_position.items():
            net = sum(self.ledger.position(v, asset) for v in self._universe.venues)
            if abs(net) > limit:
                self.trip("max_net_position", TradingState.REDUCING, f"{asset} {net:+.8g}")

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

    # -- trading state ------------------------------------------------------------------------

    def trip(self, name: str, forces: TradingState, detail: str) -> None:
        """Trip a breaker; one already tripped keeps its first reason."""
        if name not in self.breakers:
            self.breakers[name] = Breaker(forces, detail, self._clock.time_ns())
            self.dirty = True

    def halt(self, reason: str = "operator") -> None:
        """Stop all trading by hand."""
        self.breakers["operator"] = Breaker(TradingState.HALTED, reason, self._clock.time_ns())
        self.dirty = True

    def reduce_only(self, reason: str = "operator") -> None:
        """Admit only orders that shrink exposure, by hand."""
        self.breakers["operator"] = Breaker(TradingState.REDUCING, reason, self._clock.time_ns())
        self.dirty = True

    def resume(self) -> None:
        """Clear every breaker. The drawdown is measured from here on and the streaks restart;
        the day's loss is not forgiven."""
        self.breakers.clear()
        self._peak_pnl = self.ledger.realized_pnl_quote
        self._leg_failure_streak = 0
        self._venue_rejects.clear()
        self.dirty = True

    def in_flight_ids(self) -> list[str]:
        return list(self._in_flight)

    def snapshot(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "state_reason": self.state_reason,
            "breakers": {n: dataclasses.asdict(b) for n, b in self.breakers.items()},
            "restored": self.restored,
            "store_ok": self.store_ok,
            "approved": self.approved,
            "clipped": self.clipped,
            "rejected": dict(self.rejected),
            "trades": self.trades,
            "legs_failed": self.legs_failed,
            "unwinds": self.unwinds,
            "in_flight": len(self._in_flight),
            "reversion_positions": len(self._reverting),
            "gross_exposure_quote": self.gross_exposure(),
            "peak_pnl_quote": self._peak_pnl,
            **self.ledger.snapshot(),
        }

    # -- persistence --------------------------------------------------------------------------

    def state_record(self) -> Record:
        """Everything the core knows, as plain data for the store. Trades booked longer ago
        than the replay window are forgotten first, so the record stays the size of the
        window's trades, not the run's."""
        now = self._clock.time_ns()
        old = [k for k, at in self._reported.items() if now - at > _REPORTED_WINDOW_NS]
        for opp_id in old:
            del self._reported[opp_id]
        self.ledger.forget(client_order_id_prefixes=old)
        return {
            "saved_at_ns": now,
            "breakers": {n: [b.forces.value, b.detail, b.ts_ns] for n, b in self.breakers.items()},
            "ledger": self.ledger.state(),
            "in_flight": {k: dataclasses.astuple(f) for k, f in self._in_flight.items()},
            "reported": [[k, at] for k, at in self._reported.items()],
            "reverting": [[*k, *v] for k, v in self._reverting.items()],
            "marks": self._marks,
            "peak_pnl": self._peak_pnl,
            "day": self._day,
            "day_start_pnl": self._day_start_pnl,
            "leg_failure_streak": self._leg_failure_streak,
            "venue_rejects": list(self._venue_rejects),
            "counters": {
                "approved": self.approved,
                "clipped": self.clipped,
                "rejected": dict(self.rejected),
                "legs_failed": self.legs_failed,
                "trades": self.trades,
                "unwinds": self.unwinds,
            },
        }

    def restore(self, state: Record | None, journal: list[Record]) -> None:
        """Continue from a persisted `state_record` (None: a fresh start) and the journal:
        trades whose intent was journaled but not their outcome are in flight (reserved, as
        if just approved), and every execution the state had not booked yet is replayed
        through `on_execution`, the path a live report takes.

        Everything is read before anything is assigned: a state or journal this code cannot
        read raises (KeyError, TypeError, ValueError) and leaves the core as it was."""
        # Anything journaled before the state's replay window was booked before it was saved.
        since = 0 if state is None else int(state["saved_at_ns"]) - _REPORTED_WINDOW_NS
        reports = executions_from_journal(journal, since_ns=since)
        # Every intent's trade, so that replaying its outcome books it by its kind; those
        # with an outcome leave the in-flight set again as it is replayed.
        pending = {
            r["opp_id"]: self._reserved_by(r)
            for r in journal
            if r.get("type") == INTENT and r.get("ts_ns", 0) >= since
        }
        if state is not None:
            restored = _RestoredState.read(state)
            restored.assign(self)
        for opp_id, trade in pending.items():
            if opp_id not in self._reported:
                self._in_flight.setdefault(opp_id, trade)
        for report in reports:
            self.on_execution(report)
        self.restored = True
        self.dirty = True

    def _reserved_by(self, intent: Record) -> _InFlight:
        """What an intent's legs hold, as `_reserve` would have held it."""
        legs = {leg["side"]: leg for leg in intent["legs"]}
        buy, sell = legs["buy"], legs["sell"]
        symbol = intent["symbol"]
        fee = self._markets.spec(buy["venue"], symbol).taker_fee
        return _InFlight(
            symbol=self._universe.symbol_id(symbol),
            buy_venue=buy["venue"],
            sell_venue=sell["venue"],
            quote_reserved=float(buy["amount"]) * float(buy["price"]) * (1.0 + fee),
            base_reserved=float(buy["amount"]),
            kind=intent.get("kind", ARB),
        )


@dataclass
class _RestoredState:
    """A persisted `state_record`, read and checked before any of it is assigned."""

    breakers: dict[str, Breaker]
    ledger: Ledger
    in_flight: dict[str, _InFlight]
    reported: dict[str, int]
    reverting: dict[tuple[int, str, str], tuple[str, str, float]]
    marks: dict[str, float]
    peak_pnl: float
    day: int
    day_start_pnl: float
    leg_failure_streak: int
    venue_rejects: list[bool]
    counters: dict[str, Any]

    @classmethod
    def read(cls, state: Record) -> _RestoredState:
        c = state["counters"]
        return cls(
            breakers={
                n: Breaker(TradingState(f), d, int(t)) for n, (f, d, t) in state["breakers"].items()
            },
            ledger=Ledger.from_state(state["ledger"]),
            in_flight={k: _InFlight(*v) for k, v in state["in_flight"].items()},
            reported={str(k): int(at) for k, at in state["reported"]},
            reverting={(int(s), a, b): (x, y, float(q)) for s, a, b, x, y, q in state["reverting"]},
            marks={str(k): float(v) for k, v in state["marks"].items()},
            peak_pnl=float(state["peak_pnl"]),
            day=int(state["day"]),
            day_start_pnl=float(state["day_start_pnl"]),
            leg_failure_streak=int(state["leg_failure_streak"]),
            venue_rejects=[bool(x) for x in state["venue_rejects"]],
            counters={
                "approved": int(c["approved"]),
                "clipped": int(c["clipped"]),
                "rejected": Counter({str(k): int(v) for k, v in c["rejected"].items()}),
                "legs_failed": int(c["legs_failed"]),
                "trades": int(c["trades"]),
                "unwinds": int(c["unwinds"]),
            },
        )

    def assign(self, core: RiskCore) -> None:
        core.breakers = self.breakers
        core.ledger = self.ledger
        core._in_flight = self.in_flight
        core._reported = self.reported
        core._reverting = self.reverting
        core._marks = self.marks
        core._peak_pnl = self.peak_pnl
        core._day, core._day_start_pnl = self.day, self.day_start_pnl
        core._leg_failure_streak = self.leg_failure_streak
        core._venue_rejects.clear()
        core._venue_rejects.extend(self.venue_rejects)
        c = self.counters
        core.approved, core.clipped = c["approved"], c["clipped"]
        # Rejections made while restoring add to those restored: nothing was approved.
        core.rejected = c["rejected"] + core.rejected
        core.legs_failed, core.trades, core.unwinds = c["legs_failed"], c["trades"], c["unwinds"]


def executions_from_journal(journal: list[Record], since_ns: int = 0) -> list[ExecutionReport]:
    """The execution reports an executor sent, rebuilt from its order and execution records
    (those journaled at or after `since_ns`)."""
    orders: dict[str, dict[str, OrderResult]] = {}
    for r in journal:
        if r.get("type") == ORDER:
            order = order_from_record(r)
            if order.client_id[-1:] not in ("B", "S", "U"):
                raise ValueError(f"journal order record with client id {order.client_id!r}")
            # Keyed by client id: a record written twice (a retried write) counts once.
            orders.setdefault(r["opp_id"], {})[order.client_id] = order
    reports = []
    for r in journal:
        if r.get("type") != EXECUTION or r.get("ts_ns", 0) < since_ns:
            continue
        # Legs first (client ids end B, S), then a repair (U), as the executor reports them.
        found = orders.get(r["opp_id"], {}).values()
        fills = sorted(found, key=lambda o: "BSU".index(o.client_id[-1]))
        reports.append(
            ExecutionReport(
                r["opp_id"],
                r["symbol"],
                tuple(fills),
                int(r["legs_failed"]),
                bool(r["unwound"]),
                0,
                legs_unknown=int(r["legs_unknown"]),
            )
        )
    return reports

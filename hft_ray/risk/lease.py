"""Leases: how the one risk authority lets trading nodes decide in-process, never past a limit.

A fused trading node decides on its own opportunities with a `RiskGate`, without a hop to the
risk actor. The gate may spend only what its lease grants: per (venue, base) how far the
position may still rise (`long`) and fall (`short`), per (venue, asset) how much inventory it
may spend, how much gross exposure it may add, and a share of the order-rate limits, for a
short time to live. The risk actor stays the one authority: it books every decision and fill
the node reports, keeps the breakers, and counts everything a node *holds* (what its gate can
still spend) as used, so that positions + every reservation + every node's held room never
exceed a limit, whatever the nodes do.

The protocol, one call per period from each node (`NodeSync` in, `Lease` out, at most one
outstanding per node):
- the node sends the reports risk has not acknowledged yet, its trades in flight, and what its
  gate can still spend now (`remaining`; zero once its lease expired);
- risk books the reports, takes the node's in-flight trades as its reservations and its
  `remaining` as what it holds, then grants a top-up from the room left under every limit (a
  share of it when several nodes trade) and a `target` the node may hold at most;
- the gate adds the top-up, trims to the target, and may spend it until its own send time plus
  the TTL: sent before risk granted it, so the gate's lease always ends before risk's view of
  it. A gate only ever consumes room between syncs; room comes back only through risk.
A halt or a breaker closes every lease at once (`revoke`, and every later lease is closed); a
lease not renewed in time closes the gate by itself.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from hft_ray.clock import Clock
from hft_ray.config import HftConfig
from hft_ray.journal import Decision as DecisionRecord
from hft_ray.journal import Verdict
from hft_ray.markets import Markets
from hft_ray.risk.checks import Decision, decide
from hft_ray.risk.state import (
    OrderRate,
    Reservation,
    Reverting,
    TradingState,
    book_reversion,
    matched_size,
    open_reversion,
)
from hft_ray.types import ARB, Approval, ExecutionReport, Opportunity, Universe


@dataclass
class Budget:
    """Room a node may spend, as arrays over the run's `Universe`: `long` and `short` are
    (venues, bases) in base units, `spend` (venues, assets) in asset units, `gross` quote.
    NaN: not limited by that constraint (no `max_position` for the asset, no gross limit)."""

    long: np.ndarray
    short: np.ndarray
    spend: np.ndarray
    gross: float

    @classmethod
    def zeros(cls, universe: Universe) -> Budget:
        """Nothing to spend: a node before its first lease holds nothing."""
        v, b, a = len(universe.venues), len(universe.bases), len(universe.assets())
        return cls(np.zeros((v, b)), np.zeros((v, b)), np.zeros((v, a)), 0.0)

    def copy(self) -> Budget:
        return Budget(self.long.copy(), self.short.copy(), self.spend.copy(), self.gross)

    def _each(self, other: Budget, op: Callable[[Any, Any], Any]) -> Budget:
        return Budget(
            op(self.long, other.long),
            op(self.short, other.short),
            op(self.spend, other.spend),
            float(op(np.float64(self.gross), np.float64(other.gross))),
        )

    def topped_up(self, topup: Budget, target: Budget) -> Budget:
        """This budget plus `topup`, trimmed to `target`; the target's NaNs say what is not
        limited from now on."""
        return Budget(
            _topped(self.long, topup.long, target.long),
            _topped(self.short, topup.short, target.short),
            _topped(self.spend, topup.spend, target.spend),
            float(_topped(np.float64(self.gross), np.float64(topup.gross), target.gross)),
        )

    def up_to(self, target: Budget) -> Budget:
        """What brings this budget up to `target`, entry by entry: nothing where it already
        holds more (the gate trims that itself, and risk counts it until the gate reports it)."""
        return self._each(target, _missing)

    def plus(self, other: Budget) -> Budget:
        """Risk's count of what a node holds after a top-up: no credit for a trim."""
        return self._each(other, _added)

    def zeroed(self) -> Budget:
        """Nothing left to spend (NaNs stay: they still say what is not limited)."""
        return self._each(self, lambda x, _: np.where(np.isnan(x), np.nan, 0.0))

    def held(self) -> Budget:
        """What this budget counts against the limits: NaN (not limited) counts as nothing."""
        return self._each(self, lambda x, _: np.nan_to_num(x, nan=0.0))


def _topped(have: Any, add: Any, most: Any) -> Any:
    total = np.nan_to_num(have, nan=0.0) + np.nan_to_num(add, nan=0.0)
    return np.where(np.isnan(most), np.nan, np.minimum(total, most))


def _missing(have: Any, most: Any) -> Any:
    return np.where(np.isnan(most), np.nan, np.maximum(0.0, most - np.nan_to_num(have, nan=0.0)))


def _added(have: Any, more: Any) -> Any:
    both_unlimited = np.isnan(have) & np.isnan(more)
    total = np.nan_to_num(have, nan=0.0) + np.nan_to_num(more, nan=0.0)
    return np.where(both_unlimited, np.nan, total)


class RateShare(NamedTuple):
    """A node's share of the order-rate limits (token buckets: rate per second, burst)."""

    per_s: float
    burst: float
    venue_per_s: float | None
    venue_burst: float


class Lease(NamedTuple):
    """Risk's answer to one `NodeSync`."""

    node: str
    seq: int  # the sync it answers
    closed: str  # why the node may approve nothing ('' when open)
    state: str  # the trading state (TradingState value)
    ttl_ns: int
    booked: int  # how many of the node incarnation's reports risk has booked
    topup: Budget
    target: Budget
    rate: RateShare
    reverting: Reverting  # the open reversion positions of the node's symbols, as booked
    positions: dict[str, dict[str, float]]  # balance changes per venue, as booked


class NodeSync(NamedTuple):
    """What a node tells risk each period."""

    node: str
    incarnation: str  # a new one each time the node's process starts
    seq: int
    reports: tuple[tuple[int, ExecutionReport], ...]  # (report number, report) unacknowledged
    reports_made: int  # reports this incarnation has produced
    in_flight: dict[str, Reservation]  # approved by the gate, not reported yet
    remaining: Budget  # what the gate can still spend, now
    counts: dict[str, object]  # cumulative decisions: approved, clipped (by limit), rejected


def decision_record(
    opp: Opportunity, universe: Universe, decision: Decision, state: TradingState, ts_ns: int
) -> DecisionRecord:
    """The journal record of one decision, as both deciders write it."""
    approved = decision.size > 0
    verdict: Verdict = "rejected"
    if approved:
        verdict = "clipped" if decision.clip else "approved"
    return DecisionRecord(
        ts_ns=ts_ns,
        opp_id=opp.opp_id,
        kind=opp.kind,
        symbol=universe.symbols[opp.symbol],
        buy_venue=universe.venues[opp.buy_venue],
        sell_venue=universe.venues[opp.sell_venue],
        size_requested=opp.size,
        size_approved=decision.size if approved else 0.0,
        edge_bps=opp.edge_bps,
        verdict=verdict,
        reason=decision.reason,
        state=state.value,
        clip=decision.clip,
    )


class RiskGate:
    """A trading node's risk decisions, within its lease: the same checks as the risk actor's
    (`checks.decide`), against the room the lease grants instead of the whole book.

    Closed until the first lease; closed again when the lease expires, is revoked, or a report
    of this node shows a leg whose fate is unknown or a journal write that failed (until a
    lease arrives that was granted after risk booked that report).
    """

    def __init__(
        self,
        config: HftConfig,
        universe: Universe,
        markets: Markets,
        clock: Clock,
        node: str,
    ) -> None:
        self.node = node
        self.incarnation = secrets.token_hex(4)
        self._config = config
        self._universe = universe
        self._markets = markets
        self._clock = clock
        self._limits = config.risk
        self._max_age_ns = int(config.risk.max_opportunity_age_ms * 1e6)
        book_age_ms = config.risk.max_book_age_ms or config.feed.max_book_age_ms
        self._max_book_age_ns = int(book_age_ms * 1e6)
        self._skew = {b: config.skew_per_unit(b) for b in universe.bases}
        self._offset = {
            (v, b): config.inventory_offset(v, b) for v in universe.venues for b in universe.bases
        }
        self._budget = Budget.zeros(universe)
        self._vi = {v: i for i, v in enumerate(universe.venues)}
        self._bi = {b: i for i, b in enumerate(universe.bases)}
        self._ai = {a: i for i, a in enumerate(universe.assets())}
        self._expires_mono = 0
        self._lease: Lease | None = None
        self._revoked = ""
        self._halt_until_booked = 0  # a report number risk must have booked before reopening
        self._rate: OrderRate | None = None
        self._rate_share: RateShare | None = None
        self._marks: dict[str, float] = {}
        self._reverting: Reverting = {}
        self.in_flight: dict[str, Reservation] = {}
        self._seq = 0
        self._unacked: dict[int, ExecutionReport] = {}
        self.reports_made = 0
        self.approved = 0
        self.clipped = 0
        self.clipped_by: dict[str, int] = {}  # clips by the limit that bound
        self.rejected: dict[str, int] = {}

    # -- the lease ----------------------------------------------------------------------------

    def sync_message(self) -> tuple[NodeSync, int]:
        """What to send risk now, and the monotonic time it is sent at (the start of the next
        lease's life)."""
        self._expire()
        self._seq += 1
        sent = self._clock.monotonic_ns()
        msg = NodeSync(
            node=self.node,
            incarnation=self.incarnation,
            seq=self._seq,
            reports=tuple(sorted(self._unacked.items())),
            reports_made=self.reports_made,
            in_flight=dict(self.in_flight),
            remaining=self._budget.copy(),
            counts=self.counts(),
        )
        return msg, sent

    def apply(self, lease: Lease, sent_mono_ns: int) -> None:
        """Take risk's answer to the sync sent at `sent_mono_ns`."""
        if lease.seq != self._seq:
            return  # the answer to a sync this gate no longer waits for
        for n in [n for n in self._unacked if n <= lease.booked]:
            del self._unacked[n]
        self._lease = lease
        self._revoked = ""
        self._budget = self._budget.topped_up(lease.topup, lease.target)
        self._expires_mono = sent_mono_ns + lease.ttl_ns
        if lease.rate != self._rate_share:
            self._rate_share = lease.rate
            self._rate = OrderRate(
                list(self._universe.venues),
                self._clock,
                lease.rate.per_s,
                lease.rate.burst,
                lease.rate.venue_per_s,
                lease.rate.venue_burst,
            )
        if lease.booked >= self.reports_made:
            self._reverting = dict(lease.reverting)  # risk has booked all this gate reported

    def revoke(self, reason: str) -> None:
        """Close at once and give up what is left: only a new lease opens the gate again."""
        self._revoked = reason or "lease_revoked"
        self._budget = self._budget.zeroed()

    def _expire(self) -> None:
        if self._lease is not None and self._clock.monotonic_ns() >= self._expires_mono:
            self._budget = self._budget.zeroed()

    @property
    def expires_in_ns(self) -> int:
        return max(0, self._expires_mono - self._clock.monotonic_ns())

    # -- decisions ----------------------------------------------------------------------------

    def evaluate(self, opp: Opportunity) -> tuple[Approval | None, DecisionRecord]:
        """Decide on one opportunity within the lease; the record goes to the node's journal."""
        now = self._clock.monotonic_ns()
        decision = decide(
            opp,
            self,
            limits=self._limits,
            universe=self._universe,
            markets=self._markets,
            now_mono_ns=now,
            max_age_ns=self._max_age_ns,
            max_book_age_ns=self._max_book_age_ns,
            slippage_bps=self._config.execution.slippage_bps,
            statarb_notional=self._config.detector.statarb.max_notional,
            skew_per_unit=self._skew,
        )
        state = self.trading_state()
        record = decision_record(opp, self._universe, decision, state, self._clock.time_ns())
        if decision.size <= 0:
            self.rejected[decision.reason] = self.rejected.get(decision.reason, 0) + 1
            return None, record
        self.approved += 1
        if decision.clip:
            self.clipped += 1
            self.clipped_by[decision.clip] = self.clipped_by.get(decision.clip, 0) + 1
        self._reserve(opp, decision)
        approved_at = self._clock.monotonic_ns()
        return Approval(opp, decision.size, approved_at), record

    def _reserve(self, opp: Opportunity, decision: Decision) -> None:
        symbol = self._universe.symbols[opp.symbol]
        base, quote = symbol.split("/")
        buy = self._universe.venues[opp.buy_venue]
        sell = self._universe.venues[opp.sell_venue]
        size = decision.size
        quote_cost = size * decision.buy_px * (1.0 + self._markets.spec(buy, symbol).taker_fee)
        gross = size * 2.0 * self._marks.get(base, opp.buy_avg)
        b, vi, bi, ai = self._budget, self._vi, self._bi[base], self._ai
        for room, key, amount in (
            (b.long, (vi[buy], bi), size),
            (b.short, (vi[sell], bi), size),
            (b.spend, (vi[buy], ai[quote]), quote_cost),
            (b.spend, (vi[sell], ai[base]), size),
        ):
            if not math.isnan(room[key]):
                room[key] = max(0.0, room[key] - amount)
        if not math.isnan(b.gross):
            b.gross = max(0.0, b.gross - gross)
        self.in_flight[opp.opp_id] = Reservation(
            opp.symbol, buy, sell, quote_cost, size, opp.kind, self.node, gross
        )

    def on_report(self, report: ExecutionReport) -> None:
        """An execution of this node finished (or was written off): free its slot, keep it
        until risk acknowledges it, and close at once on what must halt trading."""
        trade = self.in_flight.pop(report.opp_id, None)
        self.reports_made += 1
        self._unacked[self.reports_made] = report
        if trade is not None and trade.kind != ARB:
            book_reversion(self._reverting, trade, matched_size(report))
        if report.legs_unknown or report.journal_failed:
            self._halt_until_booked = self.reports_made

    @property
    def unacknowledged(self) -> dict[int, ExecutionReport]:
        """Reports risk has not yet said it booked."""
        return self._unacked

    def counts(self) -> dict[str, object]:
        return {
            "approved": self.approved,
            "clipped": self.clipped,
            "clipped_by": dict(self.clipped_by),
            "rejected": dict(self.rejected),
        }

    # -- Room ---------------------------------------------------------------------------------

    def closed(self) -> str:
        lease = self._lease
        if lease is None:
            return "no_lease"
        if self._revoked:
            return self._revoked
        if lease.closed:
            return lease.closed
        if self._halt_until_booked > lease.booked:
            return "leg_unknown_or_journal_failed"
        if self._clock.monotonic_ns() >= self._expires_mono:
            return "lease_expired"
        return ""

    def trading_state(self) -> TradingState:
        return TradingState(self._lease.state) if self._lease is not None else TradingState.ACTIVE

    def busy(self, symbol: int) -> int:
        return sum(1 for r in self.in_flight.values() if r.symbol == symbol)

    def open_reversion(self, opp: Opportunity) -> float:
        buy = self._universe.venues[opp.buy_venue]
        sell = self._universe.venues[opp.sell_venue]
        return open_reversion(self._reverting, opp.symbol, buy, sell)

    def available(self, venue: str, asset: str) -> float:
        room = float(self._budget.spend[self._vi[venue], self._ai[asset]])
        return 0.0 if math.isnan(room) else room

    def position_room(self, venue: str, base: str, direction: float) -> float | None:
        if self.trading_state() is not TradingState.ACTIVE:
            return None  # in REDUCING the room is the way to flat (`flat_room`)
        room = self._budget.long if direction > 0 else self._budget.short
        value = float(room[self._vi[venue], self._bi[base]])
        return None if math.isnan(value) else value

    def flat_room(self, venue: str, base: str, direction: float) -> float:
        room = self._budget.long if direction > 0 else self._budget.short
        value = float(room[self._vi[venue], self._bi[base]])
        return 0.0 if math.isnan(value) else value

    def gross_cap(self, buy: str, sell: str, base: str, size: float) -> float | None:
        if math.isnan(self._budget.gross):
            return None
        # Each leg can add at most its size at the mark to gross exposure: the gate cannot
        # see other nodes' positions, so it counts the worst case.
        mark = self._marks.get(base, 0.0)
        return size if mark <= 0 else min(size, self._budget.gross / (2.0 * mark))

    def mark(self, base: str, price: float) -> None:
        self._marks[base] = price

    def imbalance(self, venue: str, base: str) -> float:
        # The positions of the last lease: those the node's detector was given.
        booked = self._lease.positions.get(venue, {}) if self._lease is not None else {}
        return booked.get(base, 0.0) - self._offset[(venue, base)]

    def take_orders(self, buy: str, sell: str) -> str:
        return "rate_limited" if self._rate is None else self._rate.take(buy, sell)

"""RiskCore: the one authority over limits, positions and breakers.

It approves, clips or rejects opportunities itself (the distributed topology: detectors send
them here) with the checks of `risk/checks.py`, and it grants trading nodes the leases their
gates decide within (the fused topology, `risk/lease.py`). Either way it counts everything
that may still move a position or spend inventory as used: positions, trades in flight, and
whatever each node's lease still lets it spend. Positions come from the fills that executors
and nodes report, through the same `Ledger` that rebuilds them from the journal.

Breakers switch the trading state on their own and stay tripped until resumed by hand:
daily loss, an unknown leg and a lost journal write, consecutive leg failures -> HALTED;
drawdown from the PnL peak, venue rejection rate, net position across venues -> REDUCING.
Everything the core knows is in `state()`, which the actor persists and `restore` reads back.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hft_ray.clock import Clock
from hft_ray.config import HftConfig
from hft_ray.execute.core import order_from_record
from hft_ray.journal import Decision as DecisionRecord
from hft_ray.journal import Execution, Intent, JournalRecord, Order, RiskEvent
from hft_ray.ledger import Ledger
from hft_ray.markets import Markets
from hft_ray.risk.checks import Decision, decide
from hft_ray.risk.lease import Budget, Lease, NodeSync, RateShare, decision_record
from hft_ray.risk.state import (
    Breaker,
    OrderRate,
    Reservation,
    Reverting,
    TradingState,
    book_reversion,
    matched_size,
    most_severe,
    open_reversion,
)
from hft_ray.store.base import Record
from hft_ray.types import ARB, Approval, ExecutionReport, Opportunity, OrderResult, Universe

__all__ = ["Breaker", "RiskCore", "TradingState", "executions_from_journal"]


_DAY_NS = 86_400 * 10**9
#: How much before risk last heard from a node a report of its may have been journaled and not
#: yet reached risk (reports are resent every sync; booked ones are remembered for longer).
_LATE_REPORT_NS = 30 * 10**9
#: How far back a restore replays the journal; reports arrive within seconds of their trade.
_REPORTED_WINDOW_NS = 600 * 10**9


@dataclass
class _NodeAccount:
    """What risk knows of one trading node's lease."""

    held: Budget  # what its gate may still spend, at most
    live_until_ns: int = 0  # monotonic: nothing held can be spent after this
    synced: bool = False  # has reported to this incarnation of risk
    heard_ns: int = 0  # wall clock of its last sync (or of risk's start, before one)
    incarnation: str = ""  # the node process now reporting
    retired: set[str] = field(default_factory=set)  # earlier processes of the node
    unknown_until_ns: int = 0  # after a restore: until then, unsynced, it may hold anything
    # Cumulative decision counts per node incarnation (a restarted node counts from zero).
    counts: dict[str, dict[str, Any]] = field(default_factory=dict)


class RiskCore:
    def __init__(
        self,
        config: HftConfig,
        universe: Universe,
        markets: Markets,
        clock: Clock,
        nodes: tuple[str, ...] = (),
    ) -> None:
        self._markets = markets
        self._limits = config.risk
        self._statarb_notional = config.detector.statarb.max_notional
        self._skew = {b: config.skew_per_unit(b) for b in universe.bases}
        self._offset = {
            (v, b): config.inventory_offset(v, b) for v in universe.venues for b in universe.bases
        }
        # Open reversion positions, booked from fills.
        self._reverting: Reverting = {}
        self._slippage_bps = config.execution.slippage_bps
        self._universe = universe
        self._clock = clock
        self._max_age_ns = int(config.risk.max_opportunity_age_ms * 1e6)
        book_age_ms = config.risk.max_book_age_ms or config.feed.max_book_age_ms
        self._max_book_age_ns = int(book_age_ms * 1e6)
        self._rate = OrderRate(
            list(config.venues),
            clock,
            self._limits.max_orders_per_s,
            self._limits.order_burst,
            self._limits.max_venue_orders_per_s,
            self._limits.venue_order_burst,
        )
        self.breakers: dict[str, Breaker] = {}
        # Fail closed: nothing is approved until the actor has seen the store answer and has
        # restored what an earlier incarnation left there.
        self.store_ok = False
        self.restored = False
        self.ledger = Ledger()
        self._start_balances = {name: dict(v.balances) for name, v in config.venues.items()}
        self._start_array = np.array(
            [[v.balances.get(a, 0.0) for a in universe.assets()] for v in config.venues.values()]
        )
        self._in_flight: dict[str, Reservation] = {}
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
        self._vi = {v: i for i, v in enumerate(universe.venues)}
        self._bi = {b: i for i, b in enumerate(universe.bases)}
        self._ai = {a: i for i, a in enumerate(universe.assets())}
        self._nodes = {n: self._new_account() for n in nodes}
        self._lease_ttl_ns = int(config.risk.lease_ttl_ms * 1e6)
        self.approved = 0
        self.clipped = 0
        self.clipped_by: Counter[str] = Counter()  # clips by the limit that bound
        self.rejected: Counter[str] = Counter()
        self.legs_failed = 0
        self.trades = 0
        self.unwinds = 0
        self.dirty = False  # changed since the actor last persisted `state_record()`
        # Breakers tripped and resumes, for the journal (the keeper appends and drops them).
        self.events: deque[RiskEvent] = deque()

    @property
    def state(self) -> TradingState:
        """The most severe state any tripped breaker forces."""
        return most_severe([b.forces for b in self.breakers.values()])

    @property
    def state_reason(self) -> str:
        state = self.state
        return ", ".join(f"{n}: {b.detail}" for n, b in self.breakers.items() if b.forces == state)

    # -- decisions ----------------------------------------------------------------------------

    def evaluate(self, opp: Opportunity) -> tuple[Approval | None, DecisionRecord]:
        """Decide on one opportunity; the decision record is returned for the journal."""
        decision = decide(
            opp,
            self,
            limits=self._limits,
            universe=self._universe,
            markets=self._markets,
            now_mono_ns=self._clock.monotonic_ns(),
            max_age_ns=self._max_age_ns,
            max_book_age_ns=self._max_book_age_ns,
            slippage_bps=self._slippage_bps,
            statarb_notional=self._statarb_notional,
            skew_per_unit=self._skew,
        )
        record = decision_record(opp, self._universe, decision, self.state, self._clock.time_ns())
        if decision.size <= 0:
            self.rejected[decision.reason] += 1
            return None, record
        if decision.clip:
            self.clipped += 1
            self.clipped_by[decision.clip] += 1
        self.approved += 1
        self._reserve(opp, decision)
        # Persisted with the next save; a rejection alone changes only a counter (the
        # journal has every decision), so it does not cost a save of its own.
        self.dirty = True
        return Approval(opp, decision.size, self._clock.monotonic_ns()), record

    # -- Room: the whole book, every node's lease counted as used ---------------------------------

    def _new_account(self) -> _NodeAccount:
        return _NodeAccount(held=Budget.zeros(self._universe), heard_ns=self._clock.time_ns())

    def closed(self) -> str:
        return self._closed_for(None)

    def _closed_for(self, node: str | None) -> str:
        """Why nothing may be approved (by risk itself, or by `node`'s gate)."""
        if not self.store_ok:
            return "store_unavailable"
        if not self.restored:
            return "restoring"
        return "restoring_leases" if self._unknown_nodes(node) else ""

    def trading_state(self) -> TradingState:
        return self.state

    def busy(self, symbol: int) -> int:
        return sum(1 for f in self._in_flight.values() if f.symbol == symbol)

    def open_reversion(self, opp: Opportunity) -> float:
        buy = self._universe.venues[opp.buy_venue]
        sell = self._universe.venues[opp.sell_venue]
        return open_reversion(self._reverting, opp.symbol, buy, sell)

    def available(self, venue: str, asset: str) -> float:
        return max(0.0, self._free_inventory(venue, asset, None))

    def position_room(self, venue: str, base: str, direction: float) -> float | None:
        max_pos = self._limits.max_position.get(base)
        if max_pos is None:
            return None
        return max_pos - self._exposure(venue, base, direction)

    def flat_room(self, venue: str, base: str, direction: float) -> float:
        return -self._exposure(venue, base, direction)

    def gross_cap(self, buy: str, sell: str, base: str, size: float) -> float | None:
        """The largest size up to `size` that keeps gross exposure at most the ceiling (quote),
        or, when it is already above, that does not raise it. Buying on `buy` and selling on
        `sell` moves both venues' positions; the change is convex in the size, so the sizes
        allowed form an interval from zero, found by bisection."""
        ceiling = self._limits.max_gross_exposure_quote
        if ceiling is None:
            return None
        gross = self.gross_exposure() + self._leased_gross(None)
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

    def mark(self, base: str, price: float) -> None:
        self._marks[base] = price

    def imbalance(self, venue: str, base: str) -> float:
        return self.ledger.position(venue, base) - self._offset[(venue, base)]

    def take_orders(self, buy: str, sell: str) -> str:
        return self._rate.take(buy, sell)

    def gross_exposure(self) -> float:
        """Sum over venues and base assets of |position| x last price, in quote."""
        bases = {s.split("/")[0] for s in self._universe.symbols}
        return sum(
            abs(self._exposure(v, a, +1.0, leased=False)) * self._marks.get(a, 0.0)
            for v in self._universe.venues
            for a in bases
        )

    def _free_inventory(self, venue: str, asset: str, except_node: str | None) -> float:
        """The venue's balance of the asset, less what trades in flight reserved and what
        every node's lease (but `except_node`'s) may spend."""
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
        vi, ai = self._vi[venue], self._ai[asset]
        leased = sum(
            float(np.nan_to_num(a.held.spend[vi, ai])) for a in self._live_leases(except_node)
        )
        return start + self.ledger.position(venue, asset) - reserved - leased

    def _exposure(
        self,
        venue: str,
        asset: str,
        direction: float,
        *,
        leased: bool = True,
        except_node: str | None = None,
    ) -> float:
        """The asset's position on the venue, in `direction`, counting in-flight trades and
        (if `leased`) the room every node's lease (but `except_node`'s) may still move it."""
        pending = sum(
            f.base_reserved
            for f in self._in_flight.values()
            if self._base_of(f) == asset
            and (f.buy_venue == venue if direction > 0 else f.sell_venue == venue)
        )
        bi = self._bi.get(asset)
        if leased and bi is not None:
            vi = self._vi[venue]
            pending += sum(
                float(np.nan_to_num((a.held.long if direction > 0 else a.held.short)[vi, bi]))
                for a in self._live_leases(except_node)
            )
        return direction * self.ledger.position(venue, asset) + pending

    def _leased_gross(self, except_node: str | None) -> float:
        """Gross exposure every node's lease (but `except_node`'s) may still add, and what
        the gates counted for their trades in flight (quote)."""
        held = sum(float(np.nan_to_num(a.held.gross)) for a in self._live_leases(except_node))
        return held + sum(f.gross_reserved for f in self._in_flight.values() if f.owner)

    def _worst_gross(self, except_node: str, positions: np.ndarray | None = None) -> float:
        """The gross exposure positions would reach if every trade in flight filled in full,
        each leg adding to |position|, and every other node spent its lease (quote).
        `positions`: `_positions_array()`, if at hand."""
        u = self._universe
        held = self._positions_array() if positions is None else positions
        marks = np.array([self._marks.get(b, 0.0) for b in u.bases])
        booked = float(np.abs(held[:, [self._ai[b] for b in u.bases]]).sum(axis=0) @ marks)
        own = sum(
            2.0 * f.base_reserved * self._marks.get(self._base_of(f), 0.0)
            for f in self._in_flight.values()
            if not f.owner
        )
        return booked + own + self._leased_gross(except_node)

    def _live_leases(self, except_node: str | None) -> list[_NodeAccount]:
        now = self._clock.monotonic_ns()
        return [a for n, a in self._nodes.items() if n != except_node and a.live_until_ns > now]

    def _unknown_nodes(self, except_node: str | None = None) -> list[str]:
        """Nodes that may hold a lease this incarnation of risk has not heard of (it granted
        it before a restart): until they report, or it surely expired, nothing is granted."""
        now = self._clock.monotonic_ns()
        return [
            n
            for n, a in self._nodes.items()
            if n != except_node and not a.synced and now < a.unknown_until_ns
        ]

    def _base_of(self, f: Reservation) -> str:
        return self._universe.symbols[f.symbol].split("/")[0]

    def _quote_of(self, f: Reservation) -> str:
        return self._universe.symbols[f.symbol].split("/")[1]

    def _reserve(self, opp: Opportunity, decision: Decision) -> None:
        """Hold what the legs may spend: quote at the buy leg's limit price plus its fee."""
        buy = self._universe.venues[opp.buy_venue]
        sell = self._universe.venues[opp.sell_venue]
        symbol = self._universe.symbols[opp.symbol]
        fee = self._markets.spec(buy, symbol).taker_fee
        self._in_flight[opp.opp_id] = Reservation(
            symbol=opp.symbol,
            buy_venue=buy,
            sell_venue=sell,
            quote_reserved=decision.size * decision.buy_px * (1.0 + fee),
            base_reserved=decision.size,
            kind=opp.kind,
        )

    # -- leases -------------------------------------------------------------------------------

    def needs_journal(self, msg: NodeSync) -> bool:
        """Whether `sync` must read the journal first: a node process this risk has not heard
        from takes over from an earlier one, whose last reports may have died with it."""
        acct = self._nodes.get(msg.node)
        return acct is None or msg.incarnation != acct.incarnation

    def sync(self, msg: NodeSync, journal: list[JournalRecord] | None = None) -> Lease:
        """Book what a node reports, take its trades in flight and its remaining room as
        held, and grant it a new lease (see `risk/lease.py` for why this never lets the sum
        over nodes pass a limit). `journal` is required when `needs_journal(msg)`."""
        if not self.restored:
            # Reports stay unacknowledged (booked 0): the node sends them again.
            return self.closed_lease(msg, "restoring")
        acct = self._nodes.get(msg.node) or self._nodes.setdefault(msg.node, self._new_account())
        if msg.incarnation in acct.retired:
            # A call of a node process that has since been replaced, delivered late: what it
            # says is older than what its successor said.
            return self.closed_lease(msg, "superseded")
        if msg.incarnation != acct.incarnation:
            if journal is None:
                raise ValueError(f"{msg.node}: a new node process needs the journal read")
            self._book_from_journal(msg.node, journal, acct.heard_ns - _LATE_REPORT_NS)
            if acct.incarnation:
                acct.retired.add(acct.incarnation)
            acct.incarnation = msg.incarnation
        acct.counts[msg.incarnation] = dict(msg.counts)
        for _, report in msg.reports:
            self.on_execution(report)
        for opp_id in [k for k, f in self._in_flight.items() if f.owner == msg.node]:
            del self._in_flight[opp_id]
        for opp_id, trade in msg.in_flight.items():
            if opp_id not in self._reported:
                self._in_flight[opp_id] = trade
        acct.synced = True
        acct.heard_ns = self._clock.time_ns()
        acct.held = msg.remaining.copy()
        now = self._clock.monotonic_ns()
        # What the node holds now can be spent until its current lease ends, which is before
        # the lease granted now ends.
        acct.live_until_ns = now + self._lease_ttl_ns
        self.dirty = True
        closed = self._closed_for(msg.node)
        target = self._room_for(msg.node) if not closed else acct.held.zeroed()
        if self.state is TradingState.HALTED:
            target = target.zeroed()
        topup = acct.held.up_to(target)
        acct.held = acct.held.plus(topup)
        return Lease(
            node=msg.node,
            seq=msg.seq,
            closed=closed,
            state=self.state.value,
            ttl_ns=self._lease_ttl_ns,
            booked=msg.reports_made,
            topup=topup,
            target=target,
            rate=self._rate_share(),
            reverting=dict(self._reverting),
            positions={v: dict(a) for v, a in self.ledger.positions.items()},
        )

    def _book_from_journal(self, node: str, journal: list[JournalRecord], since_ns: int) -> None:
        """Book every outcome `node` journaled since risk last heard from it (a margin
        before, booked once): an earlier process of the node may have journaled trades and
        died before their reports reached risk, some of them approved after its last sync,
        so that risk never knew them in flight. (Trades with an intent and no outcome its
        successor reconciles and reports; those with no intent never started.)"""
        wanted = {
            r.opp_id
            for r in journal
            if isinstance(r, Execution) and r.executor == node and r.ts_ns >= since_ns
        }
        theirs = [r for r in journal if getattr(r, "opp_id", None) in wanted]
        for report in executions_from_journal(theirs):
            self.on_execution(report)

    def closed_lease(self, msg: NodeSync, why: str) -> Lease:
        """An answer that grants nothing and acknowledges nothing."""
        return Lease(
            node=msg.node,
            seq=msg.seq,
            closed=why,
            state=self.state.value,
            ttl_ns=self._lease_ttl_ns,
            booked=0,
            topup=msg.remaining.zeroed().held(),
            target=msg.remaining.zeroed(),
            rate=self._rate_share(),
            reverting={},
            positions={},
        )

    def _room_for(self, node: str) -> Budget:
        """The most `node` may hold: its share of the room left under every limit, counting
        everything else (positions, trades in flight, the other nodes' leases) as used.

        The same sums as `_free_inventory` and `_exposure`, as arrays over (venue, asset) and
        (venue, base): a run of hundreds of assets syncs many times a second."""
        u = self._universe
        share = 1.0 / max(1, len(self._nodes))
        reducing = self.state is TradingState.REDUCING
        others = [a.held.held() for a in self._live_leases(node)]
        held = self._positions_array()
        inventory = np.zeros_like(held)
        pending_long = np.zeros((len(u.venues), len(u.bases)))
        pending_short = np.zeros_like(pending_long)
        for f in self._in_flight.values():
            base, quote = u.symbols[f.symbol].split("/")
            buy, sell, bi = self._vi[f.buy_venue], self._vi[f.sell_venue], self._bi[base]
            inventory[buy, self._ai[quote]] += f.quote_reserved
            inventory[sell, self._ai[base]] += f.base_reserved
            pending_long[buy, bi] += f.base_reserved
            pending_short[sell, bi] += f.base_reserved
        leased_spend = sum((o.spend for o in others), np.zeros_like(held))
        free = self._start_array - inventory - leased_spend + held
        spend = np.maximum(0.0, np.minimum(free, (free + leased_spend) * share))
        base_cols = [self._ai[b] for b in u.bases]
        max_pos = np.array([self._limits.max_position.get(b, np.nan) for b in u.bases])
        rooms = []
        for direction, pending, leased in (
            (+1.0, pending_long, sum((o.long for o in others), np.zeros_like(pending_long))),
            (-1.0, pending_short, sum((o.short for o in others), np.zeros_like(pending_long))),
        ):
            exposure = direction * held[:, base_cols] + pending + leased
            limit = max_pos[None, :] - exposure  # NaN where the asset has no position limit
            if reducing:
                limit = np.fmin(limit, -exposure)
            room = np.maximum(0.0, limit)
            rooms.append(
                np.where(np.isnan(limit), np.nan, np.minimum(room, (room + leased) * share))
            )
        gross = np.nan
        ceiling = self._limits.max_gross_exposure_quote
        if ceiling is not None and not reducing:
            leased_gross = sum(o.gross for o in others)
            free_gross = max(0.0, ceiling - self._worst_gross(node, held))
            gross = min(free_gross, (free_gross + leased_gross) * share)
        return Budget(rooms[0], rooms[1], spend, float(gross))

    def _positions_array(self) -> np.ndarray:
        """Booked balance changes as a (venue, asset) array."""
        out = np.zeros((len(self._universe.venues), len(self._ai)))
        for venue, assets in self.ledger.positions.items():
            for asset, amount in assets.items():
                if asset in self._ai:
                    out[self._vi[venue], self._ai[asset]] = amount
        return out

    def _rate_share(self) -> RateShare:
        share = 1.0 / max(1, len(self._nodes))
        lim = self._limits
        venue = lim.max_venue_orders_per_s
        return RateShare(
            lim.max_orders_per_s * share,
            lim.order_burst * share,
            None if venue is None else venue * share,
            lim.venue_order_burst * share,
        )

    def node_counts(self) -> dict[str, Any]:
        """Decisions the nodes' gates made, summed over nodes and their incarnations."""
        approved = clipped = 0
        clipped_by: Counter[str] = Counter()
        rejected: Counter[str] = Counter()
        for acct in self._nodes.values():
            for c in acct.counts.values():
                approved += int(c.get("approved", 0))
                clipped += int(c.get("clipped", 0))
                clips = dict(c.get("clipped_by", {}))  # absent from gates before it was kept
                clipped_by.update({str(k): int(v) for k, v in clips.items()})
                rejected.update({str(k): int(v) for k, v in dict(c.get("rejected", {})).items()})
        return {
            "approved": approved,
            "clipped": clipped,
            "clipped_by": clipped_by,
            "rejected": rejected,
        }

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
            book_reversion(self._reverting, trade, matched_size(report))
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

    # -- trading state ------------------------------------------------------------------------

    def trip(self, name: str, forces: TradingState, detail: str) -> None:
        """Trip a breaker; one already tripped keeps its first reason."""
        if name not in self.breakers:
            self._set_breaker(name, forces, detail)

    def halt(self, reason: str = "operator") -> None:
        """Stop all trading by hand."""
        self._set_breaker("operator", TradingState.HALTED, reason)

    def reduce_only(self, reason: str = "operator") -> None:
        """Admit only orders that shrink exposure, by hand."""
        self._set_breaker("operator", TradingState.REDUCING, reason)

    def _set_breaker(self, name: str, forces: TradingState, detail: str) -> None:
        now = self._clock.time_ns()
        self.breakers[name] = Breaker(forces, detail, now)
        self.events.append(RiskEvent(now, "trip", name, forces.value, detail))
        self.dirty = True

    def resume(self) -> None:
        """Clear every breaker. The drawdown is measured from here on and the streaks restart;
        the day's loss is not forgiven."""
        cleared = ", ".join(self.breakers)
        self.events.append(
            RiskEvent(self._clock.time_ns(), "resume", "", TradingState.ACTIVE.value, cleared)
        )
        self.breakers.clear()
        self._peak_pnl = self.ledger.realized_pnl_quote
        self._leg_failure_streak = 0
        self._venue_rejects.clear()
        self.dirty = True

    def in_flight_ids(self) -> list[str]:
        return list(self._in_flight)

    def owner(self, opp_id: str) -> str:
        """The node whose gate approved a trade in flight ('' for risk's own)."""
        trade = self._in_flight.get(opp_id)
        return "" if trade is None else trade.owner

    def snapshot(self) -> dict[str, Any]:
        """Everything an operator reads; decisions count the nodes' gates' with risk's own."""
        nodes = self.node_counts()
        now = self._clock.monotonic_ns()
        return {
            "state": self.state.value,
            "state_reason": self.state_reason,
            "breakers": {n: dataclasses.asdict(b) for n, b in self.breakers.items()},
            "restored": self.restored,
            "store_ok": self.store_ok,
            "approved": self.approved + nodes["approved"],
            "clipped": self.clipped + nodes["clipped"],
            "clipped_by": dict(self.clipped_by + nodes["clipped_by"]),
            "rejected": dict(self.rejected + nodes["rejected"]),
            "leases": {
                n: {
                    "synced": a.synced,
                    "live_for_ms": max(0, a.live_until_ns - now) / 1e6,
                    "in_flight": sum(1 for f in self._in_flight.values() if f.owner == n),
                }
                for n, a in self._nodes.items()
            },
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
            "node_counts": {n: a.counts for n, a in self._nodes.items()},
            "counters": {
                "approved": self.approved,
                "clipped": self.clipped,
                "clipped_by": dict(self.clipped_by),
                "rejected": dict(self.rejected),
                "legs_failed": self.legs_failed,
                "trades": self.trades,
                "unwinds": self.unwinds,
            },
        }

    def restore(
        self, state: Record | None, journal: list[JournalRecord], *, restarted: bool | None = None
    ) -> None:
        """Continue from a persisted `state_record` (None: a fresh start) and the journal:
        trades whose intent was journaled but not their outcome are in flight (reserved, as
        if just approved), and every execution the state had not booked yet is replayed
        through `on_execution`, the path a live report takes. `restarted` (default: a state
        was found) says an earlier incarnation of risk ran, and may have granted leases.

        Everything is read before anything is assigned: a state or journal this code cannot
        read raises (KeyError, TypeError, ValueError) and leaves the core as it was."""
        # Anything journaled before the state's replay window was booked before it was saved.
        since = 0 if state is None else int(state["saved_at_ns"]) - _REPORTED_WINDOW_NS
        reports = executions_from_journal(journal, since_ns=since)
        # Every intent's trade, so that replaying its outcome books it by its kind; those
        # with an outcome leave the in-flight set again as it is replayed.
        pending = {
            r.opp_id: self._reserved_by(r)
            for r in journal
            if isinstance(r, Intent) and r.ts_ns >= since
        }
        node_counts = {} if state is None else _read_node_counts(state.get("node_counts", {}))
        if state is not None:
            restored = _RestoredState.read(state)
            restored.assign(self)
        # A lease the last incarnation granted may still be spent: each node is unknown until
        # it reports to this one, or until any lease granted before now has surely expired.
        restarted = state is not None if restarted is None else restarted
        unknown_until = self._clock.monotonic_ns() + self._lease_ttl_ns if restarted else 0
        for name, acct in self._nodes.items():
            acct.synced, acct.unknown_until_ns = False, unknown_until
            acct.heard_ns = self._clock.time_ns()
            acct.counts = node_counts.get(name, {}) | acct.counts
        for opp_id, trade in pending.items():
            if opp_id not in self._reported:
                self._in_flight.setdefault(opp_id, trade)
        for report in reports:
            self.on_execution(report)
        self.restored = True
        self.dirty = True

    def _reserved_by(self, intent: Intent) -> Reservation:
        """What an intent's legs hold, as `_reserve` would have held it (a trade a node's
        gate approved is the node's: its next report says whether it is still in flight)."""
        legs = {leg.side: leg for leg in intent.legs}
        buy, sell = legs["buy"], legs["sell"]
        symbol = intent.symbol
        fee = self._markets.spec(buy.venue, symbol).taker_fee
        executor = intent.executor
        return Reservation(
            symbol=self._universe.symbol_id(symbol),
            buy_venue=buy.venue,
            sell_venue=sell.venue,
            quote_reserved=buy.amount * buy.price * (1.0 + fee),
            base_reserved=buy.amount,
            kind=intent.kind,
            owner=executor if executor in self._nodes else "",
        )


def _read_node_counts(data: Any) -> dict[str, dict[str, dict[str, Any]]]:
    return {
        str(node): {str(inc): dict(c) for inc, c in dict(by_inc).items()}
        for node, by_inc in dict(data).items()
    }


@dataclass
class _RestoredState:
    """A persisted `state_record`, read and checked before any of it is assigned."""

    breakers: dict[str, Breaker]
    ledger: Ledger
    in_flight: dict[str, Reservation]
    reported: dict[str, int]
    reverting: Reverting
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
            in_flight={k: Reservation(*v) for k, v in state["in_flight"].items()},
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
                # Absent in states saved before clips were counted by limit.
                "clipped_by": Counter({str(k): int(v) for k, v in c.get("clipped_by", {}).items()}),
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
        core.approved, core.clipped, core.clipped_by = c["approved"], c["clipped"], c["clipped_by"]
        # Rejections made while restoring add to those restored: nothing was approved.
        core.rejected = c["rejected"] + core.rejected
        core.legs_failed, core.trades, core.unwinds = c["legs_failed"], c["trades"], c["unwinds"]


def executions_from_journal(
    journal: Iterable[JournalRecord], since_ns: int = 0
) -> list[ExecutionReport]:
    """The execution reports an executor sent, rebuilt from its order and execution records
    (those journaled at or after `since_ns`)."""
    journal = list(journal)
    orders: dict[str, dict[str, OrderResult]] = {}
    for r in journal:
        if isinstance(r, Order):
            order = order_from_record(r)
            if order.client_id[-1:] not in ("B", "S", "U"):
                raise ValueError(f"journal order record with client id {order.client_id!r}")
            # Keyed by client id: a record written twice (a retried write) counts once.
            orders.setdefault(r.opp_id, {})[order.client_id] = order
    reports = []
    for r in journal:
        if not isinstance(r, Execution) or r.ts_ns < since_ns:
            continue
        # Legs first (client ids end B, S), then a repair (U), as the executor reports them.
        found = orders.get(r.opp_id, {}).values()
        fills = sorted(found, key=lambda o: "BSU".index(o.client_id[-1]))
        reports.append(
            ExecutionReport(
                r.opp_id,
                r.symbol,
                tuple(fills),
                r.legs_failed,
                r.unwound,
                0,
                legs_unknown=r.legs_unknown,
            )
        )
    return reports

"""ExecutorCore: turn an approval into two IOC orders placed at once, and repair what breaks.

The intent is journaled and flushed before the first leg is sent; if the store cannot promise
that, nothing is sent. Legs are IOC limits at the detected worst prices (widened by
`slippage_bps`), with client order ids derived from the opportunity id, so a resend can never
double an order. A leg whose acknowledgement does not arrive in time is looked up by client id
before anything else is decided. If the legs fill unequally, the difference is repaired by the
configured policy: `reverse` trades the excess back on the venue that over-filled, `proceed`
completes the short leg on its own venue, `cancel` leaves the residual (journaled) to risk.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from hft_ray.clock import Clock
from hft_ray.config import HftConfig
from hft_ray.journal import (
    Execution,
    Fill,
    Intent,
    JournalRecord,
    Leg,
    Order,
    Unwind,
    UnwindAction,
    encode,
    readable,
)
from hft_ray.markets import Markets, leg_limit_prices
from hft_ray.store.base import STORE_UNAVAILABLE, Store, StoreUnavailable
from hft_ray.types import (
    Approval,
    ExecutionReport,
    OrderResult,
    Side,
    Trace,
    Universe,
    client_order_id,
)
from hft_ray.venues.base import ORDER_NOT_FOUND, MarketSpec, OrderVenue

_LOOKUP_ATTEMPTS = 3
_log = logging.getLogger(__name__)


@dataclass
class _Trail:
    """What one execution learned about its journal after its legs left."""

    journal_failed: bool = False


class ExecutorCore:
    def __init__(
        self,
        config: HftConfig,
        universe: Universe,
        markets: Markets,
        venues: Mapping[str, OrderVenue],
        store: Store,
        clock: Clock,
        name: str = "executor0",
    ) -> None:
        self._name = name  # marks this executor's intents, to reconcile them after a restart
        # Opportunities started here, found journaled by an earlier incarnation, or refused
        # after risk wrote them off: an approval is traded at most once, and never after.
        self._started: set[str] = set()
        self._refused: set[str] = set()
        self._markets = markets
        self._exec = config.execution
        self._universe = universe
        self._venues = venues
        self._store = store
        self._clock = clock
        self._timeout_s = config.execution.order_timeout_ms / 1000.0
        self.aborted = 0  # approvals not sent: the store could not take their intent
        self._unwind_timeout_s = config.execution.unwind_timeout_ms / 1000.0

    async def execute(self, approval: Approval, received_mono_ns: int = 0) -> ExecutionReport:
        """Journal the intent, place both legs at once, repair what broke, report.
        `received_mono_ns`: when the approval reached this executor from another process (0
        when it was approved in this one)."""
        opp = approval.opp
        symbol = self._universe.symbols[opp.symbol]
        buy = self._universe.venues[opp.buy_venue]
        sell = self._universe.venues[opp.sell_venue]
        buy_spec = self._markets.spec(buy, symbol)
        sell_spec = self._markets.spec(sell, symbol)
        buy_px, sell_px = leg_limit_prices(
            buy_spec, sell_spec, opp.buy_worst, opp.sell_worst, self._exec.slippage_bps
        )
        size = approval.size
        legs = (
            (buy, client_order_id(opp.opp_id, "B"), "buy", buy_px),
            (sell, client_order_id(opp.opp_id, "S"), "sell", sell_px),
        )
        await self._journal(
            None,  # no trail yet: if the intent cannot be journaled, nothing is sent
            Intent(
                ts_ns=self._clock.time_ns(),
                opp_id=opp.opp_id,
                kind=opp.kind,
                symbol=symbol,
                size=size,
                edge_bps=opp.edge_bps,
                executor=self._name,
                expected_profit_quote=opp.profit_quote * size / opp.size,
                legs=tuple(Leg(v, c, s, size, p) for v, c, s, p in legs),  # type: ignore[arg-type]
            ),
            durable=True,
        )
        # From here on orders are live: a journal failure must not lose what the venues did.
        trail = _Trail()
        intent_at = self._clock.monotonic_ns()
        buy_r, sell_r = await asyncio.gather(
            *(self._place(trail, v, c, symbol, s, size, p, opp.opp_id) for v, c, s, p in legs)  # type: ignore[arg-type]
        )
        trace = Trace(
            recv=opp.tick_mono_ns,
            batch_sent=opp.batch_sent_mono_ns,
            detector_in=opp.detector_in_mono_ns,
            detected=opp.detect_mono_ns,
            risk_in=approval.risk_in_mono_ns,
            approved=approval.approve_mono_ns,
            executor_in=received_mono_ns,
            intent=intent_at,
            sent=max(buy_r.sent_mono_ns, sell_r.sent_mono_ns),
            acked=self._clock.monotonic_ns(),
        )
        report = await self._finish(
            trail, opp.opp_id, symbol, buy_r, sell_r, None, trace.sent - trace.recv
        )
        return report._replace(trace=trace)

    async def _finish(
        self,
        trail: _Trail,
        opp_id: str,
        symbol: str,
        buy_r: OrderResult,
        sell_r: OrderResult,
        repaired: OrderResult | None,
        tick_to_trade_ns: int,
    ) -> ExecutionReport:
        """Repair unequal legs (unless a repair was already placed), journal the outcome."""
        buy_spec = self._markets.spec(buy_r.venue, symbol)
        sell_spec = self._markets.spec(sell_r.venue, symbol)
        fills = [buy_r, sell_r]
        legs_failed = sum(r.status != "filled" for r in fills)
        legs_unknown = sum(r.status == "unknown" for r in fills)
        excess = buy_r.filled - sell_r.filled
        repair = repaired
        # An unknown leg may yet fill: repairing the other one could double the exposure.
        if repair is None and abs(excess) > 1e-12 and not legs_unknown:
            repair = await self._repair(
                trail, opp_id, symbol, buy_r, sell_r, excess, buy_spec, sell_spec
            )
        if repair is not None:
            fills.append(repair)
        unwound = repair is not None and repair.filled > 0
        residual = sum(r.filled if r.side == "buy" else -r.filled for r in fills)
        await self._journal(
            trail,
            Execution(
                ts_ns=self._clock.time_ns(),
                opp_id=opp_id,
                symbol=symbol,
                executor=self._name,
                legs_failed=legs_failed,
                legs_unknown=legs_unknown,
                unwound=unwound,
                residual_base=residual,
            ),
            durable=True,
        )
        return ExecutionReport(
            opp_id,
            symbol,
            tuple(fills),
            legs_failed,
            unwound,
            tick_to_trade_ns,
            legs_unknown=legs_unknown,
            journal_failed=trail.journal_failed,
        )

    async def run(self, approval: Approval, received_mono_ns: int = 0) -> ExecutionReport | None:
        """`execute` an approval at most once, whatever goes wrong: None if it was released
        or delivered before; a store that cannot take the intent sends nothing (an empty
        report, counted in `aborted`, and an abort journaled: `_journal_abort`); any other
        fault after the intent is settled from the journal and the venues, as after a
        crash."""
        opp_id = approval.opp.opp_id
        if not self.admit(opp_id):
            return None
        try:
            return await self.execute(approval, received_mono_ns)
        except StoreUnavailable:
            self.aborted += 1
            await self._journal_abort(approval)
            return ExecutionReport(opp_id, "", (), 0, False, 0)
        except Exception:
            _log.exception("execution of %s failed; reconciling it", opp_id)
            return await self.reconcile_one(opp_id)

    async def _journal_abort(self, approval: Approval) -> None:
        """The intent's durable write failed and nothing was sent. The store may still write
        the intent (a queued batch, an answer lost after Redis took it), so its outcome is
        journaled behind it: an execution that sent no leg, which every reader of the journal
        books as a trade released (risk, the report, a reconciling executor)."""
        opp = approval.opp
        await self._journal(
            _Trail(),  # if this fails too, a restart finds no order and settles the intent
            Execution(
                ts_ns=self._clock.time_ns(),
                opp_id=opp.opp_id,
                symbol=self._universe.symbols[opp.symbol],
                executor=self._name,
                legs_failed=0,
                legs_unknown=0,
                unwound=False,
                residual_base=0.0,
                reason=STORE_UNAVAILABLE,
            ),
        )

    async def read_journal(self) -> list[JournalRecord]:
        """The whole journal, waiting out a store that does not answer (nothing may be
        decided about a trade without it); records this version cannot read are skipped."""
        while True:
            try:
                return readable(await self._store.read_journal(), self._name)
            except StoreUnavailable:
                await asyncio.sleep(0.2)

    async def reconcile_one(self, opp_id: str) -> ExecutionReport:
        """Settle one trade from the journal and the venues (`reconcile`)."""
        mine = [r for r in await self.read_journal() if getattr(r, "opp_id", None) == opp_id]
        reports = await self.reconcile(mine)
        return reports[0] if reports else ExecutionReport(opp_id, "", (), 0, False, 0)

    def admit(self, opp_id: str) -> bool:
        """Whether an approval may be traded now: not refused, not seen before."""
        if opp_id in self._refused or opp_id in self._started:
            return False
        self._started.add(opp_id)
        return True

    def settle(self, opp_id: str) -> bool:
        """Risk lost track of an approval sent here: True if it never started here and now
        never will (risk may release it), False if it did (its outcome is or will be
        reported)."""
        if opp_id in self._started:
            return False
        self._refused.add(opp_id)
        return True

    async def reconcile(self, journal: list[JournalRecord]) -> list[ExecutionReport]:
        """Finish every trade this executor journaled an intent for but no outcome: ask the
        venues what became of each order by its client id, journal what they say, repair
        unequal legs, and report. Run after a restart, before any new work."""
        # Any intent journaled, by whichever executor: never to be traded again here.
        self._started.update(r.opp_id for r in journal if isinstance(r, Intent))
        done = {r.opp_id for r in journal if isinstance(r, Execution)}
        known = {r.client_id: r for r in journal if isinstance(r, Order)}
        unwinds = {r.opp_id: r for r in journal if isinstance(r, Unwind) and r.placed()}
        reports = []
        for intent in journal:
            if not isinstance(intent, Intent) or intent.executor != self._name:
                continue
            if intent.opp_id in done:
                continue
            trail = _Trail()
            opp_id, symbol = intent.opp_id, intent.symbol
            orders: list[tuple[str, str, Side, float]] = [
                (leg.venue, leg.client_id, leg.side, leg.amount) for leg in intent.legs
            ]
            repair = unwinds[opp_id].placed() if opp_id in unwinds else None
            if repair is not None:
                orders.append(repair)
            looked_up = await asyncio.gather(
                *(
                    self._look_up(self._venues[v], cid, symbol, side, amount, after_crash=True)
                    for v, cid, side, amount in orders
                    if cid not in known
                )
            )
            found = iter(looked_up)
            results = []
            for _, cid, _, _ in orders:
                if cid in known:
                    results.append(order_from_record(known[cid]))
                    continue
                result = next(found)
                await self._journal_order(trail, opp_id, result)
                results.append(result)
            repaired = results[2] if len(results) > 2 else None
            reports.append(
                await self._finish(trail, opp_id, symbol, results[0], results[1], repaired, 0)
            )
        return reports

    async def _place(
        self,
        trail: _Trail,
        venue: str,
        cid: str,
        symbol: str,
        side: Side,
        amount: float,
        price: float,
        opp_id: str,
        timeout_s: float | None = None,
    ) -> OrderResult:
        client = self._venues[venue]
        # When the venue adapter cannot say when its request left, the call is the send.
        called = self._clock.monotonic_ns()
        try:
            result = await asyncio.wait_for(
                client.create_order(cid, symbol, side, amount, price), timeout_s or self._timeout_s
            )
        except Exception:
            result = await self._look_up(client, cid, symbol, side, amount)
        else:
            if result.status == "unknown":  # the venue never said: the order may be live
                result = await self._look_up(client, cid, symbol, side, amount)
        if not result.sent_mono_ns:
            result = result._replace(sent_mono_ns=called)
        await self._journal_order(trail, opp_id, result)
        return result

    async def _look_up(
        self,
        client: OrderVenue,
        cid: str,
        symbol: str,
        side: Side,
        amount: float,
        after_crash: bool = False,
    ) -> OrderResult:
        """After a lost acknowledgement: ask the venue what became of the order.

        `after_crash`: the order was journaled before a crash, long enough ago that the venue
        would know it if it had ever arrived; a venue that answers it has no such order means
        it was never placed, which is a leg that did not fill, not an unknown one."""
        for attempt in range(_LOOKUP_ATTEMPTS):
            try:
                found = await asyncio.wait_for(client.fetch_order(cid, symbol), self._timeout_s)
            except Exception:
                found = None
            if found is not None and found.status != "unknown":
                return found._replace(reason=found.reason or "ack_timeout_reconciled")
            if after_crash and found is not None and found.reason == ORDER_NOT_FOUND:
                return found._replace(
                    side=side, amount=amount, status="rejected", reason="never_placed"
                )
            await asyncio.sleep(self._timeout_s / 4 * (attempt + 1))
        return OrderResult(
            cid,
            client.name,
            symbol,
            side,
            "unknown",
            amount,
            0.0,
            0.0,
            0.0,
            "ack_timeout_unknown",
            self._clock.time_ns(),
        )

    async def _repair(
        self,
        trail: _Trail,
        opp_id: str,
        symbol: str,
        buy_r: OrderResult,
        sell_r: OrderResult,
        excess: float,
        buy_spec: MarketSpec,
        sell_spec: MarketSpec,
    ) -> OrderResult | None:
        policy = self._exec.unwind_policy
        bound = self._exec.unwind_slippage_bps * 1e-4
        if policy == "cancel":
            await self._journal(trail, self._unwind(opp_id, excess, "none", "policy_cancel"))
            return None
        # excess > 0: we hold base bought on the buy venue; excess < 0: we sold base not bought.
        if policy == "reverse":
            venue, spec, ref = (
                (buy_r.venue, buy_spec, buy_r.avg_price)
                if excess > 0
                else (sell_r.venue, sell_spec, sell_r.avg_price)
            )
        else:
            venue, spec, ref = (
                (sell_r.venue, sell_spec, sell_r.avg_price or buy_r.avg_price)
                if excess > 0
                else (buy_r.venue, buy_spec, buy_r.avg_price or sell_r.avg_price)
            )
        side: Side = "sell" if excess > 0 else "buy"
        amount = spec.floor_amount(abs(excess))
        if amount <= 0 or amount < spec.min_amount:
            await self._journal(trail, self._unwind(opp_id, excess, "none", "below_min_size"))
            return None
        # The loss budget bounds what the repair may lose against the price the excess was
        # traded at, its own fee included: it tightens the limit price, never loosens it.
        cost = buy_r.avg_price if excess > 0 else sell_r.avg_price
        per_unit = self._exec.unwind_max_loss_quote / amount
        fee = spec.taker_fee
        if side == "sell":
            price = max(
                spec.floor_price(ref * (1 - bound)), spec.ceil_price((cost - per_unit) / (1 - fee))
            )
            worst_loss = amount * (cost - price * (1 - fee))
        else:
            price = min(
                spec.ceil_price(ref * (1 + bound)), spec.floor_price((cost + per_unit) / (1 + fee))
            )
            worst_loss = amount * (price * (1 + fee) - cost)
        if amount * price < spec.min_notional:
            await self._journal(trail, self._unwind(opp_id, excess, "none", "below_min_size"))
            return None
        cid = client_order_id(opp_id, "U")
        await self._journal(
            trail,
            dataclasses.replace(
                self._unwind(opp_id, excess, side, None),
                worst_loss_quote=worst_loss,
                venue=venue,
                client_id=cid,
                amount=amount,
                price=price,
            ),
            durable=True,
        )
        return await self._place(
            trail, venue, cid, symbol, side, amount, price, opp_id, self._unwind_timeout_s
        )

    def _unwind(
        self, opp_id: str, excess: float, action: UnwindAction, reason: str | None
    ) -> Unwind:
        return Unwind(
            ts_ns=self._clock.time_ns(),
            opp_id=opp_id,
            policy=self._exec.unwind_policy,
            excess=excess,
            action=action,
            reason=reason,
        )

    async def _journal_order(self, trail: _Trail, opp_id: str, r: OrderResult) -> None:
        await self._journal(
            trail,
            Order(
                ts_ns=self._clock.time_ns(),
                opp_id=opp_id,
                client_id=r.client_id,
                venue=r.venue,
                symbol=r.symbol,
                side=r.side,
                ts_exchange_ns=r.ts_ns,
                status=r.status,
                amount=r.amount,
                filled=r.filled,
                avg_price=r.avg_price,
                fee_quote=r.fee_quote,
                fee_base=r.fee_base,
                reason=r.reason,
            ),
        )
        if r.filled > 0:
            await self._journal(
                trail,
                Fill(
                    ts_ns=self._clock.time_ns(),
                    opp_id=opp_id,
                    client_id=r.client_id,
                    venue=r.venue,
                    symbol=r.symbol,
                    side=r.side,
                    ts_exchange_ns=r.ts_ns,
                    filled=r.filled,
                    price=r.avg_price,
                    fee_quote=r.fee_quote,
                    fee_base=r.fee_base,
                ),
                durable=True,
            )

    async def _journal(
        self, trail: _Trail | None, record: JournalRecord, durable: bool = False
    ) -> None:
        """Journal a record. Before the legs leave, a failure propagates and nothing is sent;
        after, it is remembered and reported (risk halts), and execution carries on."""
        try:
            await self._store.append(encode(record))
            if durable:
                await self._store.flush()
        except (StoreUnavailable, OSError):
            if trail is None:
                raise
            trail.journal_failed = True


def order_from_record(r: Order) -> OrderResult:
    return OrderResult(
        r.client_id,
        r.venue,
        r.symbol,
        r.side,
        r.status,
        r.amount,
        r.filled,
        r.avg_price,
        r.fee_quote,
        r.reason,
        r.ts_exchange_ns,
        r.fee_base,
    )

"""Leases: a trading node's gate decides within what the risk actor grants it, and no sequence
of leases, fills, expiries and restarts lets the nodes together pass a global limit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from hft_ray.clock import TestClock
from hft_ray.config import HftConfig, parse_config
from hft_ray.journal import Execution, Intent, JournalRecord, Leg, Order
from hft_ray.markets import Markets, simulated_markets
from hft_ray.risk.core import RiskCore, TradingState
from hft_ray.risk.lease import RiskGate
from hft_ray.types import Approval, ExecutionReport, Opportunity, OrderResult, Universe
from tests.conftest import default_config_dict, merge

MS = 1_000_000
BTC, ETH = 0, 1
BINANCE, OKX = 0, 1

LIMITS: dict[str, Any] = {
    "max_position": {"BTC": 0.1, "ETH": 2.0},
    "max_gross_exposure_quote": 30_000,
    "max_in_flight_per_symbol": 2,
    "max_order_notional": 10_000,
    "max_orders_per_s": 40,
    "order_burst": 20,
    "lease_ttl_ms": 500,
    "lease_sync_ms": 50,
    "max_daily_loss_quote": None,
    "max_drawdown_quote": None,
    "max_consecutive_leg_failures": 10_000,
    "max_reject_rate": 1.0,
    "max_net_position": {},
    "min_edge_bps": 0,
}
PRICES = {"BTC/USDT": 90_000.0, "ETH/USDT": 3_000.0}


def lease_config(**risk: Any) -> HftConfig:
    data = merge(
        default_config_dict(),
        {
            "symbols": ["BTC/USDT", "ETH/USDT"],
            "venues": {
                "binance": {"balances": {"USDT": 20_000, "BTC": 0.2, "ETH": 3}},
                "okx": {"balances": {"USDT": 20_000, "BTC": 0.2, "ETH": 3}},
            },
            "risk": {**LIMITS, **risk},
        },
    )
    del data["venues"]["gateio"]
    return parse_config(data)


def opportunity(
    clock: TestClock, opp_id: str, symbol: int, buy: int, size: float, edge_bps: float = 20.0
) -> Opportunity:
    price = PRICES[("BTC/USDT", "ETH/USDT")[symbol]]
    now = clock.monotonic_ns()
    return Opportunity(
        opp_id, symbol, buy, 1 - buy, size, price, price, price, price, 0.0, edge_bps, 0, 0,
        now, now,
    )  # fmt: skip


def report(
    approval: Approval, universe: Universe, buy_fill: float, sell_fill: float
) -> ExecutionReport:
    opp = approval.opp
    symbol = universe.symbols[opp.symbol]
    price = PRICES[symbol]

    def leg(venue: int, side: str, filled: float) -> OrderResult:
        status = "filled" if filled >= approval.size else "partial" if filled else "expired"
        return OrderResult(
            f"{opp.opp_id}{'B' if side == 'buy' else 'S'}", universe.venues[venue], symbol,
            side, status, approval.size, filled, price, filled * price * 0.001, "", 0,  # type: ignore[arg-type]
        )  # fmt: skip

    fills = (leg(opp.buy_venue, "buy", buy_fill), leg(opp.sell_venue, "sell", sell_fill))
    failed = sum(f.status != "filled" for f in fills)
    return ExecutionReport(opp.opp_id, symbol, fills, failed, False, 0)


class Node:
    """A trading node's gate, talking to risk as the node actor does (one sync at a time)."""

    def __init__(
        self, config: HftConfig, universe: Universe, markets: Markets, clock: TestClock, name: str
    ) -> None:
        self.gate = RiskGate(config, universe, markets, clock, name)

    def sync(self, risk: RiskCore) -> None:
        msg, sent = self.gate.sync_message()
        self.gate.apply(risk.sync(msg, []), sent)


@pytest.fixture
def setup() -> tuple[RiskCore, Node, TestClock, Universe]:
    config = lease_config()
    clock = TestClock()
    universe = Universe(tuple(config.venues), tuple(config.symbols))
    markets = simulated_markets(config)
    risk = RiskCore(config, universe, markets, clock, nodes=("node0",))
    risk.store_ok = True
    risk.restore(None, [])
    return risk, Node(config, universe, markets, clock, "node0"), clock, universe


def test_a_gate_approves_nothing_before_its_first_lease(setup) -> None:  # type: ignore[no-untyped-def]
    _, node, clock, _ = setup
    approval, record = node.gate.evaluate(opportunity(clock, "a", BTC, BINANCE, 0.01))
    assert approval is None and record.reason == "no_lease" and record.TYPE == "decision"


def test_a_lease_lets_the_gate_spend_up_to_the_position_limit_and_no_further(setup) -> None:  # type: ignore[no-untyped-def]
    risk, node, clock, universe = setup
    node.sync(risk)
    first, _ = node.gate.evaluate(opportunity(clock, "a", BTC, BINANCE, 0.03))
    assert first is not None and first.size == pytest.approx(0.03)
    second, record = node.gate.evaluate(opportunity(clock, "b", ETH, BINANCE, 0.5))
    assert second is not None  # another symbol: its own in-flight slot
    node.gate.on_report(report(first, universe, 0.03, 0.03))
    clock.advance(30 * MS)
    third, record = node.gate.evaluate(opportunity(clock, "c", BTC, BINANCE, 0.09))
    # 0.03 of BTC's 0.1 on binance is spent until risk books the fill and tops the lease up.
    assert third is not None and third.size == pytest.approx(0.07)
    assert record.verdict == "clipped" and record.reason == "max_position"
    node.gate.on_report(report(third, universe, 0.07, 0.07))
    node.sync(risk)
    assert risk.ledger.position("binance", "BTC") == pytest.approx(0.1)
    fourth, record = node.gate.evaluate(opportunity(clock, "d", BTC, BINANCE, 0.01))
    assert fourth is None and record.reason == "max_position"
    # Selling on binance brings the position back: the room opens again after the next sync.
    back, _ = node.gate.evaluate(opportunity(clock, "e", BTC, OKX, 0.05))
    assert back is not None
    node.gate.on_report(report(back, universe, 0.05, 0.05))
    node.sync(risk)
    again, _ = node.gate.evaluate(opportunity(clock, "f", BTC, BINANCE, 0.05))
    assert again is not None and again.size == pytest.approx(0.05)
    assert risk.snapshot()["approved"] == 4  # the gate's decisions, as of its last sync
    node.sync(risk)
    assert risk.snapshot()["approved"] == 5


def test_a_lease_that_is_not_renewed_closes_the_gate(setup) -> None:  # type: ignore[no-untyped-def]
    risk, node, clock, _ = setup
    node.sync(risk)
    clock.advance(499 * MS)
    assert node.gate.evaluate(opportunity(clock, "a", BTC, BINANCE, 0.01))[0] is not None
    clock.advance(2 * MS)
    approval, record = node.gate.evaluate(opportunity(clock, "b", ETH, BINANCE, 0.1))
    assert approval is None and record.reason == "lease_expired"
    msg, _ = node.gate.sync_message()
    assert not msg.remaining.spend.any()  # expired room is given back
    node.sync(risk)
    assert node.gate.evaluate(opportunity(clock, "c", ETH, BINANCE, 0.1))[0] is not None


def test_a_halt_closes_the_gate_at_once_and_every_later_lease(setup) -> None:  # type: ignore[no-untyped-def]
    risk, node, clock, _ = setup
    node.sync(risk)
    risk.halt("test")
    node.gate.revoke("halted")
    approval, record = node.gate.evaluate(opportunity(clock, "a", BTC, BINANCE, 0.01))
    assert approval is None and record.reason == "halted"
    node.sync(risk)
    approval, record = node.gate.evaluate(opportunity(clock, "b", BTC, BINANCE, 0.01))
    assert approval is None and record.reason == "state_halted"
    risk.resume()
    node.sync(risk)
    assert node.gate.evaluate(opportunity(clock, "c", BTC, BINANCE, 0.01))[0] is not None


def test_an_unknown_leg_closes_the_gate_before_risk_hears_of_it(setup) -> None:  # type: ignore[no-untyped-def]
    risk, node, clock, universe = setup
    node.sync(risk)
    approval, _ = node.gate.evaluate(opportunity(clock, "a", BTC, BINANCE, 0.01))
    assert approval is not None
    node.gate.on_report(report(approval, universe, 0.01, 0.0)._replace(legs_unknown=1))
    refused, record = node.gate.evaluate(opportunity(clock, "b", ETH, BINANCE, 0.1))
    assert refused is None and record.reason == "leg_unknown_or_journal_failed"
    node.sync(risk)  # risk books it and halts
    assert risk.state is TradingState.HALTED
    assert node.gate.evaluate(opportunity(clock, "c", ETH, BINANCE, 0.1))[1].reason == (
        "state_halted"
    )


def test_two_nodes_share_the_room_and_a_restarted_risk_waits_for_both(
    setup,  # type: ignore[no-untyped-def]
) -> None:
    _, _, clock, universe = setup
    config = lease_config()
    markets = simulated_markets(config)
    risk = RiskCore(config, universe, markets, clock, nodes=("node0", "node1"))
    risk.store_ok = True
    risk.restore(None, [])
    a, b = (Node(config, universe, markets, clock, n) for n in ("node0", "node1"))
    a.sync(risk)
    b.sync(risk)
    big_a, _ = a.gate.evaluate(opportunity(clock, "a", BTC, BINANCE, 0.1))
    big_b, _ = b.gate.evaluate(opportunity(clock, "b", BTC, BINANCE, 0.1))
    assert big_a is not None and big_b is not None
    assert big_a.size + big_b.size <= 0.1 + 1e-12  # each got its share of binance's BTC room
    saved = risk.state_record()
    restarted = RiskCore(config, universe, markets, clock, nodes=("node0", "node1"))
    restarted.store_ok = True
    restarted.restore(saved, [])
    a.sync(restarted)
    refused, record = a.gate.evaluate(opportunity(clock, "c", ETH, BINANCE, 0.1))
    assert refused is None and record.reason == "restoring_leases"  # node1 may still spend
    b.sync(restarted)
    a.sync(restarted)
    assert a.gate.evaluate(opportunity(clock, "d", ETH, BINANCE, 0.1))[0] is not None


# -- the property: the nodes together never pass a limit ---------------------------------------


@dataclass
class Trade:
    node: str
    approval: Approval
    filled: tuple[float, float] | None = None  # what the venues did, once they did it
    gate: RiskGate | None = None  # the gate that reports it (the node's current one)


@dataclass
class World:
    """The venues' truth (positions from what really filled), every order sent, and the
    journal the nodes write (intents when approved, orders and outcomes when reported)."""

    positions: dict[tuple[str, str], float] = field(default_factory=dict)
    orders: list[int] = field(default_factory=list)  # monotonic ns of every order sent
    journal: list[JournalRecord] = field(default_factory=list)


def intent_record(node: str, approval: Approval, universe: Universe, ts_ns: int) -> Intent:
    opp = approval.opp
    price = PRICES[universe.symbols[opp.symbol]] * 1.0005
    legs = tuple(
        Leg(universe.venues[v], f"{opp.opp_id}{c}", side, approval.size, price)
        for v, c, side in ((opp.buy_venue, "B", "buy"), (opp.sell_venue, "S", "sell"))
    )
    return Intent(
        ts_ns=ts_ns, opp_id=opp.opp_id, kind=opp.kind, symbol=universe.symbols[opp.symbol],
        size=approval.size, edge_bps=opp.edge_bps, expected_profit_quote=0.0, executor=node,
        legs=legs,
    )  # fmt: skip


def outcome_records(r: ExecutionReport, node: str, ts_ns: int) -> list[JournalRecord]:
    orders: list[JournalRecord] = [
        Order(ts_ns=ts_ns, opp_id=r.opp_id, client_id=o.client_id, venue=o.venue,
              symbol=o.symbol, side=o.side, status=o.status, amount=o.amount, filled=o.filled,
              avg_price=o.avg_price, fee_quote=o.fee_quote, fee_base=0.0, reason=o.reason,
              ts_exchange_ns=0)
        for o in r.fills
    ]  # fmt: skip
    execution = Execution(
        ts_ns=ts_ns, opp_id=r.opp_id, symbol=r.symbol, executor=node,
        legs_failed=r.legs_failed, legs_unknown=0, unwound=False, residual_base=0.0,
    )  # fmt: skip
    return [*orders, execution]


class LeaseMachine(RuleBasedStateMachine):
    @initialize(n_nodes=st.integers(1, 3), sharded=st.booleans())
    def start(self, n_nodes: int, sharded: bool) -> None:
        # Tight limits, so that they bind often; unsharded, every node trades every symbol,
        # so that they compete for the same room (the hard limits must hold regardless).
        self.config = lease_config(max_gross_exposure_quote=15_000)
        self.config = self.config.model_copy(
            update={
                "venues": {
                    v: c.model_copy(update={"balances": {"USDT": 8_000, "BTC": 0.15, "ETH": 2.5}})
                    for v, c in self.config.venues.items()
                }
            }
        )
        self.sharded = sharded
        self.clock = TestClock()
        self.universe = Universe(tuple(self.config.venues), tuple(self.config.symbols))
        self.markets = simulated_markets(self.config)
        self.names = tuple(f"node{i}" for i in range(n_nodes))
        self.risk = self._new_risk(None)
        self.gates = {n: self._gate(n) for n in self.names}
        self.outstanding: dict[str, tuple[Any, int, RiskGate]] = {}
        self.pending: list[Trade] = []
        self.world = World()
        self.saved: dict[str, Any] | None = None
        self.count = 0
        self.restarts = 0
        for i in range(n_nodes):
            self.node_syncs(i)  # as every node does when it starts

    def _new_risk(self, saved: dict[str, Any] | None, restarted: bool = False) -> RiskCore:
        risk = RiskCore(self.config, self.universe, self.markets, self.clock, nodes=self.names)
        risk.store_ok = True
        journal = list(self.world.journal) if hasattr(self, "world") else []
        risk.restore(saved, journal, restarted=restarted)
        return risk

    def _gate(self, name: str) -> RiskGate:
        return RiskGate(self.config, self.universe, self.markets, self.clock, name)

    def _reported(self, trade: Trade, gate: RiskGate) -> None:
        assert trade.filled is not None
        r = report(trade.approval, self.universe, *trade.filled)
        self.world.journal += outcome_records(r, trade.node, self.clock.time_ns())
        gate.on_report(r)

    # -- the nodes ------------------------------------------------------------------------

    @rule(
        node=st.integers(0, 2),
        found=st.lists(
            st.tuples(
                st.sampled_from([BTC, ETH]), st.sampled_from([BINANCE, OKX]), st.integers(1, 60)
            ),
            min_size=1,
            max_size=4,
        ),
    )
    def opportunities(self, node: int, found: list[tuple[int, int, int]]) -> None:
        for symbol, buy, lots in found:
            self.opportunity(node, symbol, buy, lots)

    def opportunity(self, node: int, symbol: int, buy: int, lots: int) -> None:
        name = self.names[node % len(self.names)]
        if self.sharded and symbol % len(self.names) != node % len(self.names):
            return  # a node trades only its own symbols
        size = lots * (0.005 if symbol == BTC else 0.1)
        self.count += 1
        opp = opportunity(self.clock, f"o{self.count}", symbol, buy, size)
        approval, record = self.gates[name].evaluate(opp)
        if approval is not None:
            assert record.verdict in ("approved", "clipped")
            self.pending.append(Trade(name, approval, gate=self.gates[name]))
            self.world.orders += [self.clock.monotonic_ns()] * 2
            self.world.journal.append(
                intent_record(name, approval, self.universe, self.clock.time_ns())
            )

    @precondition(lambda self: any(t.filled is None for t in self.pending))
    @rule(which=st.integers(0, 10**6), buy=st.floats(0, 1), sell=st.floats(0, 1))
    def venues_fill(self, which: int, buy: float, sell: float) -> None:
        open_trades = [t for t in self.pending if t.filled is None]
        trade = open_trades[which % len(open_trades)]
        size = trade.approval.size
        trade.filled = (round(size * buy, 6), round(size * sell, 6))
        opp = trade.approval.opp
        base, quote = self.universe.symbols[opp.symbol].split("/")
        price = PRICES[self.universe.symbols[opp.symbol]]
        bv, sv = self.universe.venues[opp.buy_venue], self.universe.venues[opp.sell_venue]
        p = self.world.positions
        p[bv, base] = p.get((bv, base), 0.0) + trade.filled[0]
        p[bv, quote] = p.get((bv, quote), 0.0) - trade.filled[0] * price * 1.001
        p[sv, base] = p.get((sv, base), 0.0) - trade.filled[1]
        p[sv, quote] = p.get((sv, quote), 0.0) + trade.filled[1] * price * 0.999

    @precondition(lambda self: any(t.filled is not None for t in self.pending))
    @rule(which=st.integers(0, 10**6))
    def node_hears_the_outcome(self, which: int) -> None:
        done = [t for t in self.pending if t.filled is not None]
        trade = done[which % len(done)]
        self.pending.remove(trade)
        assert trade.gate is not None
        self._reported(trade, trade.gate)

    @rule(node=st.integers(0, 2))
    def node_syncs(self, node: int) -> None:
        """A whole round trip, as most are."""
        self.node_sends_sync(node)
        self.risk_answers(node, True)

    @rule(node=st.integers(0, 2))
    def node_sends_sync(self, node: int) -> None:
        name = self.names[node % len(self.names)]
        if name in self.outstanding:
            return  # at most one sync in flight per node
        msg, sent = self.gates[name].sync_message()
        self.outstanding[name] = (msg, sent, self.gates[name])

    @rule(node=st.integers(0, 2), delivered=st.booleans())
    def risk_answers(self, node: int, delivered: bool) -> None:
        """Risk handles the sync; its answer reaches the node, or the call fails."""
        name = self.names[node % len(self.names)]
        if name not in self.outstanding:
            return
        msg, sent, gate = self.outstanding.pop(name)
        lease = self.risk.sync(msg, self.world.journal)
        if delivered:
            gate.apply(lease, sent)

    @rule(node=st.integers(0, 2))
    def sync_lost_before_risk(self, node: int) -> None:
        self.outstanding.pop(self.names[node % len(self.names)], None)

    @rule(ms=st.sampled_from([1, 10, 60, 200, 501, 1_001]))
    def time_passes(self, ms: int) -> None:
        self.clock.advance(ms * MS)

    @rule(node=st.integers(0, 8), started=st.booleans(), late_sync=st.booleans())
    def node_restarts(self, node: int, started: bool, late_sync: bool) -> None:
        """Now and then a node's process dies. The new one reconciles every trade the old one
        approved (by client id, with the venues) and reports it before its first sync; a
        sync the old one sent may still reach risk later."""
        if node >= len(self.names):
            return
        name = self.names[node]
        self.restarts += 1
        new = self._gate(name)
        for trade in [t for t in self.pending if t.node == name]:
            if trade.filled is None:
                self.venues_fill_trade(trade, started)
            self.pending.remove(trade)
            self._reported(trade, new)
        old = self.outstanding.pop(name, None)
        self.gates[name] = new
        if old is not None and late_sync:
            self.risk.sync(old[0], self.world.journal)  # the dead process's call, delivered late

    def venues_fill_trade(self, trade: Trade, started: bool) -> None:
        size = trade.approval.size if started else 0.0
        opp = trade.approval.opp
        base, quote = self.universe.symbols[opp.symbol].split("/")
        price = PRICES[self.universe.symbols[opp.symbol]]
        bv, sv = self.universe.venues[opp.buy_venue], self.universe.venues[opp.sell_venue]
        trade.filled = (size, size)
        p = self.world.positions
        p[bv, base] = p.get((bv, base), 0.0) + size
        p[bv, quote] = p.get((bv, quote), 0.0) - size * price * 1.001
        p[sv, base] = p.get((sv, base), 0.0) - size
        p[sv, quote] = p.get((sv, quote), 0.0) + size * price * 0.999

    @rule()
    def risk_persists(self) -> None:
        self.saved = self.risk.state_record()

    @rule(now=st.integers(0, 5))
    def risk_restarts(self, now: int) -> None:
        """Now and then risk dies and comes back from its last saved state (maybe none) and
        the journal."""
        if now == 0:
            self.risk = self._new_risk(self.saved, restarted=True)

    @rule(action=st.integers(0, 11))
    def operator(self, action: int) -> None:
        """Now and then a halt (risk revokes every lease) or a resume."""
        if action == 0:
            self.risk.halt("test")
            for gate in self.gates.values():
                gate.revoke("halted")
        elif action <= 6:
            self.risk.resume()

    # -- what must always hold ---------------------------------------------------------------

    def _worst(self, venue: str, asset: str, direction: float) -> float:
        """The venue's position change in `direction` if every trade still open filled."""
        pos = self.world.positions.get((venue, asset), 0.0) * direction
        for t in self.pending:
            if t.filled is not None:
                continue
            opp = t.approval.opp
            base = self.universe.symbols[opp.symbol].split("/")[0]
            side = opp.buy_venue if direction > 0 else opp.sell_venue
            if base == asset and self.universe.venues[side] == venue:
                pos += t.approval.size
        return pos

    @invariant()
    def positions_stay_within_max_position(self) -> None:
        if not hasattr(self, "world"):
            return
        for venue in self.universe.venues:
            for base, limit in self.config.risk.max_position.items():
                for direction in (+1.0, -1.0):
                    assert self._worst(venue, base, direction) <= limit + 1e-9, (venue, base)

    @invariant()
    def inventory_never_goes_negative(self) -> None:
        if not hasattr(self, "world"):
            return
        for venue, cfg in self.config.venues.items():
            for asset, start in cfg.balances.items():
                spend = 0.0
                for t in self.pending:
                    if t.filled is not None:
                        continue
                    opp = t.approval.opp
                    symbol = self.universe.symbols[opp.symbol]
                    base, quote = symbol.split("/")
                    if asset == quote and self.universe.venues[opp.buy_venue] == venue:
                        spend += t.approval.size * PRICES[symbol] * 1.001
                    if asset == base and self.universe.venues[opp.sell_venue] == venue:
                        spend += t.approval.size
                have = start + self.world.positions.get((venue, asset), 0.0)
                assert have - spend >= -1e-6, (venue, asset, have, spend)

    @invariant()
    def gross_exposure_stays_under_its_ceiling(self) -> None:
        if not hasattr(self, "world"):
            return
        worst = 0.0
        for venue in self.universe.venues:
            for symbol, price in PRICES.items():
                base = symbol.split("/")[0]
                worst += (
                    max(abs(self._worst(venue, base, +1.0)), abs(self._worst(venue, base, -1.0)))
                    * price
                )
        ceiling = self.config.risk.max_gross_exposure_quote
        assert ceiling is not None and worst <= ceiling + 1e-6

    @invariant()
    def trades_in_flight_per_symbol_stay_within_the_limit(self) -> None:
        """Each symbol is one node's (sharded), so its gate alone bounds its trades."""
        if not hasattr(self, "world") or not self.sharded:
            return
        for s in range(len(self.universe.symbols)):
            busy = sum(1 for t in self.pending if t.approval.opp.symbol == s)
            assert busy <= self.config.risk.max_in_flight_per_symbol

    @invariant()
    def orders_stay_within_the_rate_limit(self) -> None:
        """Within any second: the bucket's rate and burst, plus a burst share per restart
        (a new node process starts with a full bucket)."""
        if not hasattr(self, "world"):
            return
        lim = self.config.risk
        times = sorted(self.world.orders)
        slack = self.restarts * lim.order_burst
        for i, t in enumerate(times):
            window = sum(1 for u in times[i:] if u - t <= 1_000 * MS)
            assert window <= lim.order_burst + lim.max_orders_per_s + slack + 1e-9


TestLeases = LeaseMachine.TestCase
TestLeases.settings = settings(
    max_examples=200,
    stateful_step_count=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

"""ExecutorCore on simulated venues: both legs at once, broken legs repaired, all journaled."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hft_ray.clock import LiveClock
from hft_ray.config import HftConfig
from hft_ray.execute.core import ExecutorCore
from hft_ray.ledger import Ledger
from hft_ray.markets import simulated_markets
from hft_ray.store import LocalStore, RedisStore, StoreUnavailable
from hft_ray.types import Approval, Opportunity, Universe
from hft_ray.venues.sim import InProcessSimVenue, sim_exchange_from_config
from tests.conftest import free_port, typed

T0 = 1_700_000_000_000_000_000


class Harness:
    def __init__(self, config: HftConfig, store_dir: Path, store: Any = None) -> None:
        self.config = config
        self.universe = Universe(tuple(config.venues), tuple(config.symbols))
        self.exchanges = {v: sim_exchange_from_config(config, v) for v in config.venues}
        for ex in self.exchanges.values():
            ex.step(T0)
        self.venues = {v: InProcessSimVenue(ex, late_ack_s=5.0) for v, ex in self.exchanges.items()}
        self.store = store or LocalStore(store_dir, "executor0")
        self.core = ExecutorCore(
            config, self.universe, simulated_markets(config), self.venues, self.store, LiveClock()
        )

    def approval(
        self, buy: str, sell: str, size: float, sell_worst: float | None = None
    ) -> Approval:
        symbol = "ETH/USDT"
        ask = float(self.exchanges[buy].book(symbol)[1][0, 0])
        bid = float(self.exchanges[sell].book(symbol)[0][0, 0])
        sell_px = bid if sell_worst is None else sell_worst
        o = Opportunity(
            "t1",
            self.universe.symbol_id(symbol),
            self.universe.venue_id(buy),
            self.universe.venue_id(sell),
            size,
            ask,
            sell_px,
            ask,
            sell_px,
            0.0,
            0.0,
            0,
            0,
            LiveClock().monotonic_ns(),
            LiveClock().monotonic_ns(),
        )
        return Approval(o, size, LiveClock().monotonic_ns())

    def run(self, approval: Approval) -> Any:
        return asyncio.run(self.core.execute(approval))

    def journal(self) -> list[dict]:
        return asyncio.run(self.store.read_journal())


def net_base(journal: list[dict]) -> float:
    return sum(
        r["filled"] * (1 if r["side"] == "buy" else -1) for r in journal if r["type"] == "fill"
    )


def test_both_legs_fill_and_the_journal_tells_it_in_order(
    make_config: Callable[..., HftConfig], tmp_path: Path
) -> None:
    h = Harness(make_config(), tmp_path)
    report = h.run(h.approval("binance", "okx", 0.5))
    assert [r.status for r in report.fills] == ["filled", "filled"]
    assert report.legs_failed == 0 and not report.unwound
    assert [r.client_id for r in report.fills] == ["t1B", "t1S"]
    journal = h.journal()
    types = [r["type"] for r in journal]
    assert types[0] == "intent" and types[-1] == "execution"
    assert types.count("order") == 2 and types.count("fill") == 2
    assert net_base(journal) == pytest.approx(0.0)
    ledger = Ledger.from_journal(typed(journal))
    assert ledger.position("binance", "ETH") == pytest.approx(0.5)
    assert h.exchanges["binance"].balances["ETH"] == pytest.approx(8.5)
    assert ledger.fees_quote > 0


@pytest.mark.parametrize("policy", ["reverse", "proceed"])
def test_a_rejected_or_expired_leg_is_repaired(
    policy: str, make_config: Callable[..., HftConfig], tmp_path: Path
) -> None:
    h = Harness(make_config(execution={"unwind_policy": policy}), tmp_path)
    # The sell limit sits far above okx's bid: the IOC expires unfilled, the buy fills.
    bid = float(h.exchanges["okx"].book("ETH/USDT")[0][0, 0])
    report = h.run(h.approval("binance", "okx", 0.5, sell_worst=round(bid * 1.01, 2)))
    assert report.legs_failed == 1 and report.unwound
    repair = report.fills[2]
    assert repair.client_id == "t1U" and repair.side == "sell"
    assert repair.venue == ("binance" if policy == "reverse" else "okx")
    journal = h.journal()
    assert abs(net_base(journal)) <= h.config.market_spec("binance", "ETH/USDT").lot
    unwind = next(r for r in journal if r["type"] == "unwind")
    assert unwind["policy"] == policy and unwind["excess"] == pytest.approx(0.5)


def test_cancel_policy_leaves_the_residual_journaled(
    make_config: Callable[..., HftConfig], tmp_path: Path
) -> None:
    h = Harness(
        make_config(
            execution={"unwind_policy": "cancel"},
            venues={"okx": {"reject_rate": 1.0, "timeout_rate": 0}},
        ),
        tmp_path,
    )
    report = h.run(h.approval("binance", "okx", 0.5))
    assert [r.status for r in report.fills] == ["filled", "rejected"]
    assert report.fills[1].reason == "venue_reject"
    journal = h.journal()
    assert next(r for r in journal if r["type"] == "unwind")["reason"] == "policy_cancel"
    assert journal[-1]["residual_base"] == pytest.approx(0.5)


def test_a_lost_ack_is_reconciled_by_client_order_id(
    make_config: Callable[..., HftConfig], tmp_path: Path
) -> None:
    h = Harness(
        make_config(
            execution={"order_timeout_ms": 100},
            venues={"okx": {"timeout_rate": 1.0, "reject_rate": 0}},
        ),
        tmp_path,
    )
    report = h.run(h.approval("binance", "okx", 0.5))
    sell = report.fills[1]
    assert sell.status == "filled" and sell.reason == "ack_timeout_reconciled"
    assert report.legs_failed == 0
    assert net_base(h.journal()) == pytest.approx(0.0)


def test_nothing_is_sent_when_the_intent_cannot_be_journaled(
    make_config: Callable[..., HftConfig], tmp_path: Path
) -> None:
    dead = RedisStore(f"redis://127.0.0.1:{free_port()}/0", "nobody", timeout_s=0.3)
    h = Harness(make_config(), tmp_path, store=dead)
    with pytest.raises(StoreUnavailable):
        h.run(h.approval("binance", "okx", 0.5))
    assert all(ex.fetch("t1B") is None and ex.fetch("t1S") is None for ex in h.exchanges.values())


class FailingAfter:
    """The real file store, which starts failing after `n` appends (a disk filling up)."""

    def __init__(self, store: LocalStore, n: int) -> None:
        self._store, self._left, self._full = store, n, False

    async def append(self, record: dict) -> None:
        if self._left <= 0:
            self._full = True
            raise StoreUnavailable("disk full")
        self._left -= 1
        await self._store.append(record)

    async def flush(self) -> None:
        if self._full:
            raise StoreUnavailable("disk full")
        await self._store.flush()

    async def read_journal(self) -> list[dict]:
        return await self._store.read_journal()


def test_fills_reach_risk_even_when_the_journal_fails_after_the_legs_left(
    make_config: Callable[..., HftConfig], tmp_path: Path
) -> None:
    h = Harness(make_config(), tmp_path)
    h.core = ExecutorCore(
        h.config,
        h.universe,
        simulated_markets(h.config),
        h.venues,
        FailingAfter(LocalStore(tmp_path, "executor0"), 1),
        LiveClock(),
    )  # type: ignore[arg-type]
    report = h.run(h.approval("binance", "okx", 0.5))
    assert report.journal_failed
    assert [r.status for r in report.fills] == ["filled", "filled"]
    assert h.exchanges["binance"].balances["ETH"] == pytest.approx(8.5)
    assert [r["type"] for r in h.journal()] == ["intent"]  # the one record that made it


class DeadVenue:
    """A venue whose process died: every call raises, as a dead Ray actor's would."""

    name = "okx"

    async def create_order(self, *args: object) -> None:
        raise RuntimeError("actor died")

    async def fetch_order(self, *args: object) -> None:
        raise RuntimeError("actor died")


def test_a_dead_venue_leaves_an_unknown_leg_and_no_repair(
    make_config: Callable[..., HftConfig], tmp_path: Path
) -> None:
    h = Harness(make_config(execution={"order_timeout_ms": 50}), tmp_path)
    h.venues["okx"] = DeadVenue()  # type: ignore[assignment]
    report = h.run(h.approval("binance", "okx", 0.5))
    assert report.legs_unknown == 1 and not report.unwound
    assert [r.status for r in report.fills] == ["filled", "unknown"]
    assert report.fills[1].reason == "ack_timeout_unknown"
    assert not [r for r in h.journal() if r["type"] == "unwind"]


@pytest.mark.parametrize("policy", ["reverse", "proceed"])
@pytest.mark.parametrize("budget", [0.05, 50.0])
def test_a_repair_never_loses_more_than_its_budget(
    policy: str, budget: float, make_config: Callable[..., HftConfig], tmp_path: Path
) -> None:
    config = make_config(
        execution={
            "unwind_policy": policy,
            "unwind_max_loss_quote": budget,
            "unwind_slippage_bps": 100,
        }
    )
    h = Harness(config, tmp_path)
    bid = float(h.exchanges["okx"].book("ETH/USDT")[0][0, 0])
    report = h.run(h.approval("binance", "okx", 0.5, sell_worst=round(bid * 1.01, 2)))
    buy, _, repair = report.fills
    journal = h.journal()
    unwind = next(r for r in journal if r["type"] == "unwind")
    assert unwind["worst_loss_quote"] <= budget + 1e-9
    if repair.filled > 0:
        loss = repair.filled * (buy.avg_price - repair.avg_price) + repair.fee_quote
        assert loss <= budget + 1e-9
    lot = config.market_spec("binance", "ETH/USDT").lot
    if budget >= 50.0:  # a generous budget lets the repair through: flat within a lot
        assert repair.status == "filled" and abs(net_base(journal)) <= lot
    else:  # a tiny one keeps the price where nobody bids: the residual stays, journaled
        assert repair.status == "expired" and repair.filled == 0
        assert journal[-1]["residual_base"] == pytest.approx(0.5)


class DiesMidOrder:
    """A venue the executor's process died on: after the order was placed (`sent`), or
    before it left; either way the acknowledgement never comes back."""

    def __init__(self, inner: InProcessSimVenue, sent: bool) -> None:
        self._inner = inner
        self._sent = sent
        self.name = inner.name

    async def create_order(self, *args: Any) -> Any:
        if self._sent:
            await self._inner.create_order(*args)
        await asyncio.Event().wait()

    async def fetch_order(self, *args: Any) -> Any:
        return await self._inner.fetch_order(*args)


def test_a_restarted_executor_reconciles_an_unfinished_trade_by_client_id(
    make_config: Callable[..., HftConfig], tmp_path: Path
) -> None:
    config = make_config(execution={"order_timeout_ms": 60_000})
    h = Harness(config, tmp_path)
    dying = {v: DiesMidOrder(venue, sent=True) for v, venue in h.venues.items()}

    def executor(name: str, venues: Any) -> ExecutorCore:
        markets = simulated_markets(config)
        return ExecutorCore(config, h.universe, markets, venues, h.store, LiveClock(), name=name)

    async def crash() -> None:
        first = executor("executor0", dying)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(first.execute(h.approval("binance", "okx", 0.5)), 0.5)

    asyncio.run(crash())
    assert [r["type"] for r in h.journal()] == ["intent"]  # legs live, outcome unknown

    restarted = executor("executor0", h.venues)
    reports = asyncio.run(restarted.reconcile(typed(h.journal())))
    assert [r.opp_id for r in reports] == ["t1"]
    assert [(f.client_id, f.status) for f in reports[0].fills] == [
        ("t1B", "filled"),
        ("t1S", "filled"),
    ]
    journal = h.journal()
    assert [r["type"] for r in journal].count("fill") == 2
    assert journal[-1]["type"] == "execution" and net_base(journal) == pytest.approx(0.0)
    # Reconciled once: a second restart finds nothing left to do.
    assert asyncio.run(restarted.reconcile(typed(journal))) == []
    other = executor("executor1", h.venues)
    assert asyncio.run(other.reconcile(typed(h.journal()[:1]))) == []  # not its intent


def test_a_leg_larger_than_the_book_fills_partly_and_the_excess_is_reversed(
    make_config: Callable[..., HftConfig], tmp_path: Path
) -> None:
    h = Harness(make_config(execution={"slippage_bps": 0}), tmp_path)
    bids = h.exchanges["okx"].book("ETH/USDT")[0]
    bids[0, 1] = 0.2  # okx's best bid holds 0.2 ETH; the sell limit reaches no further
    report = h.run(h.approval("binance", "okx", 0.5, sell_worst=float(bids[0, 0])))
    buy, sell, repair = report.fills
    assert buy.status == "filled" and buy.filled == pytest.approx(0.5)
    assert (sell.status, sell.filled, sell.reason) == ("partial", 0.2, "ioc_remainder_expired")
    assert report.legs_failed == 1 and report.unwound
    size = 0.5
    assert repair.side == "sell" and repair.venue == "binance"
    assert repair.amount == pytest.approx(size - sell.filled)
    lot = h.config.market_spec("binance", "ETH/USDT").lot
    assert abs(net_base(h.journal())) <= lot


def test_a_rate_limited_leg_is_rejected_and_the_other_reversed(
    make_config: Callable[..., HftConfig], tmp_path: Path
) -> None:
    h = Harness(
        make_config(venues={"okx": {"rate_limit_rate": 1.0, "reject_rate": 0, "timeout_rate": 0}}),
        tmp_path,
    )
    report = h.run(h.approval("binance", "okx", 0.5))
    buy, sell, repair = report.fills
    assert (sell.status, sell.reason) == ("rejected", "rate_limited")
    assert buy.status == "filled" and report.unwound and repair.venue == "binance"
    assert abs(net_base(h.journal())) <= h.config.market_spec("binance", "ETH/USDT").lot


def test_an_intent_whose_orders_never_left_reconciles_as_never_placed_not_unknown(
    make_config: Callable[..., HftConfig], tmp_path: Path
) -> None:
    config = make_config(execution={"order_timeout_ms": 60_000})
    h = Harness(config, tmp_path)
    markets = simulated_markets(config)
    silent = {v: DiesMidOrder(venue, sent=False) for v, venue in h.venues.items()}
    first = ExecutorCore(config, h.universe, markets, silent, h.store, LiveClock())  # type: ignore[arg-type]

    async def crash() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(first.execute(h.approval("binance", "okx", 0.5)), 0.5)

    asyncio.run(crash())
    restarted = ExecutorCore(config, h.universe, markets, h.venues, h.store, LiveClock())
    (report,) = asyncio.run(restarted.reconcile(typed(h.journal())))
    assert [(f.status, f.reason) for f in report.fills] == [
        ("rejected", "never_placed"),
        ("rejected", "never_placed"),
    ]
    assert report.legs_unknown == 0 and not report.unwound  # nothing to repair, nothing halts
    assert net_base(h.journal()) == 0.0


def test_an_approval_is_traded_at_most_once_and_never_after_risk_wrote_it_off(
    make_config: Callable[..., HftConfig], tmp_path: Path
) -> None:
    h = Harness(make_config(), tmp_path)
    core = h.core
    assert core.settle("lost") and not core.admit("lost")  # written off, then never traded
    assert core.admit("t1") and not core.admit("t1")  # delivered twice: traded once
    assert not core.settle("t1")  # started: its report comes
    h.run(h.approval("binance", "okx", 0.5))
    restarted = ExecutorCore(
        h.config, h.universe, simulated_markets(h.config), h.venues, h.store, LiveClock()
    )
    asyncio.run(restarted.reconcile(typed(h.journal())))
    assert not restarted.settle("t1") and not restarted.admit("t1")  # journaled before

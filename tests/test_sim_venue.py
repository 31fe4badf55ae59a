"""The simulated venue: seeded books handed out as rows, an IOC matching engine that keeps
balances honest, and the actor's bounded backlog that counts what a slow reader loses."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hft_ray.book import check_levels
from hft_ray.config import HftConfig
from hft_ray.feed.core import FeedCore
from hft_ray.types import Universe, book_update_dtype
from hft_ray.venues.sim import (
    Backlog,
    SimExchange,
    SimRowSource,
    SimVenueActor,
    TickGrid,
    sim_exchange_from_config,
)

T0 = 1_700_000_000_000_000_000


def stepped(config: HftConfig, venue: str, steps: int = 3) -> SimExchange:
    ex = sim_exchange_from_config(config, venue)
    for i in range(steps):
        ex.step(T0 + i)
    return ex


def test_same_seed_same_books_other_seed_other_books(make_config: Callable[..., HftConfig]) -> None:
    a = sim_exchange_from_config(make_config(), "okx")
    b = sim_exchange_from_config(make_config(), "okx")
    c = sim_exchange_from_config(make_config(run={"seed": 8}), "okx")
    for i in range(200):
        ba, bb, bc = a.step(T0 + i), b.step(T0 + i), c.step(T0 + i)
    for x, y in zip(ba, bb, strict=True):
        assert np.array_equal(x.bids, y.bids) and np.array_equal(x.asks, y.asks)
    assert not np.array_equal(ba[0].bids, bc[0].bids)


def test_books_are_deep_sorted_and_on_the_venue_precision(
    make_config: Callable[..., HftConfig],
) -> None:
    config = make_config()
    for venue in config.venues:
        ex = sim_exchange_from_config(config, venue)
        for i in range(50):
            books = ex.step(T0 + i)
        for book in books:
            spec = config.market_spec(venue, book.symbol)
            assert len(book.bids) >= 20 and len(book.asks) >= 20
            assert check_levels(book.bids, book.asks) == ""
            for px, qty in np.vstack([book.bids, book.asks]):
                assert spec.is_tick_multiple(px), (venue, book.symbol, px)
                assert spec.is_lot_multiple(qty) and qty >= spec.lot


def test_common_walk_is_shared_and_dislocations_beat_fees(
    make_config: Callable[..., HftConfig],
) -> None:
    config = make_config()
    venues = {v: sim_exchange_from_config(config, v) for v in config.venues}
    fee = {v: config.market_spec(v, "BTC/USDT").taker_fee for v in venues}
    crossed_ticks = 0
    mids: dict[str, list[float]] = {v: [] for v in venues}
    for i in range(4_000):  # 100 s of market at 25 ms a tick
        tops = {}
        for v, ex in venues.items():
            book = next(b for b in ex.step(T0 + i) if b.symbol == "BTC/USDT")
            tops[v] = (book.bids[0, 0], book.asks[0, 0])
            mids[v].append((book.bids[0, 0] + book.asks[0, 0]) / 2)
        crossed_ticks += any(
            tops[b][0] * (1 - fee[b]) > tops[a][1] * (1 + fee[a])
            for a in venues
            for b in venues
            if a != b
        )
    # One common walk: venues never drift apart, though jumps of 30-70 bps come and go.
    ref = np.array(mids["binance"])
    spread = np.abs(ref - np.array(mids["gateio"])) / ref
    assert np.median(spread) < 2e-3 and spread.max() < 2e-2
    assert np.abs(ref[-1] / ref[0] - 1) > 0  # and the walk does move
    # Fee-beating dislocations do occur, and are short-lived (a small share of ticks).
    assert 0 < crossed_ticks < 0.2 * 4_000


def test_no_dislocations_no_fee_beating_crosses(make_config: Callable[..., HftConfig]) -> None:
    config = make_config(sim={"dislocations_per_min": 0})
    venues = {v: sim_exchange_from_config(config, v) for v in config.venues}
    for i in range(1_000):
        tops = {v: ex.step(T0 + i)[0] for v, ex in venues.items()}
        for a in venues:
            for b in venues:
                fees = config.market_spec(a, "BTC/USDT").taker_fee * 2
                assert tops[b].bids[0, 0] < tops[a].asks[0, 0] * (1 + fees)


def test_ioc_buy_fills_across_levels_and_charges_fee(make_config: Callable[..., HftConfig]) -> None:
    config = make_config()
    ex = stepped(config, "binance")
    spec = config.market_spec("binance", "ETH/USDT")
    asks = ex.book("ETH/USDT")[1].copy()
    want = spec.floor_amount(asks[0, 1] + asks[1, 1] / 2)
    limit = asks[1, 0]
    before = dict(ex.balances)
    r = ex.submit("c1", "ETH/USDT", "buy", want, limit, T0)
    expected_cost = asks[0, 0] * asks[0, 1] + asks[1, 0] * (want - asks[0, 1])
    assert r.status == "filled" and r.filled == pytest.approx(want)
    assert r.avg_price == pytest.approx(expected_cost / want)
    assert r.fee_quote == pytest.approx(expected_cost * spec.taker_fee)
    assert ex.balances["ETH"] == pytest.approx(before["ETH"] + want)
    assert ex.balances["USDT"] == pytest.approx(
        before["USDT"] - expected_cost * (1 + spec.taker_fee)
    )


def test_ioc_partial_fill_expires_the_rest(make_config: Callable[..., HftConfig]) -> None:
    config = make_config(venues={"okx": {"balances": {"SOL": 10_000.0}}})
    ex = stepped(config, "okx")
    bids = ex.book("SOL/USDT")[0].copy()
    available = bids[0, 1]
    r = ex.submit("c2", "SOL/USDT", "sell", available * 2, bids[0, 0], T0)
    assert r.status == "partial" and r.filled == pytest.approx(available)
    assert r.reason == "ioc_remainder_expired"
    # The taken level is consumed until the next tick: a second order finds nothing there.
    again = ex.submit("c3", "SOL/USDT", "sell", available, bids[0, 0], T0)
    assert again.status == "expired" and again.filled == 0


def test_orders_outside_precision_or_funds_are_rejected(
    make_config: Callable[..., HftConfig],
) -> None:
    config = make_config(venues={"gateio": {"balances": {"USDT": 100.0, "BTC": 0.0}}})
    ex = stepped(config, "gateio")
    _, asks = ex.book("BTC/USDT")
    cases = {
        "invalid_amount": ("BTC/USDT", "buy", 0.0000015, asks[0, 0]),
        "invalid_price": ("BTC/USDT", "buy", 0.001, asks[0, 0] + 0.05),
        "below_min_size": ("BTC/USDT", "buy", 0.000001, asks[0, 0]),
        "insufficient_funds": ("BTC/USDT", "buy", 0.01, asks[0, 0]),
        "unknown_symbol": ("DOGE/USDT", "buy", 1.0, 0.1),
    }
    for i, (reason, (symbol, side, amount, price)) in enumerate(cases.items()):
        r = ex.submit(f"r{i}", symbol, side, amount, price, T0)  # type: ignore[arg-type]
        assert (r.status, r.reason) == ("rejected", reason)
    r = ex.submit("s1", "BTC/USDT", "sell", 0.001, asks[0, 0], T0)
    assert (r.status, r.reason) == ("rejected", "insufficient_funds")
    assert (ex.balances["USDT"], ex.balances["BTC"]) == (100.0, 0.0)


def test_a_client_order_id_is_used_once(make_config: Callable[..., HftConfig]) -> None:
    ex = stepped(make_config(), "binance")
    _, asks = ex.book("BTC/USDT")
    first = ex.submit("dup", "BTC/USDT", "buy", 0.001, asks[0, 0], T0)
    second = ex.submit("dup", "BTC/USDT", "buy", 0.001, asks[0, 0], T0)
    assert first.status == "filled"
    assert (second.status, second.reason) == ("rejected", "duplicate_client_id")
    assert ex.fetch("dup") == first


def test_order_fate_depends_only_on_seed_and_client_id(
    make_config: Callable[..., HftConfig],
) -> None:
    config = make_config(venues={"okx": {"reject_rate": 0.3, "timeout_rate": 0.2}})
    a, b = (sim_exchange_from_config(config, "okx") for _ in range(2))
    fates = [a.order_fate(f"id{i}") for i in range(2_000)]
    assert fates == [b.order_fate(f"id{i}") for i in range(2_000)]
    share = {k: sum(f == k for f, _ in fates) / len(fates) for k in ("reject", "timeout")}
    assert 0.25 < share["reject"] < 0.35 and 0.15 < share["timeout"] < 0.25


@settings(max_examples=60, deadline=None)
@given(
    orders=st.lists(
        st.tuples(
            st.sampled_from(["BTC/USDT", "ETH/USDT", "SOL/USDT"]),
            st.sampled_from(["buy", "sell"]),
            st.floats(0.0001, 3.0),
            st.floats(-0.003, 0.003),
            st.booleans(),
        ),
        max_size=40,
    )
)
def test_balances_never_go_negative(orders: list, sim_config: HftConfig) -> None:
    ex = sim_exchange_from_config(sim_config, "binance")
    for i, (symbol, side, amount, offset, step) in enumerate(orders):
        if step or i == 0:
            ex.step(T0 + i)
        spec = sim_config.market_spec("binance", symbol)
        bids, asks = ex.book(symbol)
        touch = asks[0, 0] if side == "buy" else bids[0, 0]
        price = spec.floor_price(touch * (1 + offset))
        ex.submit(f"p{i}", symbol, side, spec.floor_amount(amount) or spec.lot, price, T0)
        assert all(v >= -1e-9 for v in ex.balances.values()), ex.balances


@pytest.fixture(scope="module")
def sim_config() -> HftConfig:
    from hft_ray.config import parse_config
    from tests.conftest import default_config_dict, merge

    return parse_config(
        merge(
            default_config_dict(),
            {
                "venues": {
                    "binance": {"balances": {"USDT": 3000.0, "BTC": 0.01, "ETH": 0.5, "SOL": 4.0}}
                }
            },
        )
    )


def test_rows_are_the_books_of_the_step_in_id_order(make_config: Callable[..., HftConfig]) -> None:
    config = make_config(feed={"depth": 6})
    rows_ex, books_ex = (sim_exchange_from_config(config, "okx") for _ in range(2))
    for i in range(30):
        rows, books = rows_ex.step_rows(T0 + i), books_ex.step(T0 + i)
    assert rows.dtype == book_update_dtype(6) and len(rows) == 3
    assert rows["symbol"].tolist() == [0, 1, 2] and (rows["venue"] == 1).all()
    assert (rows["seq"] == 30).all() and (rows["ts_exchange_ns"] == T0 + 29).all()
    assert not rows["flags"].any() and not rows["ts_recv_ns"].any()
    assert not rows["ts_recv_mono_ns"].any()
    for row, book in zip(rows, books, strict=True):
        assert book.symbol == config.symbols[row["symbol"]] and len(book.bids) == 20
        assert (row["n_bids"], row["n_asks"]) == (6, 6)
        assert row["bid_px"].tolist() == book.bids[:6, 0].tolist()
        assert row["bid_qty"].tolist() == book.bids[:6, 1].tolist()
        assert row["ask_px"].tolist() == book.asks[:6, 0].tolist()
        assert row["ask_qty"].tolist() == book.asks[:6, 1].tolist()
    kept = rows.copy()
    rows_ex.step_rows(T0 + 30)
    assert rows.tobytes() == kept.tobytes()  # each step hands out a fresh array


def test_a_shard_yields_exactly_the_books_of_the_whole_venue(
    make_config: Callable[..., HftConfig],
) -> None:
    config = make_config()
    whole = sim_exchange_from_config(config, "gateio")
    shard = sim_exchange_from_config(config, "gateio", only=["SOL/USDT", "BTC/USDT"])
    assert shard.symbols == ["BTC/USDT", "SOL/USDT"]
    for i in range(300):
        everything, mine = whole.step_rows(T0 + i), shard.step_rows(T0 + i)
    assert mine["symbol"].tolist() == [0, 2]
    for field in ("n_bids", "n_asks", "bid_px", "bid_qty", "ask_px", "ask_qty", "seq"):
        assert np.array_equal(mine[field], everything[field][[0, 2]]), field
    cid = "x1"
    assert shard.submit(cid, "ETH/USDT", "buy", 0.01, 3000.0, T0).reason == "unknown_symbol"
    with pytest.raises(KeyError, match="ETH/USDT is not built by venue gateio"):
        shard.book("ETH/USDT")


def test_venues_publish_at_their_own_phase_of_the_tick(
    make_config: Callable[..., HftConfig],
) -> None:
    config = make_config(sim={"tick_ms": 30})
    phases = [sim_exchange_from_config(config, v).phase_s for v in config.venues]
    assert phases == pytest.approx([0.0, 0.01, 0.02])


def test_bad_construction_is_refused_by_name(make_config: Callable[..., HftConfig]) -> None:
    config = make_config()
    with pytest.raises(ValueError, match="only: DOGE/USDT not among the venue's symbols"):
        sim_exchange_from_config(config, "okx", only=["DOGE/USDT"])
    ex = sim_exchange_from_config(config, "okx")
    args: dict[str, Any] = {
        "name": "okx",
        "venue_index": 1,
        "venue_count": 3,
        "specs": {s: config.market_spec("okx", s) for s in config.symbols},
        "venue": config.venues["okx"],
        "market": config.sim,
        "seed": 7,
        "depth": 20,
    }
    assert SimExchange(**args).phase_s == ex.phase_s
    with pytest.raises(ValueError, match=r"depth 21 must be from 1 to sim\.book_depth 20"):
        SimExchange(**{**args, "depth": 21})
    with pytest.raises(ValueError, match="venue_index 3 is not below venue_count 3"):
        SimExchange(**{**args, "venue_index": 3})
    market = config.sim.model_copy(update={"initial_prices": {"BTC/USDT": 1.0}})
    with pytest.raises(ValueError, match="no price for ETH/USDT, SOL/USDT"):
        SimExchange(**{**args, "market": market})


def test_a_replayed_book_is_matched_to_the_venue_depth(
    make_config: Callable[..., HftConfig],
) -> None:
    from hft_ray.types import BookSnapshot

    config = make_config(sim={"book_depth": 4}, feed={"depth": 4})
    ex = sim_exchange_from_config(config, "binance")
    bids = np.array([[100.0 - i, 1.0] for i in range(6)])
    ex.install(BookSnapshot("ETH/USDT", 1, T0, bids, np.empty((0, 2))))
    got_bids, got_asks = ex.book("ETH/USDT")
    assert got_bids.tolist() == bids[:4].tolist() and got_asks.shape == (0, 2)
    r = ex.submit("s1", "ETH/USDT", "sell", 5.5, 95.0, T0)  # 6 recorded levels reach 95
    assert (r.status, r.filled) == ("partial", 4.0)  # the venue matches its 4
    r = ex.submit("b1", "ETH/USDT", "buy", 0.5, 4000.0, T0)
    assert (r.status, r.filled) == ("expired", 0.0)  # no asks to take


def batch(n: int, start: int = 0) -> np.ndarray:
    rows = np.zeros(n, book_update_dtype(1))
    rows["seq"] = np.arange(start, start + n)
    return rows


def test_backlog_serves_every_row_since_a_cursor_and_counts_what_it_dropped() -> None:
    async def scenario() -> None:
        log: Backlog[np.ndarray] = Backlog(max_items=10)
        for step in range(3):
            log.push(batch(3, 3 * step))
        seq, steps, lost = await log.since(0, 0.0)
        assert (seq, lost) == (9, 0)
        assert np.concatenate(steps)["seq"].tolist() == list(range(9))
        log.push(batch(3, 9))  # 12 rows: the oldest step goes
        seq, steps, lost = await log.since(0, 0.0)
        assert (seq, lost) == (12, 3)
        assert np.concatenate(steps)["seq"].tolist() == list(range(3, 12))
        seq, steps, lost = await log.since(6, 0.0)  # a reader who kept up loses nothing
        assert (seq, lost) == (12, 0) and np.concatenate(steps)["seq"].tolist() == [
            6,
            7,
            8,
            9,
            10,
            11,
        ]
        log.push(batch(25, 12))  # one step above the bound is still served whole
        seq, steps, lost = await log.since(9, 0.0)
        assert (seq, lost, len(steps), len(steps[0])) == (37, 3, 1, 25)
        with pytest.raises(ValueError, match=r"cursor 38 is outside the published 0\.\.37"):
            await log.since(38, 0.0)

    asyncio.run(scenario())


def test_backlog_waits_for_the_next_step_or_times_out() -> None:
    async def scenario() -> None:
        log: Backlog[np.ndarray] = Backlog(max_items=100)
        assert await log.since(0, 0.01) == (0, [], 0)
        waiter = asyncio.ensure_future(log.since(0, 5.0))
        await asyncio.sleep(0)
        log.push(batch(2))
        seq, steps, lost = await waiter
        assert (seq, lost, len(steps[0])) == (2, 0, 2)

    asyncio.run(scenario())


class FakeVenueActor:
    """The two methods of a `SimVenueActor` a row source calls, over a real Backlog, with
    `.remote` returning an awaitable as a Ray actor handle does, and arrays read-only."""

    def __init__(self, log: Backlog[np.ndarray]) -> None:
        self.log = log

        class Method:
            def __init__(self, fn: Callable[..., Any]) -> None:
                self.remote = fn

        self.poll = Method(self._poll)
        self.last_seq = Method(self._last_seq)

    async def _poll(self, after: int, timeout_s: float) -> tuple[int, np.ndarray, int]:
        seq, steps, lost = await self.log.since(after, timeout_s)
        rows = np.concatenate(steps) if steps else batch(0)
        rows.flags.writeable = False  # as Ray hands out a large array from its object store
        return seq, rows, lost

    async def _last_seq(self) -> int:
        return self.log.last_seq


def test_row_source_takes_everything_since_its_last_call_and_counts_conflation() -> None:
    async def scenario() -> None:
        log: Backlog[np.ndarray] = Backlog(max_items=6)
        log.push(batch(3, 0))
        late = SimRowSource(FakeVenueActor(log), from_now=False)
        fresh = SimRowSource(FakeVenueActor(log))
        await late.start()
        await fresh.start()
        log.push(batch(3, 3))
        assert (await fresh.next_rows(0.0))["seq"].tolist() == [3, 4, 5]
        log.push(batch(3, 6))
        log.push(batch(3, 9))  # the bound drops the oldest two steps
        assert (await fresh.next_rows(0.0))["seq"].tolist() == list(range(6, 12))
        assert fresh.conflated == 0  # it kept up
        rows = await late.next_rows(0.0)
        assert rows["seq"].tolist() == list(range(6, 12)) and rows.flags.writeable
        assert late.conflated == 6
        assert len(await late.next_rows(0.01)) == 0 and late.conflated == 6

    asyncio.run(scenario())


def test_tick_grid_never_drifts_skips_missed_ticks_and_never_repeats() -> None:
    ms = 1_000_000
    epoch = 100_000 * ms
    grid = TickGrid(tick_s=0.025, phase_s=0.010, epoch_ns=epoch)
    assert grid.seq_at(epoch) == 0 and grid.seq_at(epoch + 10 * ms) == 1  # tick 1 at +10 ms
    assert grid.wait_s(epoch) == pytest.approx(0.010)
    assert grid.next_seq(epoch + 10 * ms) == 1
    assert grid.wait_s(epoch + 10 * ms + 100_000) == pytest.approx(0.0249)  # the grid holds
    assert grid.next_seq(epoch + 34 * ms) == 2  # woke early: tick 2, never tick 1 again
    assert grid.wait_s(epoch + 34 * ms) == pytest.approx(0.026)  # tick 3 at +60 ms
    assert grid.next_seq(epoch + 210 * ms) == 9 and grid.skipped == 6  # ran late: 3..8
    grid.resume(epoch + 10_000 * ms)  # a reader starting late missed nothing
    assert grid.next_seq(epoch + 10_000 * ms) == 400 and grid.skipped == 6
    with pytest.raises(ValueError, match="tick_s must be positive"):
        TickGrid(0.0, 0.0, epoch)


def test_a_venue_passed_through_ticks_holds_the_same_books_as_one_that_built_each(
    make_config: Callable[..., HftConfig],
) -> None:
    config = make_config()
    stepped = sim_exchange_from_config(config, "okx")
    jumped = sim_exchange_from_config(config, "okx", only=["ETH/USDT"])
    for i in range(1, 41):
        stepped.step_rows(T0 + i)
    assert jumped.advance_to(40, build=False) == 39 and jumped.seq == 40
    assert jumped.advance_to(40) == 0  # already there: only builds the books it passed over
    eth = stepped.rows(T0)[1]
    assert jumped.rows(T0)[0].tobytes() == eth.tobytes()


@pytest.fixture(scope="module")
def one_cpu_ray() -> Iterator[None]:
    """A one-CPU local Ray for this module, or the session's if it is already up."""
    import ray

    if ray.is_initialized():
        yield
        return
    ray.init(num_cpus=1, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.mark.ray
def test_venue_actor_publishes_every_step_to_a_row_source(
    one_cpu_ray: None, make_config: Callable[..., HftConfig]
) -> None:
    config = make_config(sim={"tick_ms": 10})
    actor = SimVenueActor.remote(config, "okx", time.time_ns())  # type: ignore[attr-defined]
    feed = FeedCore(Universe(tuple(config.venues), tuple(config.symbols)), "okx", config.feed, 1)

    async def scenario() -> list[np.ndarray]:
        assert await actor.start.remote() == "okx"
        source = SimRowSource(actor)
        await source.start()
        got = []
        while sum(len(r) for r in got) < 60:
            rows = await source.next_rows(1.0)
            feed.check_rows(rows, 1, 2)  # in place: a source hands out writable rows
            got.append(rows)
        await actor.stop.remote()
        assert source.conflated == 0
        return got

    rows = np.concatenate(asyncio.run(scenario()))
    assert (rows["venue"] == 1).all() and rows.dtype == book_update_dtype(20)
    steps = rows["seq"].reshape(-1, 3)
    assert (steps == steps[:, :1]).all() and (rows["symbol"].reshape(-1, 3) == [0, 1, 2]).all()
    assert (np.diff(steps[:, 0]) == 1).all()  # every step, none lost or repeated
    assert feed.updates == len(rows) and (rows["ts_recv_mono_ns"] == 2).all()

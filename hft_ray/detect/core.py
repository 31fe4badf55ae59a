"""DetectorCore: the latest book of every (symbol, venue) of a shard, and what crosses.

Every row of a batch counts, in order (the `scan_rows` kernel): row i's book replaces its
(symbol, venue) book, and, if tradable, is quoted against every other venue's tradable book
of that symbol as it stands after rows 0..i, both directions; a batch holding several updates
of one book evaluates each of them, not only the last. A book is tradable while its last
update passed the feed's checks and is younger than `max_book_age_ms`: measured from local
receipt and from the venue's own stamp, whichever is older, against one reading of the host's
clocks per batch; in a replay, in recorded time: "now" is the newest recorded stamp seen so
far, advanced by each row before that row is judged, so a batch replays as its rows were
recorded. A (symbol, buy, sell) pair just emitted is held back for `cooldown_ms` (host
monotonic time), so one dislocation seen over several updates is not sent to risk once per
update. Spread reversion (statarb) is a signal on mids and runs once per batch, over the
batch's distinct (symbol, venue).

Sizes are capped by the order notional limit and by inventory: the quote balance on the buy
venue and the base balance on the sell venue, from the config's starting balances (no
balances configured for a venue: no cap) until risk reports positions (`set_positions`).
Both are priced at the legs' limit prices, with the execution's slippage and each market's
tick, as risk prices them: an opportunity within every limit is approved at its size.
The same positions give each leg's room under `risk.max_position` (sizes are clipped to it)
and its imbalance against `risk.inventory_target`, which `detector.inventory_skew_bps` prices
into the edge required (`reference.required_edge_bps`, the rule risk applies too).
"""

from __future__ import annotations

import math

import numpy as np

from hft_ray.clock import Clock
from hft_ray.config import HftConfig
from hft_ray.detect import indicators as ind
from hft_ray.detect import kernels, statarb
from hft_ray.detect.reference import (
    BASE_BALANCE_SELL,
    FEE_BUY,
    FEE_SELL,
    IMB_BUY,
    IMB_SELL,
    LIMIT_COLS,
    MAX_NOTIONAL,
    QUOTE_BALANCE_BUY,
    ROOM_BUY,
    ROOM_SELL,
    PairLimits,
)
from hft_ray.markets import Markets
from hft_ray.types import REVERT_CLOSE, REVERT_OPEN, Opportunity, Universe, book_update_dtype
from hft_ray.venues.base import step_decimals

_MAX_FOUND = 4_096  # quote rows of one kernel call: a batch is scanned in chunks that fit


class DetectorCore:
    def __init__(
        self,
        config: HftConfig,
        universe: Universe,
        markets: Markets,
        clock: Clock,
        id_prefix: str,
    ) -> None:
        self._universe = universe
        self._clock = clock
        self._prefix = id_prefix
        self._counter = 0
        n_sym, n_ven, depth = len(universe.symbols), len(universe.venues), config.feed.depth
        self.bid_px = np.full((n_sym, n_ven, depth), np.nan)
        self.bid_qty = np.full((n_sym, n_ven, depth), np.nan)
        self.ask_px = np.full((n_sym, n_ven, depth), np.nan)
        self.ask_qty = np.full((n_sym, n_ven, depth), np.nan)
        self.n_bids = np.zeros((n_sym, n_ven), np.int64)
        self.n_asks = np.zeros((n_sym, n_ven), np.int64)
        self.valid = np.zeros((n_sym, n_ven), np.bool_)
        self.ts_exchange = np.zeros((n_sym, n_ven), np.int64)
        self.recv_mono = np.zeros((n_sym, n_ven), np.int64)
        self._books = kernels.Books(
            self.bid_px,
            self.bid_qty,
            self.ask_px,
            self.ask_qty,
            self.n_bids,
            self.n_asks,
            self.valid,
            self.ts_exchange,
            self.recv_mono,
        )
        self._row_dtype = book_update_dtype(depth)
        # The most quotes one row can yield: each other venue, both ways.
        self._chunk_rows = _MAX_FOUND // max(1, 2 * (n_ven - 1))
        self._max_age_ns = int(config.feed.max_book_age_ms * 1e6)
        # A replay runs faster or slower than it was recorded: books age in recorded time.
        self._recorded_time = config.replay is not None
        self._file_now = 0
        self._cooldown_ns = int(config.detector.cooldown_ms * 1e6)
        self._last_emit = np.full((n_sym, n_ven, n_ven), -(2**62), np.int64)
        self._min_profit_bps = config.detector.min_profit_bps
        self._limits = self._build_limits(config, markets)
        self._start = {v: dict(c.balances) for v, c in config.venues.items()}
        self._max_position = dict(config.risk.max_position)
        self._offset = {
            (v, s.split("/")[0]): config.inventory_offset(v, s.split("/")[0])
            for v in universe.venues
            for s in universe.symbols
        }
        self.set_positions({})
        self._statarb = config.detector.statarb if config.detector.statarb.enabled else None
        if self._statarb is not None:
            lookback = self._statarb.lookback
            self._sa_bufs = np.zeros((n_sym, n_ven, n_ven, lookback))
            self._sa_accs = np.zeros((n_sym, n_ven, n_ven, ind.WINDOW_ACC))
            self._sa_open = np.zeros((n_sym, n_ven, n_ven), np.int64)
            self._sa_out = np.zeros((_MAX_FOUND, 5))
            self._sa_size: dict[tuple[int, int, int], float] = {}
        self._tradable = np.zeros((n_sym, n_ven), np.bool_)
        self._out_ids = np.zeros((_MAX_FOUND, kernels.ID_COLS), np.int64)
        self._out_quotes = np.zeros((_MAX_FOUND, kernels.QUOTE_COLS))
        self.updates = 0
        self.rows_scanned = 0  # rows evaluated while their book was tradable
        self.opportunities = 0
        self.suppressed = 0
        self.tick_to_detect_ns: list[int] = []

    def _build_limits(self, config: HftConfig, markets: Markets) -> np.ndarray:
        """(S, V, V, LIMIT_COLS): the `PairLimits` of every (symbol, buy, sell); the balances
        are set by `set_positions`."""
        u = self._universe
        limits = np.zeros((len(u.symbols), len(u.venues), len(u.venues), LIMIT_COLS))
        for s, symbol in enumerate(u.symbols):
            for a, buy_venue in enumerate(u.venues):
                for b, sell_venue in enumerate(u.venues):
                    buy, sell = markets.spec(buy_venue, symbol), markets.spec(sell_venue, symbol)
                    limits[s, a, b] = PairLimits(
                        fee_buy=buy.taker_fee,
                        fee_sell=sell.taker_fee,
                        lot_buy=buy.lot,
                        lot_sell=sell.lot,
                        min_amount_buy=buy.min_amount,
                        min_amount_sell=sell.min_amount,
                        min_notional_buy=buy.min_notional,
                        min_notional_sell=sell.min_notional,
                        max_notional=config.risk.max_order_notional,
                        quote_balance_buy=math.inf,
                        base_balance_sell=math.inf,
                        tick_buy=buy.tick,
                        tick_sell=sell.tick,
                        tick_scale_buy=10.0 ** step_decimals(buy.tick),
                        tick_scale_sell=10.0 ** step_decimals(sell.tick),
                        slippage_bps=config.execution.slippage_bps,
                        skew_per_unit=config.skew_per_unit(symbol.split("/")[0]),
                    )
        return limits

    def warm_up(self) -> None:
        """Compile (or load from numba's cache) every kernel now, not on the first batch: the
        row scan for one-row and longer batches (their columns are different array types),
        on scratch books, so the detector's own are untouched."""
        scratch = kernels.Books(*(np.zeros((1, *b.shape[1:]), b.dtype) for b in self._books))
        limits = np.zeros((1, *self._limits.shape[1:]))
        rows = np.zeros(2, self._row_dtype)
        for n in (1, 2):
            kernels.scan_rows(
                *kernels.row_columns(rows[:n]),
                *scratch,
                limits,
                0.0,
                0,
                0,
                0,
                False,
                0,
                self._out_ids,
                self._out_quotes,
            )
        kernels.walk(self.ask_px[0, 0], self.ask_qty[0, 0], 0, 0.0)
        kernels.floor_to_lots(1.0, 0.1, 0.01)
        books = (self.ask_px[0, 0], self.ask_qty[0, 0], 0, self.bid_px[0, 0], self.bid_qty[0, 0])
        kernels.fit_size(*books, 0, 0.0, self._limits[0, 0, 0].copy())
        if self._statarb is not None:
            self._tradable_now(0, 0)
            statarb.statarb_scan(
                np.zeros((0, 2), np.int64),
                np.ones(self.valid.shape),
                self.valid,
                self._sa_bufs,
                self._sa_accs,
                self._sa_open,
                1.0,
                0.0,
                1.0,
                self._sa_out,
            )

    def set_positions(self, positions: dict[str, dict[str, float]]) -> None:
        """Cap sizes by what each venue holds: starting balances plus `positions` (the balance
        changes risk has booked; a venue with no balances configured is not capped), and by
        each leg's room under `max_position`; price the imbalance against target."""
        for s, symbol in enumerate(self._universe.symbols):
            base, quote = symbol.split("/")
            max_pos = self._max_position.get(base, math.inf)
            for v, venue in enumerate(self._universe.venues):
                pos = positions.get(venue, {}).get(base, 0.0)
                self._limits[s, v, :, ROOM_BUY] = max(0.0, max_pos - pos)
                self._limits[s, :, v, ROOM_SELL] = max(0.0, max_pos + pos)
                self._limits[s, v, :, IMB_BUY] = pos - self._offset[(venue, base)]
                self._limits[s, :, v, IMB_SELL] = pos - self._offset[(venue, base)]
                start = self._start.get(venue) or {}
                moved = positions.get(venue, {})
                if not start:
                    quote_bal = base_bal = math.inf
                else:
                    quote_bal = start.get(quote, 0.0) + moved.get(quote, 0.0)
                    base_bal = start.get(base, 0.0) + moved.get(base, 0.0)
                self._limits[s, v, :, QUOTE_BALANCE_BUY] = max(0.0, quote_bal)
                self._limits[s, :, v, BASE_BALANCE_SELL] = max(0.0, base_bal)

    def on_batch(self, rows: np.ndarray) -> list[Opportunity]:
        """Take a batch of BookUpdate rows; return what they made tradable, in row order."""
        if len(rows) == 0:
            return []
        if rows.dtype != self._row_dtype:
            raise ValueError(
                f"on_batch: rows of dtype {rows.dtype} are not BookUpdate rows of depth "
                f"{self.bid_px.shape[2]} (feed.depth)"
            )
        now, wall = self._clock.monotonic_ns(), self._clock.time_ns()
        opportunities = []
        for start in range(0, len(rows), self._chunk_rows):
            opportunities += self._scan(rows[start : start + self._chunk_rows], start, now, wall)
        self.updates += len(rows)
        if self._statarb is not None:
            opportunities += self._revert(rows, now, wall)
        done = self._clock.monotonic_ns()
        # One sample per receipt, not per row: the rows a feed received at once wait alike,
        # and a per-row Python loop would cost more than the scan at 100k rows/s.
        self.tick_to_detect_ns.extend((done - np.unique(rows["ts_recv_mono_ns"])).tolist())
        return opportunities

    def _scan(self, rows: np.ndarray, start: int, now: int, wall: int) -> list[Opportunity]:
        """Write and quote a chunk of rows small enough that every quote fits the output."""
        found, scanned = kernels.scan_rows(
            *kernels.row_columns(rows),
            *self._books,
            self._limits,
            self._min_profit_bps,
            self._max_age_ns,
            now,
            wall,
            self._recorded_time,
            self._file_now,
            self._out_ids,
            self._out_quotes,
        )
        if found == kernels.ROW_OUTSIDE:
            row = rows[scanned]
            raise ValueError(
                f"on_batch: row {start + scanned} names symbol {row['symbol']} on venue "
                f"{row['venue']}, outside this detector's {self.valid.shape[0]} symbols x "
                f"{self.valid.shape[1]} venues"
            )
        if self._recorded_time:
            self._file_now = max(self._file_now, int(rows["ts_exchange_ns"].max()))
        self.rows_scanned += scanned
        return self._emit(found, now)

    def _tradable_now(self, now: int, wall: int) -> np.ndarray:
        """Which books are tradable at the end of the batch, by the scan's own rule."""
        kernels.tradable_mask(
            self.valid,
            self.ts_exchange,
            self.recv_mono,
            self._max_age_ns,
            now,
            wall,
            self._recorded_time,
            self._file_now,
            self._tradable,
        )
        return self._tradable

    def _revert(self, rows: np.ndarray, now: int, wall: int) -> list[Opportunity]:
        """Spread-reversion signals of this batch, sized and priced on the current books."""
        sa = self._statarb
        assert sa is not None
        books = np.stack([rows["symbol"], rows["venue"]], axis=1).astype(np.int64)
        updated = np.unique(books, axis=0)
        tradable = self._tradable_now(now, wall) & (self.n_bids > 0) & (self.n_asks > 0)
        mid = np.where(tradable, (self.bid_px[:, :, 0] + self.ask_px[:, :, 0]) / 2, 1.0)
        n = statarb.statarb_scan(
            updated,
            mid,
            tradable,
            self._sa_bufs,
            self._sa_accs,
            self._sa_open,
            sa.z_entry,
            sa.z_exit,
            sa.min_std_bps * 1e-4,
            self._sa_out,
        )
        out = []
        for k in range(n):
            s, a, b, action = (int(x) for x in self._sa_out[k, :4])
            buy, sell = statarb.legs(action, a, b)
            if abs(action) == 1:
                size = self._revert_size(s, buy, sell)
                kind = REVERT_OPEN
                if size > 0:
                    self._sa_size[(s, a, b)] = size
            else:
                size = min(self._sa_size.pop((s, a, b), 0.0), self._depth(s, buy, sell))
                kind = REVERT_CLOSE
            if size <= 0:
                continue
            opp = self._priced(s, buy, sell, size, now, kind)
            if opp is not None:
                out.append(opp)
        self.opportunities += len(out)
        return out

    def _revert_size(self, s: int, buy: int, sell: int) -> float:
        """The reversion size: within both books' depth, the notional limits (the order's
        and the strategy's) and inventory at the legs' limit prices, in both lots and both
        markets' minimums, as risk sizes it (`kernels.fit_size`); 0 if none fits."""
        sa = self._statarb
        assert sa is not None
        lim = self._limits[s, buy, sell].copy()
        lim[MAX_NOTIONAL] = min(lim[MAX_NOTIONAL], sa.max_notional)
        size = min(sa.max_notional / self.ask_px[s, buy, 0], self._depth(s, buy, sell))
        n_asks, n_bids = int(self.n_asks[s, buy]), int(self.n_bids[s, sell])
        return float(
            kernels.fit_size(
                self.ask_px[s, buy],
                self.ask_qty[s, buy],
                n_asks,
                self.bid_px[s, sell],
                self.bid_qty[s, sell],
                n_bids,
                size,
                lim,
            )[0]
        )

    def _depth(self, s: int, buy: int, sell: int) -> float:
        """What both books can take: the buy venue's asks and the sell venue's bids."""
        return float(
            min(
                np.nansum(self.ask_qty[s, buy, : self.n_asks[s, buy]]),
                np.nansum(self.bid_qty[s, sell, : self.n_bids[s, sell]]),
            )
        )

    def _priced(
        self, s: int, buy: int, sell: int, size: float, now: int, kind: str
    ) -> Opportunity | None:
        lim = self._limits[s, buy, sell]
        buy_worst, cost = kernels.walk(
            self.ask_px[s, buy], self.ask_qty[s, buy], int(self.n_asks[s, buy]), size
        )
        sell_worst, proceeds = kernels.walk(
            self.bid_px[s, sell], self.bid_qty[s, sell], int(self.n_bids[s, sell]), size
        )
        if cost <= 0 or proceeds <= 0:
            return None
        profit = proceeds * (1.0 - lim[FEE_SELL]) - cost * (1.0 + lim[FEE_BUY])
        self._counter += 1
        return Opportunity(
            opp_id=f"{self._prefix}{self._counter}",
            symbol=s,
            buy_venue=buy,
            sell_venue=sell,
            size=size,
            buy_worst=buy_worst,
            sell_worst=sell_worst,
            buy_avg=cost / size,
            sell_avg=proceeds / size,
            profit_quote=profit,
            edge_bps=profit / cost * 1e4,
            buy_ts_ns=int(self.ts_exchange[s, buy]),
            sell_ts_ns=int(self.ts_exchange[s, sell]),
            tick_mono_ns=int(max(self.recv_mono[s, buy], self.recv_mono[s, sell])),
            detect_mono_ns=now,
            kind=kind,
        )

    def _emit(self, found: int, now: int) -> list[Opportunity]:
        """Opportunities out of the kernel's buffers; `now` is the batch's clock (for the
        cooldown), the detection stamp is when they leave the scan."""
        out: list[Opportunity] = []
        if not found:
            return out
        emitted = self._clock.monotonic_ns()
        for k in range(found):
            s, buy, sell, buy_ts, sell_ts, tick = (int(x) for x in self._out_ids[k])
            if now - int(self._last_emit[s, buy, sell]) < self._cooldown_ns:
                self.suppressed += 1
                continue
            self._last_emit[s, buy, sell] = now
            q = self._out_quotes[k]
            self._counter += 1
            out.append(
                Opportunity(
                    opp_id=f"{self._prefix}{self._counter}",
                    symbol=s,
                    buy_venue=buy,
                    sell_venue=sell,
                    size=float(q[kernels.SIZE]),
                    buy_worst=float(q[kernels.BUY_WORST]),
                    sell_worst=float(q[kernels.SELL_WORST]),
                    buy_avg=float(q[kernels.BUY_AVG]),
                    sell_avg=float(q[kernels.SELL_AVG]),
                    profit_quote=float(q[kernels.PROFIT]),
                    edge_bps=float(q[kernels.EDGE_BPS]),
                    buy_ts_ns=buy_ts,
                    sell_ts_ns=sell_ts,
                    tick_mono_ns=tick,
                    detect_mono_ns=emitted,
                )
            )
        self.opportunities += len(out)
        return out

"""DetectorCore: the latest book of every (symbol, venue) of a shard, and what crosses.

On each tradable update of (symbol s, venue v) it quotes v against every other venue's latest
tradable book of s, both directions. A book is tradable while its last update passed the
feed's checks and is younger than `max_book_age_ms` (on the host's clock; in a replay, in
recorded time, measured from the newest recorded timestamp the detector has seen). A
(symbol, buy, sell) pair that was just emitted is held back for `cooldown_ms`, so one
dislocation seen over several ticks is not sent to risk once per tick.
"""

from __future__ import annotations

import numpy as np

from hft_ray.clock import Clock
from hft_ray.config import HftConfig
from hft_ray.detect.reference import PairLimits, cross_venue_quote
from hft_ray.markets import Markets
from hft_ray.types import BOOK_VALID, Opportunity, Universe


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
        self._depth = depth
        self.bid_px = np.full((n_sym, n_ven, depth), np.nan)
        self.bid_qty = np.full((n_sym, n_ven, depth), np.nan)
        self.ask_px = np.full((n_sym, n_ven, depth), np.nan)
        self.ask_qty = np.full((n_sym, n_ven, depth), np.nan)
        self.n_bids = np.zeros((n_sym, n_ven), np.int64)
        self.n_asks = np.zeros((n_sym, n_ven), np.int64)
        self.valid = np.zeros((n_sym, n_ven), np.bool_)
        self.ts_exchange = np.zeros((n_sym, n_ven), np.int64)
        self.recv_mono = np.zeros((n_sym, n_ven), np.int64)
        self._max_age_ns = int(config.feed.max_book_age_ms * 1e6)
        # A replay runs faster or slower than it was recorded: books age in recorded time.
        self._recorded_time = config.replay is not None
        self._file_now = 0
        self._cooldown_ns = int(config.detector.cooldown_ms * 1e6)
        self._last_emit = np.full((n_sym, n_ven, n_ven), -(2**62), np.int64)
        self._min_profit_bps = config.detector.min_profit_bps
        self._limits = {
            (s, a, b): self._pair_limits(config, universe, markets, s, a, b)
            for s in range(n_sym)
            for a in range(n_ven)
            for b in range(n_ven)
            if a != b
        }
        self.updates = 0
        self.opportunities = 0
        self.suppressed = 0
        self.tick_to_detect_ns: list[int] = []

    @staticmethod
    def _pair_limits(
        config: HftConfig, universe: Universe, markets: Markets, s: int, a: int, b: int
    ) -> PairLimits:
        symbol = universe.symbols[s]
        buy = markets.spec(universe.venues[a], symbol)
        sell = markets.spec(universe.venues[b], symbol)
        return PairLimits(
            fee_buy=buy.taker_fee,
            fee_sell=sell.taker_fee,
            lot_buy=buy.lot,
            lot_sell=sell.lot,
            min_amount_buy=buy.min_amount,
            min_amount_sell=sell.min_amount,
            min_notional_buy=buy.min_notional,
            min_notional_sell=sell.min_notional,
            max_notional=config.risk.max_order_notional,
            quote_balance_buy=float("inf"),
            base_balance_sell=float("inf"),
        )

    def on_batch(self, rows: np.ndarray) -> list[Opportunity]:
        """Take a batch of BookUpdate rows; return what they made tradable."""
        for row in rows:
            s, v = int(row["symbol"]), int(row["venue"])
            nb, na = int(row["n_bids"]), int(row["n_asks"])
            self.bid_px[s, v], self.bid_qty[s, v] = row["bid_px"], row["bid_qty"]
            self.ask_px[s, v], self.ask_qty[s, v] = row["ask_px"], row["ask_qty"]
            self.n_bids[s, v], self.n_asks[s, v] = nb, na
            self.valid[s, v] = bool(row["flags"] & BOOK_VALID)
            self.ts_exchange[s, v] = row["ts_exchange_ns"]
            self.recv_mono[s, v] = row["ts_recv_mono_ns"]
        found: list[Opportunity] = []
        if self._recorded_time:
            self._file_now = max(self._file_now, int(rows["ts_exchange_ns"].max(initial=0)))
        now = self._clock.monotonic_ns()
        for row in rows:
            s, v = int(row["symbol"]), int(row["venue"])
            self.updates += 1
            if self._tradable(s, v, now):
                found.extend(self._scan(s, v, now))
            self.tick_to_detect_ns.append(self._clock.monotonic_ns() - int(row["ts_recv_mono_ns"]))
        return found

    def _tradable(self, s: int, v: int, now: int) -> bool:
        if self._recorded_time:
            age = self._file_now - int(self.ts_exchange[s, v])
        else:
            # The older of: since we received it, and since the venue stamped it (a feed
            # catching up hands over books that are old though just received).
            received = now - int(self.recv_mono[s, v])
            age = max(received, self._clock.time_ns() - int(self.ts_exchange[s, v]))
        return bool(self.valid[s, v]) and age <= self._max_age_ns

    def _scan(self, s: int, v: int, now: int) -> list[Opportunity]:
        out = []
        for w in range(len(self._universe.venues)):
            if w == v or not self._tradable(s, w, now):
                continue
            for buy, sell in ((v, w), (w, v)):
                opp = self._quote(s, buy, sell, now)
                if opp is not None:
                    out.append(opp)
        return out

    def _levels(self, px: np.ndarray, qty: np.ndarray, n: int) -> list[tuple[float, float]]:
        return list(zip(px[:n].tolist(), qty[:n].tolist(), strict=True))

    def _quote(self, s: int, buy: int, sell: int, now: int) -> Opportunity | None:
        asks = self._levels(self.ask_px[s, buy], self.ask_qty[s, buy], int(self.n_asks[s, buy]))
        bids = self._levels(self.bid_px[s, sell], self.bid_qty[s, sell], int(self.n_bids[s, sell]))
        if not asks or not bids or bids[0][0] <= asks[0][0]:
            return None
        q = cross_venue_quote(asks, bids, self._limits[(s, buy, sell)], self._min_profit_bps)
        if q is None:
            return None
        if now - int(self._last_emit[s, buy, sell]) < self._cooldown_ns:
            self.suppressed += 1
            return None
        self._last_emit[s, buy, sell] = now
        self._counter += 1
        self.opportunities += 1
        return Opportunity(
            opp_id=f"{self._prefix}{self._counter}",
            symbol=s,
            buy_venue=buy,
            sell_venue=sell,
            size=q.size,
            buy_worst=q.buy_worst,
            sell_worst=q.sell_worst,
            buy_avg=q.buy_avg,
            sell_avg=q.sell_avg,
            profit_quote=q.profit_quote,
            edge_bps=q.edge_bps,
            buy_ts_ns=int(self.ts_exchange[s, buy]),
            sell_ts_ns=int(self.ts_exchange[s, sell]),
            tick_mono_ns=int(max(self.recv_mono[s, buy], self.recv_mono[s, sell])),
            detect_mono_ns=self._clock.monotonic_ns(),
        )

"""Positions and PnL from fills: one code path for the risk actor and the journal rebuild.

Positions are balance changes per venue and asset since the start of the run. Realized PnL
nets every venue's trades in a symbol into one position and books the difference by average
cost, so a bought-here, sold-there arbitrage realizes its spread the moment both legs fill;
fees are charged in quote and subtracted as they occur.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from hft_ray.journal import Fill, JournalRecord


class Ledger:
    def __init__(self) -> None:
        self.positions: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.fees_quote = 0.0
        self.trading_pnl_quote = 0.0
        self.fills = 0
        self._net: dict[str, tuple[float, float]] = {}  # symbol -> (qty, average cost)
        # Client order ids already booked: a fill reported twice (by an executor and by the
        # journal replay after a restart) is booked once.
        self._booked: set[str] = set()

    def apply_fill(
        self,
        venue: str,
        symbol: str,
        side: str,
        filled: float,
        price: float,
        fee_quote: float,
        client_id: str = "",
        fee_base: float = 0.0,
    ) -> None:
        """Book one order's fill. `fee_quote` values every fee in quote; `fee_base` is the part
        the venue took in the base asset, which leaves the base balance instead of quote."""
        if filled <= 0 or (client_id and client_id in self._booked):
            return
        if client_id:
            self._booked.add(client_id)
        base, quote = symbol.split("/")
        signed = filled if side == "buy" else -filled
        pos = self.positions[venue]
        pos[base] += signed - fee_base
        pos[quote] -= signed * price + (fee_quote - fee_base * price)
        self.fees_quote += fee_quote
        self.fills += 1
        # The base taken as fee was never held: the position nets what was received, at the
        # price paid, and the fee is charged once, in fees_quote.
        self._book_net(symbol, signed - fee_base, price)

    def _book_net(self, symbol: str, signed: float, price: float) -> None:
        qty, avg = self._net.get(symbol, (0.0, 0.0))
        if qty == 0 or (qty > 0) == (signed > 0):
            new_qty = qty + signed
            self._net[symbol] = (new_qty, (qty * avg + signed * price) / new_qty)
            return
        closed = min(abs(qty), abs(signed))
        direction = 1.0 if qty > 0 else -1.0
        self.trading_pnl_quote += closed * (price - avg) * direction
        new_qty = qty + signed
        if abs(new_qty) < 1e-12:
            self._net[symbol] = (0.0, 0.0)
        elif (new_qty > 0) == (qty > 0):
            self._net[symbol] = (new_qty, avg)
        else:
            self._net[symbol] = (new_qty, price)

    @property
    def realized_pnl_quote(self) -> float:
        """Realized trading PnL net of every fee paid."""
        return self.trading_pnl_quote - self.fees_quote

    def net_position(self, symbol: str) -> float:
        return self._net.get(symbol, (0.0, 0.0))[0]

    def position(self, venue: str, asset: str) -> float:
        return self.positions.get(venue, {}).get(asset, 0.0)

    def snapshot(self) -> dict[str, Any]:
        return {
            "positions": {v: dict(assets) for v, assets in self.positions.items()},
            "fees_quote": self.fees_quote,
            "realized_pnl_quote": self.realized_pnl_quote,
            "fills": self.fills,
            "net": {s: list(v) for s, v in self._net.items()},
        }

    def forget(self, client_order_id_prefixes: Iterable[str]) -> None:
        """Stop remembering the fills of these trades (client ids are the trade's id plus one
        letter): they can no longer arrive twice."""
        gone = set(client_order_id_prefixes)
        if gone:
            self._booked = {c for c in self._booked if c[:-1] not in gone}

    def state(self) -> dict[str, Any]:
        """Everything needed to continue after a restart (see `from_state`)."""
        return {
            "positions": {v: dict(assets) for v, assets in self.positions.items()},
            "fees_quote": self.fees_quote,
            "trading_pnl_quote": self.trading_pnl_quote,
            "fills": self.fills,
            "net": {s: list(v) for s, v in self._net.items()},
            "booked": sorted(self._booked),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Ledger:
        ledger = cls()
        for venue, assets in state["positions"].items():
            ledger.positions[venue].update(assets)
        ledger.fees_quote = float(state["fees_quote"])
        ledger.trading_pnl_quote = float(state["trading_pnl_quote"])
        ledger.fills = int(state["fills"])
        ledger._net = {s: (float(q), float(a)) for s, (q, a) in state["net"].items()}
        ledger._booked = set(state["booked"])
        return ledger

    @classmethod
    def from_journal(cls, records: Iterable[JournalRecord]) -> Ledger:
        """Rebuild from the journal's fill records alone."""
        ledger = cls()
        for r in records:
            if isinstance(r, Fill):
                ledger.apply_fill(
                    r.venue,
                    r.symbol,
                    r.side,
                    r.filled,
                    r.price,
                    r.fee_quote,
                    r.client_id,
                    r.fee_base,
                )
        return ledger


def positions_equal(
    a: dict[str, dict[str, float]], b: dict[str, dict[str, float]], tol: float = 1e-6
) -> bool:
    """Whether two per-venue, per-asset position maps agree (missing entries count as zero)."""
    for venue in set(a) | set(b):
        for asset in set(a.get(venue, {})) | set(b.get(venue, {})):
            x, y = a.get(venue, {}).get(asset, 0.0), b.get(venue, {}).get(asset, 0.0)
            if abs(x - y) > tol * max(1.0, abs(x), abs(y)):
                return False
    return True

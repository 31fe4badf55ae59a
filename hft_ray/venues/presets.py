"""Fees and market precision of the venues the simulator imitates.

Figures are ccxt's unified market structure for the spot markets (`precision.price` as tick,
`precision.amount` as lot, `limits.amount.min`, `limits.cost.min`, `taker`), taken from ccxt's
static test markets (ccxt/ccxt `ts/src/test/static/markets/<id>.json`). A live venue loads the
same fields from `load_markets` instead.
"""

from __future__ import annotations

from hft_ray.venues.base import MarketSpec


def _spec(
    symbol: str, tick: float, lot: float, min_amount: float, min_notional: float, taker: float
) -> MarketSpec:
    base, quote = symbol.split("/")
    return MarketSpec(symbol, base, quote, tick, lot, min_amount, min_notional, taker)


SIM_PRESETS: dict[str, dict[str, MarketSpec]] = {
    "binance": {
        "BTC/USDT": _spec("BTC/USDT", 0.01, 0.00001, 0.00001, 5.0, 0.001),
        "ETH/USDT": _spec("ETH/USDT", 0.01, 0.0001, 0.0001, 5.0, 0.001),
        "SOL/USDT": _spec("SOL/USDT", 0.01, 0.001, 0.001, 5.0, 0.001),
    },
    "okx": {
        "BTC/USDT": _spec("BTC/USDT", 0.1, 0.00000001, 0.00001, 0.0, 0.001),
        "ETH/USDT": _spec("ETH/USDT", 0.01, 0.000001, 0.0001, 0.0, 0.001),
        "SOL/USDT": _spec("SOL/USDT", 0.01, 0.000001, 0.001, 0.0, 0.001),
    },
    "gateio": {
        "BTC/USDT": _spec("BTC/USDT", 0.1, 0.000001, 0.000001, 3.0, 0.002),
        "ETH/USDT": _spec("ETH/USDT", 0.01, 0.0001, 0.0001, 3.0, 0.002),
        "SOL/USDT": _spec("SOL/USDT", 0.01, 0.001, 0.001, 3.0, 0.002),
    },
}

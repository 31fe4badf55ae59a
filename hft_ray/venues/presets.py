"""Fees and market precision of the venues the simulator imitates.

BTC/USDT and ETH/USDT are ccxt's unified market structure for the spot markets
(`precision.price` as tick, `precision.amount` as lot, `limits.amount.min`, `limits.cost.min`,
`taker`), from ccxt's static test markets (ccxt/ccxt `ts/src/test/static/markets/`:
binance.json @0dca8ac0, okx.json @3802e1a2, gate.json @200815e5; Binance's file states
precision in decimal places, converted here to step sizes as its `info.filters` confirm).
Those files hold no SOL/USDT; its figures follow each venue's pattern for a coin of that price
(Binance filter tickSize 0.01 / stepSize 0.001, OKX lotSz 1e-6, Gate amount precision 3).

Taker fees are ccxt's base-tier figures for each exchange (`exchange.fees['trading']`):
binance 0.10 %, okx 0.15 %, gate 0.20 %. An account's real tier is usually lower: set
`venues.<name>.taker_fee` to it. A live venue loads all of this from `load_markets`.
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
        "BTC/USDT": _spec("BTC/USDT", 0.1, 0.00000001, 0.00001, 0.0, 0.0015),
        "ETH/USDT": _spec("ETH/USDT", 0.01, 0.000001, 0.0001, 0.0, 0.0015),
        "SOL/USDT": _spec("SOL/USDT", 0.01, 0.000001, 0.001, 0.0, 0.0015),
    },
    "gateio": {
        "BTC/USDT": _spec("BTC/USDT", 0.1, 0.000001, 0.000001, 3.0, 0.002),
        "ETH/USDT": _spec("ETH/USDT", 0.01, 0.0001, 0.001, 3.0, 0.002),
        "SOL/USDT": _spec("SOL/USDT", 0.01, 0.001, 0.001, 3.0, 0.002),
    },
}

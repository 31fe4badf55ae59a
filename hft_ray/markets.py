"""The markets of a run: fees, precision and limits of every (venue, symbol).

Resolved once, by the driver, before any actor starts: simulated venues from their presets,
live venues from ccxt's `load_markets`, each with the config's overrides on top. Actors receive
the result and never fetch markets themselves (a restart must not depend on the network).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from hft_ray.config import CcxtVenueConfig, HftConfig
from hft_ray.venues.base import MarketSpec


class Markets:
    def __init__(self, specs: Mapping[tuple[str, str], MarketSpec]) -> None:
        self._specs = dict(specs)

    def spec(self, venue: str, symbol: str) -> MarketSpec:
        try:
            return self._specs[(venue, symbol)]
        except KeyError:
            raise KeyError(f"no market {symbol} on {venue}") from None

    def items(self) -> list[tuple[tuple[str, str], MarketSpec]]:
        return list(self._specs.items())


def leg_limit_prices(
    buy: MarketSpec, sell: MarketSpec, buy_worst: float, sell_worst: float, slippage_bps: float
) -> tuple[float, float]:
    """The IOC limit prices of an arbitrage's two legs: the detected worst prices widened by
    `slippage_bps` and rounded outward to each market's tick. Risk reserves inventory at
    these same prices, so a venue never refuses a leg for funds risk thought were there."""
    slip = slippage_bps * 1e-4
    return buy.ceil_price(buy_worst * (1.0 + slip)), sell.floor_price(sell_worst * (1.0 - slip))


def simulated_markets(config: HftConfig) -> Markets:
    """Markets of a config whose venues are all simulated (no network)."""
    live = [n for n, v in config.venues.items() if isinstance(v, CcxtVenueConfig)]
    if live:
        raise ValueError(f"venues {live} are live: use resolve_markets")
    return Markets(
        {(v, s): config.market_spec(v, s) for v in config.venues for s in config.symbols}
    )


def resolve_markets(config: HftConfig) -> Markets:
    """Every venue's markets; live venues are asked through ccxt (network; ccxt is imported
    only then)."""
    specs: dict[tuple[str, str], MarketSpec] = {}
    for venue, cfg in config.venues.items():
        loaded: dict[str, MarketSpec] = {}
        if isinstance(cfg, CcxtVenueConfig):
            from hft_ray.venues.ccxt_live import load_ccxt_markets

            loaded = asyncio.run(load_ccxt_markets(venue, cfg, config.symbols))
        for symbol in config.symbols:
            specs[(venue, symbol)] = config.market_spec(venue, symbol, loaded.get(symbol))
    return Markets(specs)

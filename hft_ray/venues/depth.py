"""The depth hft_ray asks of ccxt.pro's `watch_order_book` when a venue sets none.

The `limit` is more than the levels ccxt hands back: ccxt keeps at most that many levels of
the book it builds (`order_book({}, limit)`, cut back by `limit()` on every watch), and where
a REST snapshot starts the book, it is the snapshot's depth too. A level cut off is forgotten:
when the levels above it go, ccxt's book is short, or skips a level the venue still has, until
a diff touches that price again. So each book is kept as deep as the venue's snapshot goes, as
each venue documents it, and, where ccxt's code maps a limit to a channel, at a limit it maps;
where the venue keeps the top N itself, at the N that pushes fastest and covers the feed.

ccxt 4.5.90, by exchange id and market type (ccxt's `market['type']`):

- binance spot and margin: 5000. GET /api/v3/depth takes limit up to 5000 (weight 250 at
  1001-5000, a resync costs that much of the 6000/min budget); ccxt's own default is 1000
  (`options['watchOrderBookLimit']`), the REST snapshot and the kept book alike
  (ccxt/pro/binance.py `fetch_order_book_snapshot`, `handle_order_book_subscription`).
- binance / binanceusdm / binancecoinm swap and future: 1000, the deepest of
  /fapi/v1/depth and /dapi/v1/depth (5, 10, 20, 50, 100, 500, 1000).
- okx: 400, the public 'books' channel's snapshot (ccxt maps 400 to 'books'; 'books-l2-tbt'
  needs VIP status).
- kraken: 1000, the deepest book subscription (10, 25, 100, 500, 1000; ccxt's default is 10,
  and it raises on any other value). Kraken sends no delete for a level pushed past the
  subscribed depth, so ccxt's truncation to it is the venue's own rule.
- gate spot: 400 (ccxt subscribes 'spot.obu' as ob.<pair>.400; any other limit gets the
  50-level channel); swap and future: 100, option: 50 (order_book_update's deepest, per ccxt).
- bybit spot, swap and future: 50; option: 100 (topic orderbook.<depth>.<symbol>; ccxt
  raises on a depth Bybit does not list). Bybit keeps each topic's top N itself (a level
  entering it is sent), so any depth is right to its end; deeper topics push less often
  (1000 levels every 200 ms, 50 every 20 ms), and 50 covers the feed's default 20 levels.
- kucoin, coinbase, deribit: None, which ccxt keeps unbounded. Coinbase's level2 snapshot and
  Deribit's `book` channel carry the whole book. KuCoin's REST snapshot is the whole book with
  API keys and 100 levels without (a limit, which ccxt takes only as 5, 20, 50 or 100, would
  cap the kept book too).

An exchange or market type not listed gets None, ccxt's default: a limit the venue does not
accept fails every watch (Kraken and Bybit raise on one), while ccxt's default always works.
"""

from __future__ import annotations

from typing import Any

#: exchange id -> market type -> depth ("*": any type not listed).
WATCH_DEPTHS: dict[str, dict[str, int | None]] = {
    "binance": {"spot": 5000, "margin": 5000, "swap": 1000, "future": 1000},
    "binanceusdm": {"swap": 1000, "future": 1000},
    "binancecoinm": {"swap": 1000, "future": 1000},
    "okx": {"*": 400},
    "kraken": {"spot": 1000},
    "gate": {"spot": 400, "swap": 100, "future": 100, "option": 50},
    "bybit": {"spot": 50, "swap": 50, "future": 50, "option": 100},
    "kucoin": {"*": None},
    "coinbase": {"*": None},
    "deribit": {"*": None},
}


def default_watch_depth(exchange_id: str, market_type: str | None) -> int | None:
    """The table's depth for one exchange and market type; None (ccxt's default) if unlisted."""
    depths = WATCH_DEPTHS.get(exchange_id, {})
    return depths.get(market_type or "*", depths.get("*"))


def watch_depth(exchange: Any, symbol: str, configured: int | None) -> int | None:
    """The `limit` to pass to `exchange.watch_order_book(symbol)`: the venue's configured
    `watch_depth` if set, else the table's for the exchange and the symbol's market type."""
    if configured is not None:
        return configured
    market = (getattr(exchange, "markets", None) or {}).get(symbol) or {}
    return default_watch_depth(exchange.id, market.get("type"))

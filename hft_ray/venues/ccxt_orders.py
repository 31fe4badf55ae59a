"""Live orders through ccxt's unified API, answered the way the simulated venue answers them.

Every order is an IOC limit with the executor's client order id, passed as ccxt's unified
`clientOrderId` and `timeInForce: 'IOC'` params, which each exchange class maps to its own
fields (Binance `newClientOrderId` / `timeInForce=IOC`, OKX `clOrdId` / `ordType=ioc`); lookups
and cancels go by client id too (Binance `origClientOrderId`, OKX `clOrdId`), with ccxt's order
id argument left empty. Every request draws from the venue's shared REST budget
(`hft_ray.venues.rate_budget`, kept in the store), which replaces ccxt's per-instance throttle.

The executor (`ExecutorCore`) must not be able to tell this venue from a simulated one:

- `create_order` never raises for anything the venue or the network did; it returns the order's
  final state. A venue that acknowledges without a fill report (OKX) is asked once more by
  client id; an IOC order a venue still reports open is cancelled, and its final state returned.
- A refusal is `rejected` with a short reason: `insufficient_funds`, `rate_limited` (HTTP
  429/418), `invalid_order`, `bad_request`, `auth_error`, `invalid_nonce`, `venue_error`.
- A request whose outcome the venue never told (timeout, dropped connection) is `unknown`: the
  order may be live. A lookup by client id settles it.
- A lookup of an order the venue does not know answers exactly as `SimVenueClient.fetch_order`
  does: status `unknown`, reason `order_not_found`.

Fees are converted to the quote currency (a fee in the base currency at the fill price). Where
the venue's answer carries no fee (Binance's order query has no commissions) or charges it in a
third currency, the fee is the filled notional at the market's taker rate.

Error messages from ccxt may quote URLs and response bodies; none of them reaches a result or a
log line here, only the error's class name.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

from ccxt.base.errors import (
    AuthenticationError,
    BadRequest,
    BaseError,
    DDoSProtection,
    InsufficientFunds,
    InvalidNonce,
    InvalidOrder,
    OperationFailed,
    OrderNotFound,
    PermissionDenied,
    RateLimitExceeded,
    RequestTimeout,
)

from hft_ray.clock import Clock, LiveClock
from hft_ray.config import CcxtVenueConfig, ConfigError, HftConfig
from hft_ray.types import OrderResult, OrderStatus, Side
from hft_ray.venues.base import ORDER_NOT_FOUND
from hft_ray.venues.ccxt_live import make_exchange

_log = logging.getLogger(__name__)

#: The reason of an IOC order whose remainder expired (as the simulated venue says it).
IOC_REMAINDER_EXPIRED = "ioc_remainder_expired"
#: The reason of an order a venue still reports open after it was asked to cancel it.
STILL_OPEN = "still_open"

_FINAL = frozenset({"closed", "canceled", "expired", "rejected"})


def order_outcome(err: BaseError) -> tuple[OrderStatus, str]:
    """What a ccxt error raised while placing an order says about the order.

    Order matters: ccxt's rate-limit and nonce errors are `NetworkError`s, yet the venue
    answered them and placed nothing; only an unanswered request leaves the order unknown.
    """
    if isinstance(err, InsufficientFunds):
        return "rejected", "insufficient_funds"
    if isinstance(err, RateLimitExceeded | DDoSProtection):
        return "rejected", "rate_limited"
    if isinstance(err, AuthenticationError | PermissionDenied):
        return "rejected", "auth_error"
    if isinstance(err, InvalidNonce):
        return "rejected", "invalid_nonce"
    if isinstance(err, InvalidOrder):
        return "rejected", "invalid_order"
    if isinstance(err, BadRequest):
        return "rejected", "bad_request"
    if isinstance(err, RequestTimeout):
        return "unknown", "request_timeout"
    if isinstance(err, OperationFailed):  # network errors, and "unknown error" answers
        return "unknown", "network_error"
    return "rejected", "venue_error"


#: Set by `create_order` for its request: `fetch` notes when the request really leaves.
_SENT: ContextVar[list[int] | None] = ContextVar("hft_ray_order_sent", default=None)


class CcxtOrderVenue:
    """The `OrderVenue` of one live exchange: a ccxt async exchange object and a clock.

    An order's `sent_mono_ns` is when ccxt hands its HTTP request to the connection (after
    signing and its rate limiter's wait), noted by a wrapper around the exchange's `fetch`.
    """

    def __init__(self, name: str, exchange: Any, clock: Clock) -> None:
        self.name = name
        self.exchange = exchange
        self._clock = clock
        fetch = exchange.fetch

        async def noted_fetch(*args: Any, **kwargs: Any) -> Any:
            sent = _SENT.get()
            if sent is not None and not sent:
                sent.append(clock.monotonic_ns())
            return await fetch(*args, **kwargs)

        exchange.fetch = noted_fetch

    async def start(self) -> None:
        """Load the exchange's markets, so that the first order does not wait for them."""
        await self.exchange.load_markets()

    async def close(self) -> None:
        await self.exchange.close()

    async def create_order(
        self, client_id: str, symbol: str, side: Side, amount: float, price: float
    ) -> OrderResult:
        """Place an IOC limit order; return its final state, a refusal, or `unknown`."""
        try:
            await self.exchange.load_markets()
        except BaseError as err:  # nothing was sent: a refusal, whatever the cause
            self._warn("load_markets", client_id, err)
            status, reason = order_outcome(err)
            reason = reason if status == "rejected" else "markets_unavailable"
            return self._bare(client_id, symbol, side, amount, "rejected", reason)
        sent: list[int] = []
        try:
            # The executor has rounded to tick and lot already; this only formats.
            qty = float(self.exchange.amount_to_precision(symbol, amount))
            px = float(self.exchange.price_to_precision(symbol, price))
            params = {"clientOrderId": client_id, "timeInForce": "IOC"}
            token = _SENT.set(sent)
            try:
                order = await self.exchange.create_order(symbol, "limit", side, qty, px, params)
            finally:
                _SENT.reset(token)
        except BaseError as err:
            self._warn("create_order", client_id, err)
            status, reason = order_outcome(err)
            result = self._bare(client_id, symbol, side, amount, status, reason)
            return result._replace(sent_mono_ns=sent[0] if sent else 0)
        if order.get("status") in _FINAL:
            result = self._result(order, client_id, symbol, side, amount)
        else:
            result = await self.fetch_order(client_id, symbol)
        return result._replace(sent_mono_ns=sent[0] if sent else 0)

    async def fetch_order(self, client_id: str, symbol: str) -> OrderResult:
        """The final state of an order by client id; an order still open is cancelled first."""
        order = await self._fetch(client_id, symbol)
        if isinstance(order, OrderResult):
            return order
        if order.get("status") == "open":
            return await self.cancel_order(client_id, symbol)
        return self._result(order, client_id, symbol)

    async def cancel_order(self, client_id: str, symbol: str) -> OrderResult:
        """Cancel what is left of an order and return its final state. An order that is
        already final (every IOC order, normally) is simply looked up."""
        try:
            order = await self.exchange.cancel_order("", symbol, {"clientOrderId": client_id})
        except OrderNotFound:  # done already, or never placed: the lookup tells which
            order = None
        except BaseError as err:
            self._warn("cancel_order", client_id, err)
            return self._bare(client_id, symbol, "buy", 0.0, "unknown", order_outcome(err)[1])
        if order is None or order.get("status") not in _FINAL:
            fetched = await self._fetch(client_id, symbol)
            if isinstance(fetched, OrderResult):
                return fetched
            order = fetched
        return self._result(order, client_id, symbol)

    async def _fetch(self, client_id: str, symbol: str) -> dict[str, Any] | OrderResult:
        """ccxt's unified order, or the `unknown` result that stands for it."""
        try:
            order: dict[str, Any] = await self.exchange.fetch_order(
                "", symbol, {"clientOrderId": client_id}
            )
            return order
        except OrderNotFound:
            return self._bare(client_id, symbol, "buy", 0.0, "unknown", ORDER_NOT_FOUND)
        except BaseError as err:
            self._warn("fetch_order", client_id, err)
            return self._bare(client_id, symbol, "buy", 0.0, "unknown", order_outcome(err)[1])

    def _result(
        self,
        order: dict[str, Any],
        client_id: str,
        symbol: str,
        side: Side | None = None,
        amount: float | None = None,
    ) -> OrderResult:
        """ccxt's unified order as an `OrderResult`."""
        filled = float(order.get("filled") or 0.0)
        size = float(order.get("amount") or amount or 0.0)
        avg = float(order.get("average") or 0.0)
        if filled > 0 and avg <= 0:
            cost = float(order.get("cost") or 0.0)
            avg = cost / filled if cost > 0 else float(order.get("price") or 0.0)
        state = order.get("status")
        status: OrderStatus
        if state == "rejected":
            status, reason = "rejected", "venue_reject"
        elif state == "open":
            status, reason = "unknown", STILL_OPEN
        elif size > 0 and filled >= size * (1 - 1e-9):
            status, reason = "filled", ""
        elif state in _FINAL:
            status, reason = ("partial" if filled > 0 else "expired"), IOC_REMAINDER_EXPIRED
        else:
            status, reason = "unknown", "no_status"
        stamp = order.get("lastUpdateTimestamp") or order.get("timestamp")
        fee_quote, fee_base = self._fees(order, symbol, filled, avg)
        return OrderResult(
            client_id,
            self.name,
            symbol,
            order.get("side") or side or "buy",
            status,
            size,
            filled,
            avg if filled > 0 else 0.0,
            fee_quote,
            reason,
            int(stamp) * 1_000_000 if stamp else self._clock.time_ns(),
            fee_base,
        )

    def _fees(
        self, order: dict[str, Any], symbol: str, filled: float, avg: float
    ) -> tuple[float, float]:
        """The order's fees valued in quote, and the part of them taken in the base asset."""
        market = self.exchange.market(symbol)
        fees = order.get("fees") or ([order["fee"]] if order.get("fee") else [])
        told = [f for f in fees if f.get("cost") is not None]
        if not told or any(
            f.get("currency") not in (market["base"], market["quote"]) for f in told
        ):
            return filled * avg * float(market.get("taker") or 0.0), 0.0
        in_base = sum(float(f["cost"]) for f in told if f["currency"] == market["base"])
        in_quote = sum(float(f["cost"]) for f in told if f["currency"] == market["quote"])
        return in_quote + in_base * avg, in_base

    def _bare(
        self,
        client_id: str,
        symbol: str,
        side: Side,
        amount: float,
        status: OrderStatus,
        reason: str,
    ) -> OrderResult:
        """A result with nothing filled."""
        return OrderResult(
            client_id,
            self.name,
            symbol,
            side,
            status,
            amount,
            0.0,
            0.0,
            0.0,
            reason,
            self._clock.time_ns(),
        )

    def _warn(self, what: str, client_id: str, err: BaseError) -> None:
        # The class name only: ccxt's messages can carry request URLs and response bodies.
        _log.warning("%s %s %s: %s", self.name, what, client_id, type(err).__name__)


def order_venue_for(config: HftConfig, venue: str) -> CcxtOrderVenue:
    """The order venue of a live venue in `config`; its API keys come from the environment.

    ccxt's own request timeout is set well past the executor's ack timeouts: the executor then
    gives up first and looks the order up by client id, as it does with a simulated venue.
    """
    cfg = config.venues.get(venue)
    if not isinstance(cfg, CcxtVenueConfig):
        raise ConfigError(f"venues.{venue}: not a ccxt venue")
    exchange = make_exchange(venue, cfg, config.store)
    execution = config.execution
    ack_ms = max(execution.order_timeout_ms, execution.unwind_timeout_ms)
    exchange.timeout = max(int(exchange.timeout), int(2 * ack_ms))
    return CcxtOrderVenue(venue, exchange, LiveClock())

"""One REST rate-limit budget per (exchange, API key), shared by every process that uses it.

Venues limit a key (and an IP) however many processes hold it: two executors and a feed each
pacing themselves with ccxt's per-instance throttler would together send three times what the
venue allows, and a ban is then one process away. So every REST call of a ccxt exchange made
by `make_exchange` draws from one token bucket: ccxt's `fetch2` calls `exchange.throttle(cost)`
before every request (orders, lookups, `load_markets`, and the snapshot `watch_order_book`
fetches through `fetch_rest_order_book_safe` -> `fetch_order_book`), with `cost` the endpoint's
weight from ccxt's `api` definitions (`calculate_rate_limiter_cost`); `attach` replaces that
method. Websocket messages keep ccxt's own per-connection throttle.

The bucket refills at `rate` cost units per second up to `burst`. A request goes once the bucket
holds `min(cost, burst)` and then takes its whole cost, possibly into debt, as ccxt's leaky
bucket does (a snapshot of weight 50 with a burst of 1 is sent, and pays afterwards). A take
reserves: the bucket is debited at once and the caller told how long to wait for its turn, so
callers are served in the order they asked (first come, first served across processes; with
retries instead, a light request polling often would starve a heavy snapshot). Defaults
are ccxt's: `rate = 1000 / exchange.rateLimit`, `burst` its bucket capacity (1); a venue's
`rate_limit_per_s` / `rate_limit_burst` override them.

A 429 or 418 answer shrinks the budget for everyone: its rate halves (never below
`FLOOR_SHARE` of the configured rate) and nothing is granted until `Retry-After` (or
`DEFAULT_PAUSE_S`) has passed; it then climbs back linearly, to the full rate in `RECOVER_S`.
Answers that arrive while a pause is on extend it without halving again: a burst of in-flight
requests all refused is one episode.

Where the state lives: with `store.url` set, in Redis (one hash per budget, updated by an atomic
Lua script on Redis's clock, so processes on every node agree). Without it (the embedded file
store), in this process only: exchanges of one process share it, other processes do not; that
setup runs everything in one process anyway. If Redis cannot be reached nothing is sent: the
request fails with `BudgetUnavailable` (a `RateLimitExceeded`, so an order is a refusal).

A budget's key id is a short hash of the API key, or `public` for an exchange without one;
the key itself is never stored or logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
from ccxt.base.errors import RateLimitExceeded
from redis.exceptions import RedisError

from hft_ray import metrics
from hft_ray.config import CcxtVenueConfig, StoreConfig, read_secret

#: After a 429 the rate never drops below this share of the configured rate.
FLOOR_SHARE = 1 / 16
#: Seconds to climb from zero back to the configured rate (from half of it: half this).
RECOVER_S = 60.0
#: The pause after a 429 / 418 that names no `Retry-After`.
DEFAULT_PAUSE_S = 1.0
#: The longest pause a `Retry-After` can ask for (a 418 ban can name hours; we re-read sooner).
MAX_PAUSE_S = 300.0
#: The longest single sleep while waiting for tokens: a shrink elsewhere is seen this soon.
MAX_SLEEP_S = 1.0
#: Redis keeps an idle budget this long.
TTL_S = 3600
KEY_PREFIX = "hft_ray:rate_budget"


class BudgetUnavailable(RateLimitExceeded):
    """The shared budget could not be read: the request was not sent."""


def key_id(api_key: str | None) -> str:
    """A budget's name for an API key: 12 hex digits of its SHA-256, or `public`."""
    if not api_key:
        return "public"
    return hashlib.sha256(api_key.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Take:
    """A bucket's answer: reserved (go after `wait_s`), or paused (ask again after `wait_s`);
    its rate now, and its epoch (a shrink starts a new one and voids every reservation)."""

    granted: bool
    wait_s: float
    rate: float
    epoch: int = 0


class Bucket(Protocol):
    async def take(self, cost: float) -> Take: ...

    async def epoch(self) -> int: ...

    async def shrink(self, pause_s: float) -> bool: ...

    async def close(self) -> None: ...


# KEYS[1] the budget; ARGV cost, rate, burst, recover_s, ttl_s. Times on Redis's clock, in s.
# Numbers leave as strings: Redis would truncate a Lua number to an integer.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local cost, base, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local recover, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local h = redis.call('HMGET', KEYS[1], 'tokens', 'ts', 'rate', 'pause', 'shrinks')
local tokens = tonumber(h[1]) or burst
local ts = tonumber(h[2]) or now
local rate = math.min(tonumber(h[3]) or base, base)
local pause = tonumber(h[4]) or 0
local epoch = h[5] or '0'
if now < pause then
  return {'0', string.format('%.6f', pause - now), string.format('%.9g', rate), epoch}
end
local dt = math.max(0, now - math.max(ts, pause))
tokens = math.min(burst, tokens + dt * rate)
rate = math.min(base, rate + base * dt / recover)
local need = math.min(cost, burst)
local wait = 0
if tokens < need then wait = (need - tokens) / rate end
tokens = tokens - cost
redis.call('HSET', KEYS[1], 'tokens', string.format('%.9f', tokens),
  'ts', string.format('%.6f', now), 'rate', string.format('%.9g', rate))
redis.call('EXPIRE', KEYS[1], ttl)
return {'1', string.format('%.6f', wait), string.format('%.9g', rate), epoch}
"""

# KEYS[1] the budget; ARGV rate, floor share, pause_s, ttl_s. Returns 1 if it halved the rate.
_SHRINK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local base, floor, pause_s = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local h = redis.call('HMGET', KEYS[1], 'rate', 'pause')
local rate = math.min(tonumber(h[1]) or base, base)
local pause = tonumber(h[2]) or 0
local halved = 0
if now >= pause then
  rate = math.max(base * floor, rate / 2)
  halved = 1
  redis.call('HINCRBY', KEYS[1], 'shrinks', 1)
end
pause = math.max(pause, now + pause_s)
redis.call('HSET', KEYS[1], 'rate', string.format('%.9g', rate), 'tokens', '0',
  'ts', string.format('%.6f', now), 'pause', string.format('%.6f', pause))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return halved
"""


class RedisBucket:
    """The bucket in a Redis hash, shared by every process that names the same key."""

    def __init__(
        self,
        url: str,
        password: str | None,
        key: str,
        rate: float,
        burst: float,
        recover_s: float = RECOVER_S,
    ) -> None:
        self.key = key
        self.rate, self.burst, self.recover_s = rate, burst, recover_s
        self._url, self._password = url, password
        self._client: aioredis.Redis | None = None  # made in the loop that uses it

    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            self._client = aioredis.from_url(
                self._url, password=self._password, socket_timeout=2.0, socket_connect_timeout=2.0
            )
        return self._client

    async def take(self, cost: float) -> Take:
        args = (cost, self.rate, self.burst, self.recover_s, TTL_S)
        try:
            granted, wait, rate, epoch = await self._redis().eval(_TAKE, 1, self.key, *args)
        except (RedisError, OSError) as err:
            raise BudgetUnavailable(f"rate budget unavailable ({type(err).__name__})") from None
        return Take(granted == b"1", float(wait), float(rate), int(epoch))

    async def epoch(self) -> int:
        try:
            return int(await self._redis().hget(self.key, "shrinks") or 0)
        except (RedisError, OSError) as err:
            raise BudgetUnavailable(f"rate budget unavailable ({type(err).__name__})") from None

    async def shrink(self, pause_s: float) -> bool:
        args = (self.rate, FLOOR_SHARE, pause_s, TTL_S)
        try:
            return bool(await self._redis().eval(_SHRINK, 1, self.key, *args))
        except (RedisError, OSError) as err:
            raise BudgetUnavailable(f"rate budget unavailable ({type(err).__name__})") from None

    async def state(self) -> dict[str, float]:
        """The stored fields (tokens, ts, rate, pause, shrinks), for inspection."""
        raw = await self._redis().hgetall(self.key)
        return {(k.decode() if isinstance(k, bytes) else k): float(v) for k, v in raw.items()}

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class LocalBucket:
    """The same bucket in this process (the embedded file store's single-process setup)."""

    def __init__(
        self,
        rate: float,
        burst: float,
        recover_s: float = RECOVER_S,
        clock: Any = time.monotonic,
    ) -> None:
        self.rate, self.burst, self.recover_s = rate, burst, recover_s
        self._clock = clock
        self._tokens = burst
        self._ts = clock()
        self._now_rate = rate
        self._pause = 0.0
        self._epoch = 0

    async def take(self, cost: float) -> Take:
        now = self._clock()
        if now < self._pause:
            return Take(False, self._pause - now, self._now_rate, self._epoch)
        dt = max(0.0, now - max(self._ts, self._pause))
        self._tokens = min(self.burst, self._tokens + dt * self._now_rate)
        self._now_rate = min(self.rate, self._now_rate + self.rate * dt / self.recover_s)
        self._ts = now
        need = min(cost, self.burst)
        wait = max(0.0, (need - self._tokens) / self._now_rate)
        self._tokens -= cost
        return Take(True, wait, self._now_rate, self._epoch)

    async def epoch(self) -> int:
        return self._epoch

    async def shrink(self, pause_s: float) -> bool:
        now = self._clock()
        halved = now >= self._pause
        if halved:
            self._epoch += 1
            self._now_rate = max(self.rate * FLOOR_SHARE, self._now_rate / 2)
        self._pause = max(self._pause, now + pause_s)
        self._tokens, self._ts = 0.0, now
        return halved

    async def close(self) -> None:
        return None


@dataclass
class VenueStats:
    """What this process saw of a venue's budget, for its metrics."""

    rate_limited: int = 0
    rate: float = 0.0


#: Per venue name, in this process.
STATS: dict[str, VenueStats] = {}
#: In-process buckets by (exchange id, key id): every exchange of this process shares one.
_LOCAL: dict[tuple[str, str], LocalBucket] = {}


def reading() -> metrics.Reading:
    """This process's rate-limit answers and budget rates, per venue."""
    r = metrics.Reading()
    for venue, stats in STATS.items():
        r.count(metrics.VENUE_RATE_LIMITED, stats.rate_limited, venue=venue)
        r.level(metrics.VENUE_RATE_BUDGET, stats.rate, venue=venue)
    return r


metrics.add_process_reading(reading)  # pushed by the process's actor, whichever it is


def retry_after_s(headers: Any) -> float:
    """The pause a rate-limit answer asks for: its `Retry-After` seconds, within bounds."""
    for name, value in (headers or {}).items():
        if str(name).lower() == "retry-after":
            with contextlib.suppress(ValueError):
                return min(MAX_PAUSE_S, max(0.0, float(value)))
    return DEFAULT_PAUSE_S


class RateBudget:
    """A process's handle on one shared budget: `acquire` before a request, `rate_limited`
    when the venue answers 429 / 418."""

    def __init__(self, venue: str, bucket: Bucket) -> None:
        self.venue = venue
        self.bucket = bucket
        self.stats = STATS.setdefault(venue, VenueStats())
        self._shrinking: set[asyncio.Task[bool]] = set()

    async def acquire(self, cost: float) -> None:
        """Wait until the budget grants `cost` units: reserve them, wait for the turn, and
        start over if a 429 (anyone's) voided the reservation meanwhile."""
        while True:
            for task in list(self._shrinking):  # a 429 this process saw counts first
                with contextlib.suppress(Exception):
                    await task
            take = await self.bucket.take(cost)
            self.stats.rate = take.rate
            if not take.granted:  # paused
                await asyncio.sleep(min(max(take.wait_s, 0.001), MAX_SLEEP_S))
                continue
            wait, voided = take.wait_s, False
            while wait > 0 and not voided:
                step = min(wait, MAX_SLEEP_S)
                await asyncio.sleep(step)
                wait -= step
                voided = await self.bucket.epoch() != take.epoch
            if not voided:
                return

    def rate_limited(self, pause_s: float) -> None:
        """Shrink the budget for everyone (from ccxt's synchronous response hook)."""
        self.stats.rate_limited += 1
        task = asyncio.ensure_future(self.bucket.shrink(pause_s))
        self._shrinking.add(task)
        task.add_done_callback(self._shrinking.discard)

    async def close(self) -> None:
        await self.bucket.close()


def budget_for(
    venue: str, exchange: Any, cfg: CcxtVenueConfig, store: StoreConfig | None
) -> RateBudget:
    """The budget of `exchange` (its id, sandbox or not, and API key) as `cfg` and ccxt say."""
    rate = cfg.rate_limit_per_s or 1000.0 / float(exchange.rateLimit)
    burst = cfg.rate_limit_burst or float((exchange.tokenBucket or {}).get("capacity", 1.0))
    name = str(exchange.id) + ("-sandbox" if cfg.sandbox else "")
    kid = key_id(getattr(exchange, "apiKey", None))
    bucket: Bucket
    if store is not None and store.url is not None:
        password = read_secret(store.password_env, store.password_file, "store.password")
        bucket = RedisBucket(store.url, password, f"{KEY_PREFIX}:{name}:{kid}", rate, burst)
    else:
        local = _LOCAL.get((name, kid))
        if local is None or (local.rate, local.burst) != (rate, burst):
            local = _LOCAL[name, kid] = LocalBucket(rate, burst)
        bucket = local
    return RateBudget(venue, bucket)


def attach(exchange: Any, budget: RateBudget) -> None:
    """Make every REST request of `exchange` draw from `budget`, and every 429 / 418 answer
    shrink it. ccxt calls `self.throttle(cost)` in `fetch2` and `self.on_rest_response(...)`
    with each answer's status and headers in `fetch`; instance attributes override both."""
    default_cost = float((exchange.tokenBucket or {}).get("cost", 1.0))

    async def throttle(cost: float | None = None) -> None:
        await budget.acquire(default_cost if cost is None else float(cost))

    on_rest_response = exchange.on_rest_response

    def noted_response(
        code: int, reason: str, url: str, method: str, headers: Any, *rest: Any
    ) -> Any:
        if code in (429, 418):
            budget.rate_limited(retry_after_s(headers))
        return on_rest_response(code, reason, url, method, headers, *rest)

    close = exchange.close

    async def closed() -> None:
        try:
            await close()
        finally:
            await budget.close()

    exchange.throttle = throttle
    exchange.on_rest_response = noted_response
    exchange.close = closed

"""The root configuration model and its loader.

Every component has one frozen, strict model; the root `HftConfig` nests them. Loading never
raises a pydantic traceback at the user: `load_config` turns every problem into a `ConfigError`
whose message names the key path (`risk.max_order_notional`) and what is wrong with it.

A config cannot lie: a key given twice is an error (YAML would keep the last silently), every
number is finite and bounded, and a document that expands without bound (aliases of aliases)
or a file above `MAX_CONFIG_BYTES` is refused before it is built.
"""

from __future__ import annotations

import copy
import importlib.resources
import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from hft_ray.venues.presets import SIM_PRESETS, MarketSpec

DEFAULT_CONFIG = "local.yaml"
#: Key paths whose values are never echoed in an error message: they may carry a secret.
_SECRET_WORDS = ("url", "password", "secret", "token", "key")
SYMBOL_RE = re.compile(r"^[A-Z0-9]+/[A-Z0-9]+$")
RESOURCE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
#: Resources Ray defines itself; a venue's node resource must be a custom one.
_RAY_RESOURCES = ("CPU", "GPU", "memory", "object_store_memory")

#: A config file is a few KiB; anything near this is a mistake (or an attack), refused unread.
MAX_CONFIG_BYTES = 1 << 20
#: Values of a config once YAML aliases and merge keys are expanded (the packaged one: ~250).
MAX_CONFIG_NODES = 100_000
#: Nesting of a config, aliases expanded (the packaged one: 5).
MAX_CONFIG_DEPTH = 32
#: A secret file larger than this is not a secret.
MAX_SECRET_BYTES = 64 << 10

# Upper bounds of numbers: far above any sane setting, low enough that a slipped exponent
# (or 1e308) is refused instead of silently lifting a limit. `None`, where a field allows
# it, is how a limit is switched off.
MAX_AMOUNT = 1e12  # asset units or quote: balances, positions, notionals, losses
MAX_MARKET_SIZE = 1e15  # a market's tick, lot and minimums (1e15 makes a market untradable)
MAX_PRICE = 1e9  # quote per unit of base
MAX_BPS = 10_000.0  # 100 %
MAX_MS = 3_600_000.0  # an hour
MAX_S = 3_600.0  # an hour
MAX_RATE = 10_000.0  # events per second (or per minute)
MAX_COUNT = 1_000_000  # sizes of buckets, windows, batches
MAX_CPUS = 1_024  # actors of one kind, CPUs, nodes
MAX_BOOK_DEPTH = 400  # levels per side
#: Symbols and venues become int16 ids on the hot path (hft_ray.types): far below that.
MAX_SYMBOLS = 10_000
MAX_VENUES = 256
#: Simulated lag in ticks (`lag_ms / tick_ms`): a ring of that many prices is kept per venue.
MAX_LAG_TICKS = 100_000
MAX_SEED = 2**63 - 1

Probability = Annotated[float, Field(ge=0, le=1)]
Amount = Annotated[float, Field(ge=0, le=MAX_AMOUNT)]
PositiveAmount = Annotated[float, Field(gt=0, le=MAX_AMOUNT)]
Price = Annotated[float, Field(gt=0, le=MAX_PRICE)]
Bps = Annotated[float, Field(ge=0, le=MAX_BPS)]
PositiveBps = Annotated[float, Field(gt=0, le=MAX_BPS)]
Millis = Annotated[float, Field(ge=0, le=MAX_MS)]
PositiveMillis = Annotated[float, Field(gt=0, le=MAX_MS)]
Seconds = Annotated[float, Field(ge=0, le=MAX_S)]
PositiveSeconds = Annotated[float, Field(gt=0, le=MAX_S)]
Rate = Annotated[float, Field(gt=0, le=MAX_RATE)]
Count = Annotated[int, Field(ge=1, le=MAX_COUNT)]
Actors = Annotated[int, Field(ge=1, le=MAX_CPUS)]
Cpus = Annotated[float, Field(gt=0, le=MAX_CPUS)]
Levels = Annotated[int, Field(ge=1, le=MAX_BOOK_DEPTH)]
Port = Annotated[int, Field(ge=1, le=65535)]
#: The name of an environment variable (never its value: the secret stays out of the file).
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=255)]


class ConfigError(ValueError):
    """A configuration that cannot run; the message is one line naming the key path.

    Characters that would break the line (a newline in a key, say) are shown escaped."""

    def __init__(self, message: str) -> None:
        super().__init__("".join(c if c.isprintable() else ascii(c)[1:-1] for c in message))


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False, allow_inf_nan=False)


def _outside_worker_ports(port: int) -> int:
    if 10002 <= port <= 19999:
        raise ValueError(f"{port} lies in Ray's worker port range 10002-19999")
    return port


def _one_source(model: BaseModel, *secrets: str) -> None:
    """A secret comes from its variable or its file, not both: which one would win is a guess."""
    for secret in secrets:
        env, file = f"{secret}_env", f"{secret}_file"
        if getattr(model, env) is not None and getattr(model, file) is not None:
            raise ValueError(f"{env} and {file} are both set; name one")


class RunConfig(_Frozen):
    """What identifies a run and where its files go."""

    name: str = Field(
        "local",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="Label for the run, part of run_id and so of its directory's name.",
    )
    seed: int = Field(
        7, ge=0, le=MAX_SEED, description="Seed of the simulated venues; same seed, same books."
    )
    runs_dir: Path = Field(Path("runs"), description="Run directories go here (journal, report).")
    status_interval_s: PositiveSeconds = Field(1.0, description="Seconds between status lines.")
    warmup_s: Seconds = Field(
        0.0,
        description="Latency of the first seconds after start is left out of the report and "
        "the metrics (imports, compiles and cold caches are not the pipeline).",
    )
    recovery_budget_s: Annotated[float, Field(gt=0, le=3600)] = Field(
        30.0,
        description="Seconds a run waits for an actor (or the store) that stopped answering "
        "before it stops cleanly with its report; risk fails closed meanwhile.",
    )


class ClusterConfig(_Frozen):
    """Where the actors run and how they are placed."""

    address: str | None = Field(
        None,
        max_length=1024,
        description="Ray address to join; null starts a local Ray instance.",
    )
    namespace: str = Field(
        "hft_ray", min_length=1, max_length=128, description="Ray namespace of the run."
    )
    topology: Literal["auto", "fused", "distributed"] = Field(
        "auto",
        description="fused: one trading-node actor per node runs its venues' feeds, its "
        "symbols' detector, a risk gate spending the risk actor's leases, and the executor, "
        "in one event loop (no Ray hop between book and order); distributed: feeds, detectors, "
        "risk and executors as separate actors. auto: distributed when the cluster has a "
        "CPU for every distributed actor, else fused.",
    )
    trading_nodes: Actors | Literal["auto"] = Field(
        "auto",
        description="Fused topology: trading-node actors, symbols sharded among them by hash; "
        "auto: one per Ray node with CPUs to spare (at most one per symbol).",
    )
    placement_strategy: Literal["PACK", "STRICT_PACK", "SPREAD", "STRICT_SPREAD"] = "PACK"
    cpus_per_bundle: Cpus | Literal["auto"] = Field(
        "auto",
        description="Logical CPUs per actor bundle; auto fits all bundles on the cluster's CPUs.",
    )
    pin_cores: bool = Field(True, description="Pin each actor's threads to its handed cores.")
    realtime_priority: bool = Field(
        False,
        description="Run the pinned pipeline actors (trading nodes, feeds, detectors, risk, "
        "executors) at real-time round-robin priority 1, before every ordinary process on "
        "their cores; needs CAP_SYS_NICE (the report says whether each got it).",
    )
    local_num_cpus: Actors | None = Field(
        None, description="Logical CPUs of a local Ray instance (default: the machine's)."
    )
    ready_timeout_s: PositiveSeconds = Field(120.0, description="Seconds to wait for all actors.")


class MarketOverride(_Frozen):
    """Precision and limits of one market, overriding the venue preset."""

    tick: Annotated[float, Field(gt=0, le=MAX_MARKET_SIZE)] | None = None
    lot: Annotated[float, Field(gt=0, le=MAX_MARKET_SIZE)] | None = None
    min_amount: Annotated[float, Field(ge=0, le=MAX_MARKET_SIZE)] | None = None
    min_notional: Annotated[float, Field(ge=0, le=MAX_MARKET_SIZE)] | None = None


class _VenueBase(_Frozen):
    taker_fee: Annotated[float, Field(ge=0, le=0.01)] | None = Field(
        None, description="Taker fee as a fraction (0.001 = 10 bps); default from the venue."
    )
    markets: dict[str, MarketOverride] = Field(default_factory=dict)
    balances: dict[str, Amount] = Field(
        default_factory=dict, description="Starting balance per asset, in asset units."
    )
    node_resource: str | None = Field(
        None,
        max_length=128,
        description="Custom Ray resource that this venue's feed bundle asks for (a token "
        "0.001 units), so the feed runs only on a node started with it, e.g. the one nearest "
        "the exchange: `ray start --resources='{\"near_binance\": 1}'` or a KubeRay worker "
        "group's `rayStartParams.resources`. Default: any node the placement strategy picks.",
    )

    @field_validator("node_resource")
    @classmethod
    def _custom_resource(cls, v: str | None) -> str | None:
        if v is not None and (v in _RAY_RESOURCES or not RESOURCE_RE.match(v)):
            raise ValueError(
                f"{v!r} is not a custom Ray resource name (letters, digits, _ . -; "
                f"not one of {', '.join(_RAY_RESOURCES)})"
            )
        return v

    @field_validator("markets")
    @classmethod
    def _symbols_well_formed(cls, v: dict[str, MarketOverride]) -> dict[str, MarketOverride]:
        for symbol in v:
            _check_symbol(symbol)
        return v


class CcxtVenueConfig(_VenueBase):
    """A live venue through ccxt / ccxt.pro: books by websocket, orders by REST.

    Each credential comes from an environment variable (`*_env`) or a mounted file (`*_file`,
    read when the venue connects), at most one of the two; `read_secret` reads either."""

    kind: Literal["ccxt"]
    exchange: str | None = Field(None, description="ccxt exchange id (default: the venue's name).")
    sandbox: bool = Field(False, description="Use the exchange's sandbox (testnet) endpoints.")
    urls: dict[str, Any] = Field(
        default_factory=dict, description="Deep-merged over ccxt's `urls` (testnet, local server)."
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Deep-merged over ccxt's `options`."
    )
    api_key_env: EnvName | None = Field(None, description="Environment variable with the API key.")
    api_key_file: Path | None = Field(None, description="File holding the API key.")
    secret_env: EnvName | None = Field(
        None, description="Environment variable with the API secret."
    )
    secret_file: Path | None = Field(None, description="File holding the API secret.")
    password_env: EnvName | None = Field(
        None, description="Environment variable with a passphrase."
    )
    password_file: Path | None = Field(None, description="File holding the passphrase.")
    watch_depth: int | None = Field(
        None,
        ge=1,
        le=5_000,
        description="Levels asked of watch_order_book, which ccxt also keeps and fetches as "
        "the snapshot (default: the deepest the venue's snapshot offers, per "
        "hft_ray/venues/depth.py; ccxt's own default for a venue not listed there).",
    )
    stall_timeout_s: PositiveSeconds = Field(
        10.0, description="A stream silent this long is resubscribed; its books go invalid."
    )
    backoff_s: tuple[PositiveSeconds, PositiveSeconds] = Field(
        (0.5, 30.0), description="Reconnect backoff, first and longest wait."
    )
    rate_limit_per_s: Rate | None = Field(
        None,
        description="REST budget refill in ccxt's cost units (request weight) per second, "
        "shared by every process using this exchange and key (default: 1000 / ccxt's "
        "rateLimit ms); see hft_ray/venues/rate_budget.py.",
    )
    rate_limit_burst: Rate | None = Field(
        None, description="REST budget capacity in cost units (default: ccxt's, 1)."
    )
    mode: Literal["live", "paper"] = Field(
        "live",
        description="live: orders go to the venue; paper: real books, orders matched locally "
        "against them (hft_ray/venues/paper.py) with the venue's fees and precision and "
        "`balances` as the account; no order or private endpoint reaches the venue, no keys.",
    )
    paper_latency_ms: Millis = Field(
        20.0, description="Paper mode: an order is matched against the book this much later."
    )

    @model_validator(mode="after")
    def _checks(self) -> CcxtVenueConfig:
        _one_source(self, "api_key", "secret", "password")
        first, longest = self.backoff_s
        if first > longest:
            raise ValueError(f"backoff_s: first wait {first:g} is longer than longest {longest:g}")
        if self.mode == "paper":
            # With keys ccxt asks private endpoints even for markets: a paper venue has none.
            keys = [f for f in _CREDENTIAL_FIELDS if getattr(self, f) is not None]
            if keys:
                raise ValueError(f"mode paper needs no credentials: remove {', '.join(keys)}")
        return self


_CREDENTIAL_FIELDS = tuple(
    f"{what}_{src}" for what in ("api_key", "secret", "password") for src in ("env", "file")
)


class SimVenueConfig(_VenueBase):
    """A simulated venue: a real exchange's fees and precision, a synthetic book."""

    kind: Literal["sim"] = "sim"
    preset: str | None = Field(None, description="Preset venue (default: the venue's name).")
    lag_ms: Millis = Field(0.0, description="How far this venue's price lags the common walk.")
    noise_bps: Bps = Field(0.5, description="Std-dev of the venue's own price noise.")
    spread_bps: Bps = Field(1.0, description="Quoted spread (at least one tick).")
    level_spacing_bps: Bps = Field(0.5, description="Gap between levels (min one tick).")
    ack_latency_ms: Millis = Field(4.0, description="Mean order acknowledgement latency.")
    reject_rate: Probability = Field(0.0, description="Share of orders the venue rejects.")
    timeout_rate: Probability = Field(0.0, description="Share of orders whose ack never arrives.")
    rate_limit_rate: Probability = Field(
        0.0, description="Share of orders refused as over the venue's rate limit (HTTP 429)."
    )

    @model_validator(mode="after")
    def _fates_add_up(self) -> SimVenueConfig:
        total = self.reject_rate + self.timeout_rate + self.rate_limit_rate
        if total > 1:
            raise ValueError(f"reject_rate + timeout_rate + rate_limit_rate is {total:g}, above 1")
        return self


VenueConfig = Annotated[SimVenueConfig | CcxtVenueConfig, Field(discriminator="kind")]


class SimMarketConfig(_Frozen):
    """The common price process behind every simulated venue."""

    tick_ms: Annotated[float, Field(ge=0.1, le=60_000)] = Field(
        25.0, description="Milliseconds between book updates."
    )
    book_depth: Levels = Field(20, description="Levels per side of a simulated book.")
    volatility_bps: Bps = Field(3.0, description="Std-dev of the walk per sqrt(second).")
    dislocations_per_min: Annotated[float, Field(ge=0, le=MAX_RATE)] = Field(
        12.0, description="Rate of venue-specific price jumps, per symbol."
    )
    dislocation_bps: tuple[Bps, Bps] = Field(
        (30.0, 70.0), description="Size range of a jump, bps of price."
    )
    dislocation_half_life_ms: PositiveMillis = Field(250.0, description="How fast a jump decays.")
    level_notional: PositiveAmount = Field(
        25_000.0, description="Mean quote notional resting on the best level."
    )
    initial_prices: dict[str, Price] = Field(
        default_factory=lambda: {"BTC/USDT": 90_000.0, "ETH/USDT": 3_000.0, "SOL/USDT": 150.0}
    )
    order_timeout_ack_ms: PositiveMillis = Field(
        5_000.0, description="How late a timed-out order's ack comes, if at all."
    )

    @model_validator(mode="after")
    def _range_ordered(self) -> SimMarketConfig:
        lo, hi = self.dislocation_bps
        if lo > hi:
            raise ValueError(f"dislocation_bps: lower bound {lo} is above upper bound {hi}")
        return self


class FeedConfig(_Frozen):
    """Market data: book depth carried, batching towards detectors, staleness."""

    depth: Levels = Field(20, description="Levels per side carried in a BookUpdate.")
    batch_max_rows: int = Field(
        4_096, ge=1, le=100_000, description="Distributed: a feed sends a batch at this many rows."
    )
    batch_max_us: Annotated[float, Field(ge=0, le=10_000_000)] = Field(
        0.0,
        description="...or when its oldest row is this old, us; 0: every poll's rows leave at "
        "once (a deadline only delays books a poll already brought).",
    )
    max_in_flight: Actors = Field(8, description="Unacknowledged batches per detector.")
    max_book_age_ms: PositiveMillis = Field(
        500.0, description="A book older than this is never tradable."
    )
    resync_after_failures: int = Field(
        3,
        ge=1,
        le=1_000,
        description="A live book failing the checks this many times in a row is resynced "
        "from a fresh snapshot.",
    )
    max_jump_z: Annotated[float, Field(ge=0, le=1_000)] = Field(
        12.0,
        description="A mid moving more than this many times the RMS of its recent mid returns "
        "(kept within min_jump_bps..max_jump_bps) is not tradable until the next update "
        "confirms it; 0 turns the check off.",
    )
    min_jump_bps: PositiveBps = Field(
        10.0,
        description="A mid move of this many bps or less is never a jump, however still the "
        "mid was (a mid that rarely moves would otherwise flag every tick).",
    )
    max_jump_bps: PositiveBps = Field(
        40.0,
        description="A mid move of more than this many bps always waits for confirmation, "
        "and is the band until 30 returns are seen.",
    )

    @model_validator(mode="after")
    def _jump_band_ordered(self) -> FeedConfig:
        if self.min_jump_bps > self.max_jump_bps:
            raise ValueError(
                f"min_jump_bps {self.min_jump_bps} is above max_jump_bps {self.max_jump_bps}"
            )
        return self


class StatArbConfig(_Frozen):
    """Mean reversion of the log mid-price spread between two venues of a symbol."""

    enabled: bool = Field(False, description="Trade spread reversion besides crossed books.")
    lookback: int = Field(200, ge=10, le=100_000, description="Spread updates in the z-score.")
    z_entry: Annotated[float, Field(gt=0, le=1_000)] = Field(
        3.0, description="Open when |z| reaches this."
    )
    z_exit: Annotated[float, Field(ge=0, le=1_000)] = Field(
        0.5, description="Close when |z| falls to this."
    )
    max_notional: PositiveAmount = Field(500.0, description="Quote notional per leg.")
    min_std_bps: PositiveBps = Field(
        0.05, description="No signal while the spread's std-dev is below this, bps."
    )

    @model_validator(mode="after")
    def _exit_below_entry(self) -> StatArbConfig:
        if self.z_exit >= self.z_entry:
            raise ValueError(f"z_exit {self.z_exit} must be below z_entry {self.z_entry}")
        return self


class DetectorConfig(_Frozen):
    """The arbitrage detector pool."""

    pool_size: Actors = Field(1, description="Detector actors; symbols sharded by hash.")
    min_profit_bps: Bps = Field(
        0.0, description="Marginal net edge each added unit must keep, bps of the ask."
    )
    cooldown_ms: Millis = Field(
        100.0, description="Do not re-emit a (symbol, buy, sell) pair sooner than this."
    )
    inventory_skew_bps: Bps = Field(
        0.0,
        description="Edge an arbitrage needs per unit of imbalance it adds, bps (and the edge "
        "it is spared per unit it removes). A venue's imbalance in an asset is its position "
        "minus risk.inventory_target, in units of risk.max_position of the asset; a trade's is "
        "the change of |imbalance| summed over both legs. Applied by the detector "
        "(min_profit_bps) and risk (min_edge_bps) alike; 0: off.",
    )
    statarb: StatArbConfig = Field(default_factory=StatArbConfig)


class RiskConfig(_Frozen):
    """Limits the singleton risk actor enforces."""

    max_order_notional: PositiveAmount = Field(2_000.0, description="Quote notional per leg.")
    max_position: dict[str, PositiveAmount] = Field(
        default_factory=dict,
        description="Absolute change of an asset's balance per venue, in asset units.",
    )
    inventory_target: dict[str, dict[str, Amount]] = Field(
        default_factory=dict,
        description="Balance each venue should hold per asset, in asset units, for "
        "detector.inventory_skew_bps (default, and for any venue or asset left out: the "
        "venue's starting balance).",
    )
    max_orders_per_s: Rate = Field(20.0, description="Orders per second, all venues.")
    order_burst: Count = Field(10, description="Token bucket size for orders.")
    min_edge_bps: Bps = Field(0.0, description="Minimum expected net edge after fees.")
    max_in_flight_per_symbol: Actors = Field(1, description="Concurrent trades per symbol.")
    max_opportunity_age_ms: PositiveMillis = Field(
        100.0, description="An opportunity older than this when risk sees it is rejected."
    )
    max_book_age_ms: PositiveMillis | None = Field(
        None,
        description="Reject when the newest book behind an opportunity arrived longer ago than "
        "this, ms (default: feed.max_book_age_ms).",
    )
    max_venue_orders_per_s: Rate | None = Field(
        None, description="Orders per second on any one venue (default: no per-venue limit)."
    )
    venue_order_burst: Count = Field(6, description="Token bucket size per venue.")
    max_net_position: dict[str, PositiveAmount] = Field(
        default_factory=dict,
        description="Absolute net position of an asset summed over venues, in asset units; "
        "beyond it trading goes REDUCING.",
    )
    max_gross_exposure_quote: PositiveAmount | None = Field(
        None,
        description="Sum over venues and base assets of |position| x price, in quote; no trade "
        "may take it beyond this (default: unlimited).",
    )
    max_daily_loss_quote: PositiveAmount | None = Field(
        None, description="Realized loss since 00:00 UTC that halts trading, quote."
    )
    max_drawdown_quote: PositiveAmount | None = Field(
        None, description="Fall of realized PnL from its peak that turns trading REDUCING, quote."
    )
    max_consecutive_leg_failures: Count = Field(
        5, description="Trades in a row with a failed leg that halt trading."
    )
    max_reject_rate: Probability = Field(
        0.5, description="Share of venue-rejected orders over the window that turns REDUCING."
    )
    reject_rate_window: int = Field(
        50, ge=5, le=MAX_COUNT, description="Orders in the rejection-rate window."
    )
    lease_ttl_ms: PositiveMillis = Field(
        500.0,
        description="Fused topology: how long a trading node's lease lets its gate approve "
        "without hearing from the risk actor again, ms; past it the gate closes by itself.",
    )
    lease_sync_ms: PositiveMillis = Field(
        50.0,
        description="Fused topology: how often a node sends risk its decisions and fills and "
        "renews its lease, ms (well below lease_ttl_ms, so a slow answer does not close it).",
    )

    @model_validator(mode="after")
    def _sync_within_ttl(self) -> RiskConfig:
        if self.lease_sync_ms * 2 > self.lease_ttl_ms:
            raise ValueError(
                f"lease_sync_ms {self.lease_sync_ms:g} must be at most half of lease_ttl_ms "
                f"{self.lease_ttl_ms:g}: a lease must outlive a late renewal"
            )
        return self


class ExecutionConfig(_Frozen):
    """The executor pool and how it places and repairs legs."""

    pool_size: Actors = Field(1, description="Executor actors.")
    order_timeout_ms: PositiveMillis = Field(1_000.0, description="Wait for an ack this long.")
    slippage_bps: Bps = Field(0.0, description="Limit price beyond the detected worst price, bps.")
    unwind_policy: Literal["reverse", "proceed", "cancel"] = "reverse"
    unwind_slippage_bps: Bps = Field(
        30.0, description="Price bound of an unwind order beyond the touch, bps."
    )
    unwind_max_loss_quote: PositiveAmount = Field(
        50.0,
        description="Most a repair order may lose against the price the excess was traded "
        "at, its fee included, quote; it tightens the repair's limit price.",
    )
    unwind_timeout_ms: PositiveMillis = Field(
        1_000.0, description="Wait this long for a repair order's ack before looking it up."
    )


class StoreConfig(_Frozen):
    """Where the journal and state live."""

    url: str | None = Field(
        None,
        max_length=1024,
        description="redis://host:port/db, or null for the embedded file store.",
    )
    password_env: EnvName | None = Field(
        None, description="Environment variable holding the Redis password."
    )
    password_file: Path | None = Field(
        None, description="File holding the Redis password (e.g. a mounted Secret)."
    )
    fsync: bool = Field(False, description="fsync the file store on every flush.")

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError("must start with redis:// or rediss://")
        if parts.password:
            raise ValueError(
                "must not contain a password; name its variable in password_env "
                "or its file in password_file"
            )
        _ = parts.port  # raises ValueError when out of range
        return v

    @model_validator(mode="after")
    def _one_password(self) -> StoreConfig:
        _one_source(self, "password")
        return self


#: A TCP port the run listens on: outside Ray's worker port range, where Ray would take it.
ServerPort = Annotated[Port, AfterValidator(_outside_worker_ports)]


class MetricsConfig(_Frozen):
    """Prometheus metrics export."""

    enabled: bool = True
    export_port: ServerPort = Field(8080, description="Ray metrics export port.")


class StatusConfig(_Frozen):
    """The status actor: health and status of the run over HTTP, on the driver's node."""

    enabled: bool = Field(
        True, description="Run the status actor and serve /health, /status and /metrics."
    )
    host: str = Field(
        "127.0.0.1",
        min_length=1,
        max_length=253,
        description="Address the HTTP server listens on; 0.0.0.0 for every interface.",
    )
    port: ServerPort = Field(
        8787, description="TCP port of the HTTP server, outside Ray's worker ports 10002-19999."
    )


#: Fastest replay, times recorded speed: beyond it a replay is `fast` (lockstep), not timed.
MAX_REPLAY_SPEED = 10_000.0


class ReplayConfig(_Frozen):
    """Set by `hft-ray replay`: the recorded books that stand in for the venues."""

    files: list[Path] = Field(min_length=1, description="Recorded books, JSON Lines (.gz too).")
    speed: Annotated[float, Field(gt=0, le=MAX_REPLAY_SPEED)] = Field(
        1.0, description="Times recorded speed."
    )
    fast: bool = Field(False, description="As fast as the pipeline takes them, in lockstep.")


class HftConfig(_Frozen):
    """A whole run."""

    run: RunConfig = Field(default_factory=RunConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    symbols: list[str] = Field(min_length=1, max_length=MAX_SYMBOLS)
    venues: dict[str, VenueConfig] = Field(min_length=2, max_length=MAX_VENUES)
    sim: SimMarketConfig = Field(default_factory=SimMarketConfig)
    feed: FeedConfig = Field(default_factory=FeedConfig)
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    risk: RiskConfig = Field(default_factory=RiskConfig)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    status: StatusConfig = Field(default_factory=StatusConfig)
    replay: ReplayConfig | None = None

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, v: list[str]) -> list[str]:
        for symbol in v:
            _check_symbol(symbol)
        if len(set(v)) != len(v):
            raise ValueError("lists a symbol twice")
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> HftConfig:
        for name, venue in self.venues.items():
            if isinstance(venue, CcxtVenueConfig):
                _check_ccxt_exchange(name, venue.exchange or name)
                continue
            preset = venue.preset or name
            if preset not in SIM_PRESETS:
                known = ", ".join(sorted(SIM_PRESETS))
                raise ValueError(f"venues.{name}: unknown venue {preset!r} (known: {known})")
            for symbol in self.symbols:
                if symbol not in SIM_PRESETS[preset] and symbol not in venue.markets:
                    raise ValueError(f"venues.{name}: no market for {symbol}; add it under markets")
            if venue.lag_ms / self.sim.tick_ms > MAX_LAG_TICKS:
                raise ValueError(
                    f"venues.{name}.lag_ms: {venue.lag_ms:g} is more than {MAX_LAG_TICKS} ticks "
                    f"of sim.tick_ms {self.sim.tick_ms:g}"
                )
        simulated = any(isinstance(v, SimVenueConfig) for v in self.venues.values())
        for symbol in self.symbols if simulated else ():
            if symbol not in self.sim.initial_prices:
                raise ValueError(f"sim.initial_prices: missing a price for {symbol}")
        for target_venue, targets in self.risk.inventory_target.items():
            if target_venue not in self.venues:
                raise ValueError(f"risk.inventory_target: unknown venue {target_venue!r}")
            for asset in targets:
                if not any(asset in symbol.split("/") for symbol in self.symbols):
                    raise ValueError(
                        f"risk.inventory_target.{target_venue}: no symbol trades {asset}"
                    )
        if self.detector.inventory_skew_bps > 0:
            for symbol in self.symbols:
                base = symbol.split("/")[0]
                if base not in self.risk.max_position:
                    raise ValueError(
                        f"detector.inventory_skew_bps: risk.max_position has no {base}, the "
                        "unit of its imbalance"
                    )
        if simulated and self.feed.depth > self.sim.book_depth:
            raise ValueError(
                f"feed.depth: {self.feed.depth} is deeper than sim.book_depth {self.sim.book_depth}"
            )
        return self

    def market_spec(self, venue: str, symbol: str, loaded: MarketSpec | None = None) -> MarketSpec:
        """Fees and precision of `symbol` on `venue`, with the config's overrides applied over
        the simulated venue's preset or, for a live venue, over what ccxt `loaded`."""
        cfg = self.venues[venue]
        if isinstance(cfg, SimVenueConfig):
            preset = SIM_PRESETS[cfg.preset or venue]
            loaded = preset.get(symbol) or _spec_from_override(symbol, cfg.markets[symbol])
        elif loaded is None:
            raise ConfigError(f"venues.{venue}: {symbol} has no market loaded from the exchange")
        override = cfg.markets.get(symbol)
        fields: dict[str, Any] = {}
        if override is not None:
            fields = {k: v for k, v in override.model_dump().items() if v is not None}
        if cfg.taker_fee is not None:
            fields["taker_fee"] = cfg.taker_fee
        return loaded.replace(**fields) if fields else loaded

    def inventory_offset(self, venue: str, asset: str) -> float:
        """The position (balance change) at which `venue` is on its inventory target."""
        target = self.risk.inventory_target.get(venue, {}).get(asset)
        return 0.0 if target is None else target - self.venues[venue].balances.get(asset, 0.0)

    def skew_per_unit(self, base: str) -> float:
        """`detector.inventory_skew_bps` per base unit: its unit is `risk.max_position`."""
        skew = self.detector.inventory_skew_bps
        return skew / self.risk.max_position[base] if skew > 0 else 0.0

    @property
    def mode(self) -> str:
        """`replay` when replaying files, `sim` when every venue is simulated, `paper` when the
        live ones are all in paper mode (no real order), else `live`."""
        if self.replay is not None:
            return "replay"
        if all(v.kind == "sim" for v in self.venues.values()):
            return "sim"
        return "live" if self.orders_sent_to_venues else "paper"

    @property
    def paper_venues(self) -> list[str]:
        """Live venues in paper mode: real books, orders matched locally, none sent."""
        venues = self.venues.items()
        return [n for n, v in venues if isinstance(v, CcxtVenueConfig) and v.mode == "paper"]

    @property
    def orders_sent_to_venues(self) -> bool:
        """Whether a run may send real orders: some live venue is not in paper mode."""
        return self.replay is None and any(
            isinstance(v, CcxtVenueConfig) and v.mode == "live" for v in self.venues.values()
        )


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`base` with `override` laid over it, nested mappings merged key by key."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _check_ccxt_exchange(name: str, exchange: str) -> None:
    import ccxt.pro  # imported here: ccxt is slow to import and only live venues need it

    if exchange not in ccxt.pro.exchanges:
        raise ValueError(f"venues.{name}: {exchange!r} is not a ccxt.pro exchange id")


def _check_symbol(symbol: str) -> None:
    if not SYMBOL_RE.match(symbol):
        raise ValueError(f"symbol {symbol!r} is not a ccxt unified symbol like 'BTC/USDT'")


def _spec_from_override(symbol: str, o: MarketOverride) -> MarketSpec:
    if o.tick is None or o.lot is None:
        raise ConfigError(f"markets.{symbol}: a market without a preset needs tick and lot")
    base, quote = symbol.split("/")
    return MarketSpec(
        symbol=symbol,
        base=base,
        quote=quote,
        tick=o.tick,
        lot=o.lot,
        min_amount=o.min_amount or 0.0,
        min_notional=o.min_notional or 0.0,
        taker_fee=0.001,
    )


def format_validation_error(err: ValidationError, data: Any = None) -> str:
    """One line: every failing key path of `data` with pydantic's reasons and the value given
    (unless the path may hold a secret)."""
    reasons: dict[str, list[str]] = {}
    given: dict[str, str] = {}
    for e in err.errors():
        loc = _key_path(data, e["loc"], keep_last=e["type"] == "missing")
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        msg = msg.removeprefix("Value error, ")
        if msg not in reasons.setdefault(loc, []):
            reasons[loc].append(msg)  # a union's branches each give one
        got = e.get("input")
        secretish = any(word in loc.lower() for word in _SECRET_WORDS)
        if e["type"] not in ("extra_forbidden", "missing") and not (
            secretish or isinstance(got, dict | list)
        ):
            given.setdefault(loc, f" (got {_short_repr(got)})")
    return "; ".join(
        f"{loc + ': ' if loc else ''}{' or '.join(msgs)}{given.get(loc, '')}"
        for loc, msgs in reasons.items()
    )


def _key_path(data: Any, loc: tuple[int | str, ...], keep_last: bool) -> str:
    """`loc` as a dotted key path of `data`, without the labels pydantic adds for the branches
    of a union (`venues.okx.ccxt.secret_env` is `venues.okx.secret_env` in the file)."""
    if data is None:
        return ".".join(str(p) for p in loc if not str(p).startswith("function-"))
    parts: list[str] = []
    node = data
    for i, part in enumerate(loc):
        if isinstance(node, dict):
            inside = part in node
        else:
            inside = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if inside:
            node = node[part]
        elif not (keep_last and i == len(loc) - 1):
            continue  # a union branch's label, not a key of the file
        parts.append(str(part))
    return ".".join(parts)


def _short_repr(value: Any, limit: int = 60) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int too long for repr
        return f"an integer of {value.bit_length()} bits"
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _check_values(data: Any) -> None:
    """Refuse what no field may hold and pydantic would not catch everywhere (`urls` and
    `options` take any value): a non-finite number, a NUL character; and a structure too
    large or too deep to have been written by hand (shared or cyclic, when built in code)."""
    stack: list[tuple[tuple[Any, ...], Any]] = [((), data)]
    seen = 0
    while stack:
        path, value = stack.pop()
        seen += 1
        if seen > MAX_CONFIG_NODES:
            raise ConfigError(f"more than {MAX_CONFIG_NODES} values (YAML aliases expanded)")
        problem = None
        if len(path) > MAX_CONFIG_DEPTH:
            problem = f"nested deeper than {MAX_CONFIG_DEPTH} levels"
        elif isinstance(value, float) and not math.isfinite(value):
            problem = f"must be a finite number (got {value})"
        elif isinstance(value, str) and "\0" in value:
            problem = "contains a NUL character"
        elif isinstance(value, dict):
            if any(isinstance(key, str) and "\0" in key for key in value):
                problem = "a key contains a NUL character"
            stack.extend(((*path, key), item) for key, item in value.items())
        elif isinstance(value, list | tuple):
            stack.extend(((*path, i), item) for i, item in enumerate(value))
        if problem is not None:
            raise ConfigError(f"{'.'.join(str(p) for p in path) or 'the top level'}: {problem}")


def parse_config(data: Any, source: str = "<config>") -> HftConfig:
    """Validate a decoded YAML document; raise `ConfigError` naming the key path."""
    return _validated(HftConfig, data, source)


_Model = TypeVar("_Model", bound=BaseModel)


def _validated(model: type[_Model], data: Any, source: str) -> _Model:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections")
    try:
        _check_values(data)
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{source}: {format_validation_error(err, data)}") from None
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


class RecordConfig(_Frozen):
    """What `hft-ray record` needs of a config: the venue it records (one is enough) and the
    feed's checks, which a recording passes through as a run does."""

    venues: dict[str, VenueConfig] = Field(default_factory=dict, max_length=MAX_VENUES)
    feed: FeedConfig = Field(default_factory=FeedConfig)


def load_record_config(path: str | os.PathLike[str] | None) -> RecordConfig:
    """A config for `record`: a file holding only `venues` (any number) and `feed`, or a
    whole run config (validated as `run` would); none: ccxt's endpoints and default checks."""
    if path is None:
        return RecordConfig()
    source = str(path)
    data = _yaml_document(_read_config_text(Path(path)), source)
    if isinstance(data, dict) and not set(data) <= {"venues", "feed"}:
        run = parse_config(data, source)
        return RecordConfig(venues=run.venues, feed=run.feed)
    return _validated(RecordConfig, data, source)


class _Refused(yaml.YAMLError):
    """A YAML document the loader will not build, for `reason` (one line, its line in it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


_MERGE_TAG = "tag:yaml.org,2002:merge"


class _ConfigLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a key given twice in one mapping (the second would
    silently replace the first, e.g. a whole `risk:` section) and a document that nests or
    expands (aliases, merge keys) beyond `MAX_CONFIG_DEPTH` / `MAX_CONFIG_NODES`, checked on
    the composed nodes before a single object is built. Merge keys (`<<:`) work as usual:
    a key of the mapping itself overrides a merged one."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._composed = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        # The composer recurses once per level: bound it before Python's stack does.
        self._depth += 1
        self._composed += 1
        try:
            if self._depth > MAX_CONFIG_DEPTH or self._composed > MAX_CONFIG_NODES:
                line = self.peek_event().start_mark.line + 1
                if self._depth > MAX_CONFIG_DEPTH:
                    raise _Refused(f"line {line}: nested deeper than {MAX_CONFIG_DEPTH} levels")
                raise _Refused(f"line {line}: more than {MAX_CONFIG_NODES} nodes")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # A tag's constructor fails on a value it cannot build (`!!bool maybe`, `2024-13-01`,
        # an int of 5000 digits) with whatever exception it happens to raise.
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
            tag = str(node.tag).replace("tag:yaml.org,2002:", "!!")
            value = _short_repr(node.value) if isinstance(node, yaml.ScalarNode) else "this"
            raise _Refused(f"line {_line(node)}: {value} is not a valid {tag}") from None

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        _ExpansionCheck(self).visit(node, "")
        return self.construct_document(node)


class _ExpansionCheck:
    """One walk over a composed document: duplicate keys with their key path, and the size and
    depth the document has once every alias is expanded (memoised per node, so a billion
    laughs costs a few hundred steps to refuse)."""

    def __init__(self, loader: _ConfigLoader) -> None:
        self._loader = loader
        self._done: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded nodes, depth)
        self._open: dict[int, str] = {}  # id(node) -> key path, of the nodes being walked

    def visit(self, node: yaml.Node, path: str) -> tuple[int, int]:
        done = self._done.get(id(node))
        if done is not None:
            return done
        if id(node) in self._open:
            what = repr(self._open[id(node)]) if self._open[id(node)] else "the document"
            raise _Refused(f"line {_line(node)}: {what} contains itself through an alias")
        self._open[id(node)] = path
        # (key path, node, levels it loses in the built object: merged pairs join this one)
        children: list[tuple[str, yaml.Node, int]] = []
        if isinstance(node, yaml.MappingNode):
            self._check_keys(node, path)
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:
                    flat = 1 if isinstance(value_node, yaml.MappingNode) else 2
                    children += [(path, key_node, 0), (path, value_node, flat)]
                    continue
                label = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
                child_path = f"{path}.{label}" if path else label
                children += [(path, key_node, 0), (child_path, value_node, 0)]
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                children.append((f"{path}.{i}" if path else str(i), item, 0))
        size, depth = 1, 0
        for child_path, child, flat in children:
            child_size, child_depth = self.visit(child, child_path)
            size, depth = size + child_size, max(depth, child_depth - flat)
            if size > MAX_CONFIG_NODES:
                raise _Refused(
                    f"line {_line(node)}: expands to more than {MAX_CONFIG_NODES} nodes "
                    "once aliases are expanded"
                )
        if depth + 1 > MAX_CONFIG_DEPTH:
            raise _Refused(
                f"line {_line(node)}: nested deeper than {MAX_CONFIG_DEPTH} levels "
                "once aliases are expanded"
            )
        del self._open[id(node)]
        self._done[id(node)] = (size, depth + 1)
        return size, depth + 1

    def _check_keys(self, node: yaml.MappingNode, path: str) -> None:
        first: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue  # a non-scalar key fails construction with its own error
            key = self._loader.construct_object(key_node, deep=True)
            if key in first:
                dotted = f"{path}.{key}" if path else str(key)
                raise _Refused(
                    f"duplicate key {dotted!r} at line {_line(key_node)} "
                    f"(first at line {_line(first[key])})"
                )
            first[key] = key_node


def _yaml_problem(err: yaml.YAMLError) -> str:
    if isinstance(err, _Refused):
        return err.reason
    mark = getattr(err, "problem_mark", None)
    if mark is not None:
        where = f"line {mark.line + 1}: "
    elif isinstance(err, yaml.reader.ReaderError):
        where = f"character {err.position}: "
    else:
        where = ""
    problem = getattr(err, "problem", None) or getattr(err, "reason", None) or ""
    detail = " ".join(str(problem).split()) or err.__class__.__name__
    return f"{where}not valid YAML ({detail})"


def _read_config_text(path: Path) -> str:
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes; not a config")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start})") from None


def load_config(path: str | os.PathLike[str] | None = None) -> HftConfig:
    """Load a YAML config; without a path, the packaged `configs/local.yaml`. A path
    `configs/<name>.yaml` that is not here is the packaged one (e.g. `configs/paper.yaml`),
    so the shipped configs load from any directory."""
    if path is None:
        text = importlib.resources.files("hft_ray.configs").joinpath(DEFAULT_CONFIG).read_text()
        return parse_config_text(text, f"configs/{DEFAULT_CONFIG}")
    given = Path(path)
    packaged = importlib.resources.files("hft_ray.configs").joinpath(given.name)
    if not given.exists() and given.parent == Path("configs") and packaged.is_file():
        return parse_config_text(packaged.read_text(), str(given))
    return parse_config_text(_read_config_text(given), str(path))


def parse_config_text(text: str, source: str = "<config>") -> HftConfig:
    """Validate a config's YAML text (a file's, a ConfigMap key's); raise `ConfigError` naming
    `source` and the line or key path."""
    return parse_config(_yaml_document(text, source), source)


def _yaml_document(text: str, source: str) -> Any:
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{source}: larger than {MAX_CONFIG_BYTES} bytes; not a config")
    try:
        return yaml.load(text, Loader=_ConfigLoader)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: {_yaml_problem(err)}") from None


#: Key names whose values are masked when the config is shown (substrings, any case).
_MASKED_WORDS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "key",
    "auth",
    "credential",
    "cookie",
    "signature",
)
#: ...unless the key names where the secret is (a variable, a file), not the secret.
_REFERENCE_SUFFIXES = ("_env", "_file")
MASK = "***"


def masked_config_text(config: HftConfig) -> str:
    """The config as YAML, every value that may be a secret masked: values of keys that sound
    like one (password, secret, token, key, ...) other than `*_env` / `*_file`, which only
    name where a secret is, and the credentials and secret query parameters of any URL.
    Printed at start and kept in the run directory, so that a run says what it ran with."""
    return yaml.safe_dump(
        _masked(config.model_dump(mode="json")), sort_keys=False, allow_unicode=True, width=100
    )


def _masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: MASK if _secret_key(k, v) else _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    if isinstance(value, str) and "://" in value:
        return _masked_url(value)
    return value


def _secret_key(key: Any, value: Any) -> bool:
    name = str(key).lower()
    return (
        value is not None
        and any(word in name for word in _MASKED_WORDS)
        and not name.endswith(_REFERENCE_SUFFIXES)
    )


def _masked_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return MASK if "@" in url else url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    masked_query = [(k, MASK if _secret_key(k, v) else v) for k, v in query]
    if netloc == parts.netloc and masked_query == query:
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(masked_query, safe="*")))


def read_secret(env: str | None, file: str | os.PathLike[str] | None, key_path: str) -> str | None:
    """The secret held by environment variable `env` or in `file` (one trailing newline
    dropped, as `echo` and most Secret mounts add one), or None when neither is set.

    `key_path` is the secret's key without its suffix (`venues.okx.password`, `store.password`):
    an unset variable, an unreadable, empty or oversized file is a `ConfigError` naming
    `<key_path>_env` or `<key_path>_file`, never the value. Read at use, so that the secret
    lives only in the process that needs it."""
    if env is not None and file is not None:
        raise ConfigError(f"{key_path}_env and {key_path}_file are both set; name one")
    if env is not None:
        where = f"{key_path}_env: environment variable {env}"
        value = os.environ.get(env)
        if value is None:
            raise ConfigError(f"{where} is not set")
    elif file is not None:
        where = f"{key_path}_file: {os.fspath(file)}"
        value = _read_secret_file(file, where)
    else:
        return None
    if value.endswith("\n"):
        value = value[:-2] if value.endswith("\r\n") else value[:-1]
    if not value:
        raise ConfigError(f"{where} is empty")
    return value


def _read_secret_file(file: str | os.PathLike[str], where: str) -> str:
    try:
        with open(file, "rb") as f:
            raw = f.read(MAX_SECRET_BYTES + 1)
    except OSError as err:
        raise ConfigError(f"{where}: cannot read ({err.strerror})") from None
    except ValueError:  # a NUL in the path
        raise ConfigError(f"{where}: not a file name") from None
    if len(raw) > MAX_SECRET_BYTES:
        raise ConfigError(f"{where}: larger than {MAX_SECRET_BYTES} bytes; not a secret")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not UTF-8 text") from None

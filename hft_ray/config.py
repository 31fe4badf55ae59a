"""The root configuration model and its loader.

Every component has one frozen, strict model; the root `HftConfig` nests them. Loading never
raises a pydantic traceback at the user: `load_config` turns every problem into a `ConfigError`
whose message names the key path (`risk.max_order_notional`) and what is wrong with it.
"""

from __future__ import annotations

import copy
import importlib.resources
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hft_ray.venues.presets import SIM_PRESETS, MarketSpec

DEFAULT_CONFIG = "local.yaml"
#: Key paths whose values are never echoed in an error message: they may carry a secret.
_SECRET_WORDS = ("url", "password", "secret", "token", "key")
SYMBOL_RE = re.compile(r"^[A-Z0-9]+/[A-Z0-9]+$")
RESOURCE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
#: Resources Ray defines itself; a venue's node resource must be a custom one.
_RAY_RESOURCES = ("CPU", "GPU", "memory", "object_store_memory")

PositiveFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Probability = Annotated[float, Field(ge=0, le=1)]


class ConfigError(ValueError):
    """A configuration that cannot run; the message is one line naming the key path."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)


class RunConfig(_Frozen):
    """What identifies a run and where its files go."""

    name: str = Field("local", min_length=1, description="Label for the run, part of run_id.")
    seed: int = Field(7, ge=0, description="Seed of the simulated venues; same seed, same books.")
    runs_dir: Path = Field(Path("runs"), description="Run directories go here (journal, report).")
    status_interval_s: PositiveFloat = Field(1.0, description="Seconds between status lines.")
    warmup_s: NonNegFloat = Field(
        0.0,
        description="Latency of the first seconds after start is left out of the report and "
        "the metrics (imports, compiles and cold caches are not the pipeline).",
    )


class ClusterConfig(_Frozen):
    """Where the actors run and how they are placed."""

    address: str | None = Field(
        None, description="Ray address to join; null starts a local Ray instance."
    )
    namespace: str = Field("hft_ray", min_length=1, description="Ray namespace of the run.")
    topology: Literal["auto", "fused", "distributed"] = Field(
        "auto",
        description="fused: one trading-node actor per node runs its venues' feeds, its "
        "symbols' detector, a risk gate spending the risk actor's leases, and the executor, "
        "in one event loop (no Ray hop between book and order); distributed: feeds, detectors, "
        "risk and executors as separate actors. auto: distributed when the cluster has a "
        "CPU for every distributed actor, else fused.",
    )
    trading_nodes: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto",
        description="Fused topology: trading-node actors, symbols sharded among them by hash; "
        "auto: one per Ray node with CPUs to spare (at most one per symbol).",
    )
    placement_strategy: Literal["PACK", "STRICT_PACK", "SPREAD", "STRICT_SPREAD"] = "PACK"
    cpus_per_bundle: PositiveFloat | Literal["auto"] = Field(
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
    local_num_cpus: int | None = Field(
        None, ge=1, description="Logical CPUs of a local Ray instance (default: the machine's)."
    )
    ready_timeout_s: PositiveFloat = Field(120.0, description="Seconds to wait for all actors.")


class MarketOverride(_Frozen):
    """Precision and limits of one market, overriding the venue preset."""

    tick: PositiveFloat | None = None
    lot: PositiveFloat | None = None
    min_amount: NonNegFloat | None = None
    min_notional: NonNegFloat | None = None


class _VenueBase(_Frozen):
    taker_fee: Annotated[float, Field(ge=0, le=0.01)] | None = Field(
        None, description="Taker fee as a fraction (0.001 = 10 bps); default from the venue."
    )
    markets: dict[str, MarketOverride] = Field(default_factory=dict)
    balances: dict[str, NonNegFloat] = Field(
        default_factory=dict, description="Starting balance per asset, in asset units."
    )
    node_resource: str | None = Field(
        None,
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
    """A live venue through ccxt / ccxt.pro: books by websocket, orders by REST."""

    kind: Literal["ccxt"]
    exchange: str | None = Field(None, description="ccxt exchange id (default: the venue's name).")
    sandbox: bool = Field(False, description="Use the exchange's sandbox (testnet) endpoints.")
    urls: dict[str, Any] = Field(
        default_factory=dict, description="Deep-merged over ccxt's `urls` (testnet, local server)."
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Deep-merged over ccxt's `options`."
    )
    api_key_env: str | None = Field(None, description="Environment variable with the API key.")
    secret_env: str | None = Field(None, description="Environment variable with the API secret.")
    password_env: str | None = Field(None, description="Environment variable with a passphrase.")
    watch_depth: int | None = Field(
        None, ge=1, description="Levels asked of watch_order_book (default: the exchange's)."
    )
    stall_timeout_s: PositiveFloat = Field(
        10.0, description="A stream silent this long is resubscribed; its books go invalid."
    )
    backoff_s: tuple[PositiveFloat, PositiveFloat] = Field(
        (0.5, 30.0), description="Reconnect backoff, first and longest wait."
    )


class SimVenueConfig(_VenueBase):
    """A simulated venue: a real exchange's fees and precision, a synthetic book."""

    kind: Literal["sim"] = "sim"
    preset: str | None = Field(None, description="Preset venue (default: the venue's name).")
    lag_ms: NonNegFloat = Field(0.0, description="How far this venue's price lags the common walk.")
    noise_bps: NonNegFloat = Field(0.5, description="Std-dev of the venue's own price noise.")
    spread_bps: NonNegFloat = Field(1.0, description="Quoted spread (at least one tick).")
    level_spacing_bps: NonNegFloat = Field(0.5, description="Gap between levels (min one tick).")
    ack_latency_ms: NonNegFloat = Field(4.0, description="Mean order acknowledgement latency.")
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

    tick_ms: PositiveFloat = Field(25.0, description="Milliseconds between book updates.")
    book_depth: int = Field(20, ge=1, le=400, description="Levels per side of a simulated book.")
    volatility_bps: NonNegFloat = Field(3.0, description="Std-dev of the walk per sqrt(second).")
    dislocations_per_min: NonNegFloat = Field(
        12.0, description="Rate of venue-specific price jumps, per symbol."
    )
    dislocation_bps: tuple[NonNegFloat, NonNegFloat] = Field(
        (30.0, 70.0), description="Size range of a jump, bps of price."
    )
    dislocation_half_life_ms: PositiveFloat = Field(250.0, description="How fast a jump decays.")
    level_notional: PositiveFloat = Field(
        25_000.0, description="Mean quote notional resting on the best level."
    )
    initial_prices: dict[str, PositiveFloat] = Field(
        default_factory=lambda: {"BTC/USDT": 90_000.0, "ETH/USDT": 3_000.0, "SOL/USDT": 150.0}
    )
    order_timeout_ack_ms: PositiveFloat = Field(
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

    depth: int = Field(20, ge=1, le=400, description="Levels per side carried in a BookUpdate.")
    batch_max_rows: int = Field(
        4_096, ge=1, description="Distributed: a feed sends a batch at this many rows."
    )
    batch_max_us: NonNegFloat = Field(
        0.0,
        description="...or when its oldest row is this old, us; 0: every poll's rows leave at "
        "once (a deadline only delays books a poll already brought).",
    )
    max_in_flight: int = Field(8, ge=1, description="Unacknowledged batches per detector.")
    max_book_age_ms: PositiveFloat = Field(
        500.0, description="A book older than this is never tradable."
    )
    max_jump_z: NonNegFloat = Field(
        12.0,
        description="A mid jumping more than this many std-devs of recent mid returns is not "
        "tradable until the next update confirms it; 0 turns the check off.",
    )


class StatArbConfig(_Frozen):
    """Mean reversion of the log mid-price spread between two venues of a symbol."""

    enabled: bool = Field(False, description="Trade spread reversion besides crossed books.")
    lookback: int = Field(200, ge=10, le=100_000, description="Spread updates in the z-score.")
    z_entry: PositiveFloat = Field(3.0, description="Open when |z| reaches this.")
    z_exit: NonNegFloat = Field(0.5, description="Close when |z| falls to this.")
    max_notional: PositiveFloat = Field(500.0, description="Quote notional per leg.")
    min_std_bps: PositiveFloat = Field(
        0.05, description="No signal while the spread's std-dev is below this, bps."
    )

    @model_validator(mode="after")
    def _exit_below_entry(self) -> StatArbConfig:
        if self.z_exit >= self.z_entry:
            raise ValueError(f"z_exit {self.z_exit} must be below z_entry {self.z_entry}")
        return self


class DetectorConfig(_Frozen):
    """The arbitrage detector pool."""

    pool_size: int = Field(1, ge=1, description="Detector actors; symbols sharded by hash.")
    min_profit_bps: NonNegFloat = Field(
        0.0, description="Marginal net edge each added unit must keep, bps of the ask."
    )
    cooldown_ms: NonNegFloat = Field(
        100.0, description="Do not re-emit a (symbol, buy, sell) pair sooner than this."
    )
    statarb: StatArbConfig = Field(default_factory=StatArbConfig)


class RiskConfig(_Frozen):
    """Limits the singleton risk actor enforces."""

    max_order_notional: PositiveFloat = Field(2_000.0, description="Quote notional per leg.")
    max_position: dict[str, PositiveFloat] = Field(
        default_factory=dict,
        description="Absolute change of an asset's balance per venue, in asset units.",
    )
    max_orders_per_s: PositiveFloat = Field(20.0, description="Orders per second, all venues.")
    order_burst: int = Field(10, ge=1, description="Token bucket size for orders.")
    min_edge_bps: NonNegFloat = Field(0.0, description="Minimum expected net edge after fees.")
    max_in_flight_per_symbol: int = Field(1, ge=1, description="Concurrent trades per symbol.")
    max_opportunity_age_ms: PositiveFloat = Field(
        100.0, description="An opportunity older than this when risk sees it is rejected."
    )
    max_book_age_ms: PositiveFloat | None = Field(
        None,
        description="Reject when the newest book behind an opportunity arrived longer ago than "
        "this, ms (default: feed.max_book_age_ms).",
    )
    max_venue_orders_per_s: PositiveFloat | None = Field(
        None, description="Orders per second on any one venue (default: no per-venue limit)."
    )
    venue_order_burst: int = Field(6, ge=1, description="Token bucket size per venue.")
    max_net_position: dict[str, PositiveFloat] = Field(
        default_factory=dict,
        description="Absolute net position of an asset summed over venues, in asset units; "
        "beyond it trading goes REDUCING.",
    )
    max_gross_exposure_quote: PositiveFloat | None = Field(
        None,
        description="Sum over venues and base assets of |position| x price, in quote; no trade "
        "may take it beyond this (default: unlimited).",
    )
    max_daily_loss_quote: PositiveFloat | None = Field(
        None, description="Realized loss since 00:00 UTC that halts trading, quote."
    )
    max_drawdown_quote: PositiveFloat | None = Field(
        None, description="Fall of realized PnL from its peak that turns trading REDUCING, quote."
    )
    max_consecutive_leg_failures: int = Field(
        5, ge=1, description="Trades in a row with a failed leg that halt trading."
    )
    max_reject_rate: Probability = Field(
        0.5, description="Share of venue-rejected orders over the window that turns REDUCING."
    )
    reject_rate_window: int = Field(50, ge=5, description="Orders in the rejection-rate window.")
    lease_ttl_ms: PositiveFloat = Field(
        500.0,
        description="Fused topology: how long a trading node's lease lets its gate approve "
        "without hearing from the risk actor again, ms; past it the gate closes by itself.",
    )
    lease_sync_ms: PositiveFloat = Field(
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

    pool_size: int = Field(1, ge=1, description="Executor actors.")
    order_timeout_ms: PositiveFloat = Field(1_000.0, description="Wait for an ack this long.")
    slippage_bps: NonNegFloat = Field(
        0.0, description="Limit price beyond the detected worst price, bps."
    )
    unwind_policy: Literal["reverse", "proceed", "cancel"] = "reverse"
    unwind_slippage_bps: NonNegFloat = Field(
        30.0, description="Price bound of an unwind order beyond the touch, bps."
    )
    unwind_max_loss_quote: PositiveFloat = Field(
        50.0,
        description="Most a repair order may lose against the price the excess was traded "
        "at, its fee included, quote; it tightens the repair's limit price.",
    )
    unwind_timeout_ms: PositiveFloat = Field(
        1_000.0, description="Wait this long for a repair order's ack before looking it up."
    )


class StoreConfig(_Frozen):
    """Where the journal and state live."""

    url: str | None = Field(
        None, description="redis://host:port/db, or null for the embedded file store."
    )
    password_env: str | None = Field(
        None, description="Environment variable holding the Redis password."
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
            raise ValueError("must not contain a password; name its variable in password_env")
        return v


class MetricsConfig(_Frozen):
    """Prometheus metrics export."""

    enabled: bool = True
    export_port: int = Field(8080, ge=1, le=65535, description="Ray metrics export port.")

    @field_validator("export_port")
    @classmethod
    def _outside_worker_ports(cls, v: int) -> int:
        if 10002 <= v <= 19999:
            raise ValueError(f"{v} lies in Ray's worker port range 10002-19999")
        return v


class StatusConfig(_Frozen):
    """The status actor: health and status of the run over HTTP, on the driver's node."""

    enabled: bool = Field(
        True, description="Run the status actor and serve /health, /status and /metrics."
    )
    host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="Address the HTTP server listens on; 0.0.0.0 for every interface.",
    )
    port: int = Field(
        8787,
        ge=1,
        le=65535,
        description="TCP port of the HTTP server, outside Ray's worker ports 10002-19999.",
    )

    @field_validator("port")
    @classmethod
    def _outside_worker_ports(cls, v: int) -> int:
        if 10002 <= v <= 19999:
            raise ValueError(f"{v} lies in Ray's worker port range 10002-19999")
        return v


class ReplayConfig(_Frozen):
    """Set by `hft-ray replay`: the recorded books that stand in for the venues."""

    files: list[Path] = Field(min_length=1, description="Recorded books, JSON Lines (.gz too).")
    speed: PositiveFloat = Field(1.0, description="Times recorded speed.")
    fast: bool = Field(False, description="As fast as the pipeline takes them, in lockstep.")


class HftConfig(_Frozen):
    """A whole run."""

    run: RunConfig = Field(default_factory=RunConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    symbols: list[str] = Field(min_length=1)
    venues: dict[str, VenueConfig] = Field(min_length=2)
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
        simulated = any(isinstance(v, SimVenueConfig) for v in self.venues.values())
        for symbol in self.symbols if simulated else ():
            if symbol not in self.sim.initial_prices:
                raise ValueError(f"sim.initial_prices: missing a price for {symbol}")
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

    @property
    def mode(self) -> str:
        """`replay` when replaying files, `sim` when every venue is simulated, else `live`."""
        if self.replay is not None:
            return "replay"
        return "sim" if all(v.kind == "sim" for v in self.venues.values()) else "live"


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


def format_validation_error(err: ValidationError) -> str:
    """One line: every failing key path with pydantic's reason."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-"))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] in ("extra_forbidden",):
            msg = "unknown key"
        got = e.get("input")
        secretish = any(word in loc.lower() for word in _SECRET_WORDS)
        if e["type"] not in ("extra_forbidden", "missing") and not (
            secretish or isinstance(got, dict | list)
        ):
            msg = f"{msg} (got {got!r})"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def parse_config(data: Any, source: str = "<config>") -> HftConfig:
    """Validate a decoded YAML document; raise `ConfigError` naming the key path."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections")
    try:
        return HftConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{source}: {format_validation_error(err)}") from None
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def load_config(path: str | os.PathLike[str] | None = None) -> HftConfig:
    """Load a YAML config; without a path, the packaged `configs/local.yaml`."""
    if path is None:
        text = importlib.resources.files("hft_ray.configs").joinpath(DEFAULT_CONFIG).read_text()
        source = f"configs/{DEFAULT_CONFIG}"
    else:
        p = Path(path)
        source = str(p)
        try:
            text = p.read_text()
        except OSError as err:
            raise ConfigError(f"{source}: cannot read ({err.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(
            f"{source}:{where} is not valid YAML ({err.__class__.__name__})"
        ) from None
    return parse_config(data, source)

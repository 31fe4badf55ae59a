"""The journal's records as typed structures: one class per kind, its stored form, a reader.

The journal is the record of truth after a crash and the source of every analytic, so it is
written and read in one place. Each record kind is a frozen dataclass; `encode` gives the
stored form the stores keep (a flat dict: `type`, the schema version `v`, and the fields by
their names, optional fields left out when unset, as older runs wrote them) and `decode`
checks a stored dict field by field and type by type. A record this version cannot read (an
unknown type, a field missing or of the wrong type, a newer schema) is never guessed at:
`read_records` skips it and says where it was and why. Records without `v` (runs before the
schema was versioned) are version 1.
"""

from __future__ import annotations

import dataclasses
import logging
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from hft_ray.store.base import Record
from hft_ray.types import ARB, OrderStatus, Side

#: The schema version every record is written with (`"v"`).
VERSION = 1

Verdict = Literal["approved", "clipped", "rejected"]
UnwindAction = Literal["none", "buy", "sell"]
RiskEventKind = Literal["trip", "resume"]

_log = logging.getLogger(__name__)


class JournalFormatError(ValueError):
    """A stored record this version cannot read; `reason` says what is wrong with it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Leg:
    """One order an intent plans: placed on `venue` under `client_id`."""

    venue: str
    client_id: str
    side: Side
    amount: float
    price: float


@dataclass(frozen=True, slots=True)
class Decision:
    """A decider's verdict on one opportunity (`reason`: the rejection, or the limit that
    bound a clip, or '')."""

    TYPE: ClassVar[str] = "decision"
    ts_ns: int
    opp_id: str
    kind: str
    symbol: str
    buy_venue: str
    sell_venue: str
    size_requested: float
    size_approved: float
    edge_bps: float
    verdict: Verdict
    reason: str
    state: str
    clip: str = ""  # the limit that bound a clip; absent in runs before clips named it


@dataclass(frozen=True, slots=True)
class Intent:
    """An executor is about to send these legs: durable before the first one leaves."""

    TYPE: ClassVar[str] = "intent"
    ts_ns: int
    opp_id: str
    symbol: str
    size: float
    edge_bps: float
    expected_profit_quote: float
    legs: tuple[Leg, ...]
    kind: str = ARB  # absent in runs before statistical arbitrage
    executor: str = ""  # absent in runs before executors reconciled their own intents


@dataclass(frozen=True, slots=True)
class Order:
    """What a venue said about one order (`ts_exchange_ns`: the venue's own time)."""

    TYPE: ClassVar[str] = "order"
    ts_ns: int
    opp_id: str
    client_id: str
    venue: str
    symbol: str
    side: Side
    ts_exchange_ns: int
    status: OrderStatus
    amount: float
    filled: float
    avg_price: float
    fee_quote: float
    reason: str
    fee_base: float = 0.0  # absent in runs before fees taken in base were booked


@dataclass(frozen=True, slots=True)
class Fill:
    """An order's fill, as positions are booked from it."""

    TYPE: ClassVar[str] = "fill"
    ts_ns: int
    opp_id: str
    client_id: str
    venue: str
    symbol: str
    side: Side
    ts_exchange_ns: int
    filled: float
    price: float
    fee_quote: float
    fee_base: float = 0.0


@dataclass(frozen=True, slots=True)
class Unwind:
    """A repair of unequal legs: `action` none (with `reason`), or the order placed for it
    (venue, client id, amount, price, and the most it may lose)."""

    TYPE: ClassVar[str] = "unwind"
    ts_ns: int
    opp_id: str
    policy: str
    excess: float
    action: UnwindAction
    reason: str | None = None
    worst_loss_quote: float | None = None
    venue: str | None = None
    client_id: str | None = None
    amount: float | None = None
    price: float | None = None

    def placed(self) -> tuple[str, str, Side, float] | None:
        """The repair order journaled (venue, client id, side, amount), if one was placed."""
        if self.action == "none" or None in (self.venue, self.client_id, self.amount):
            return None
        side: Side = "buy" if self.action == "buy" else "sell"
        return str(self.venue), str(self.client_id), side, float(self.amount or 0.0)


@dataclass(frozen=True, slots=True)
class Execution:
    """The outcome of one approval (`reason`: set only when no leg was sent, e.g.
    `store_unavailable`)."""

    TYPE: ClassVar[str] = "execution"
    ts_ns: int
    opp_id: str
    symbol: str
    executor: str
    legs_failed: int
    legs_unknown: int
    unwound: bool
    residual_base: float
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class RiskEvent:
    """A breaker tripped (`breaker` its name, `state` what it forces; an operator's halt or
    reduce-only is the `operator` breaker) or every breaker cleared by a resume."""

    TYPE: ClassVar[str] = "risk_event"
    ts_ns: int
    kind: RiskEventKind
    breaker: str
    state: str
    detail: str


JournalRecord = Decision | Intent | Order | Fill | Unwind | Execution | RiskEvent
_KINDS: dict[str, type[Any]] = {
    c.TYPE: c for c in (Decision, Intent, Order, Fill, Unwind, Execution, RiskEvent)
}


@dataclass(frozen=True, slots=True)
class Skipped:
    """A stored record `read_records` could not read: its index in the journal as read, the
    store's `segment@offset` when the store can tell, and why."""

    index: int
    reason: str
    where: str | None = None


# -- field checks -------------------------------------------------------------------------------

_Check = Callable[[Any], Any]  # returns the value as typed, or raises JournalFormatError


def _scalar(t: type) -> _Check:
    def check(x: Any) -> Any:
        if isinstance(x, bool) and t is not bool:
            raise JournalFormatError(f"expected {t.__name__}, found bool")
        if t is float and isinstance(x, int):
            return float(x)
        if not isinstance(x, t):
            raise JournalFormatError(f"expected {t.__name__}, found {type(x).__name__}")
        return x

    return check


def _literal(values: tuple[Any, ...]) -> _Check:
    def check(x: Any) -> Any:
        if x not in values:
            raise JournalFormatError(f"expected one of {list(values)}, found {x!r}")
        return x

    return check


def _optional(inner: _Check) -> _Check:
    return lambda x: None if x is None else inner(x)


def _legs(x: Any) -> tuple[Leg, ...]:
    if not isinstance(x, list | tuple):
        raise JournalFormatError(f"expected a list of legs, found {type(x).__name__}")
    return tuple(_decode_fields(Leg, leg) for leg in x)


def _check_for(hint: Any) -> _Check:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return _literal(typing.get_args(hint))
    if origin in (types.UnionType, typing.Union):
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return _optional(_check_for(inner))
    if origin is tuple:
        return _legs
    return _scalar(hint)


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    check: _Check
    required: bool
    default: Any


_SPECS: dict[type[Any], tuple[_Field, ...]] = {}


def _spec(cls: type[Any]) -> tuple[_Field, ...]:
    spec = _SPECS.get(cls)
    if spec is None:
        hints = typing.get_type_hints(cls)
        spec = tuple(
            _Field(
                f.name,
                _check_for(hints[f.name]),
                f.default is dataclasses.MISSING,
                None if f.default is dataclasses.MISSING else f.default,
            )
            for f in dataclasses.fields(cls)
        )
        _SPECS[cls] = spec
    return spec


def _decode_fields(cls: type[Any], d: Any) -> Any:
    if not isinstance(d, Mapping):
        raise JournalFormatError(f"{cls.__name__.lower()}: not a mapping")
    values = {}
    for f in _spec(cls):
        if f.name not in d:
            if f.required:
                raise JournalFormatError(f"{cls.__name__.lower()}: missing field {f.name!r}")
            values[f.name] = f.default
            continue
        try:
            values[f.name] = f.check(d[f.name])
        except JournalFormatError as err:
            raise JournalFormatError(f"{cls.__name__.lower()}.{f.name}: {err.reason}") from None
    return cls(**values)


# -- the stored form ----------------------------------------------------------------------------


def encode(rec: JournalRecord) -> Record:
    """The stored form of a record: `type`, `v` and every field set (optional ones left out
    when None, as older runs wrote them)."""
    # On the hot path (an intent is encoded before its legs leave): plain attribute reads over
    # names known in advance, no `dataclasses.asdict` (which deep-copies, at 10x the cost).
    out: Record = {"type": rec.TYPE, "v": VERSION}
    for name in _names(type(rec)):
        value = getattr(rec, name)
        if value is not None:
            out[name] = value
    if isinstance(rec, Intent):
        out["legs"] = [
            {"venue": g.venue, "client_id": g.client_id, "side": g.side, "amount": g.amount,
             "price": g.price}
            for g in rec.legs
        ]  # fmt: skip
    return out


def _names(cls: type[Any]) -> tuple[str, ...]:
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


_NAMES: dict[type[Any], tuple[str, ...]] = {}


def decode(d: Record) -> JournalRecord:
    """The typed record of a stored one; raises `JournalFormatError` for an unknown type, a
    missing or mistyped field, or a schema newer than `VERSION`."""
    if not isinstance(d, Mapping):
        raise JournalFormatError(f"not a mapping but {type(d).__name__}")
    kind = d.get("type")
    cls = _KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise JournalFormatError(f"unknown record type {kind!r}")
    version = d.get("v", 1)
    if isinstance(version, bool) or not isinstance(version, int):
        raise JournalFormatError(f"{kind}: version {version!r} is not a number")
    if version > VERSION:
        raise JournalFormatError(f"{kind}: version {version} is newer than {VERSION}")
    rec: JournalRecord = _decode_fields(cls, d)
    return rec


def read_records(
    raw: Sequence[Record], where: Sequence[str | None] | None = None
) -> tuple[list[JournalRecord], list[Skipped]]:
    """Decode a journal as read from a store: the records it could read, in order, and those
    it skipped (`where`: each raw record's `segment@offset`, if the store can tell)."""
    records: list[JournalRecord] = []
    skipped: list[Skipped] = []
    for i, d in enumerate(raw):
        try:
            records.append(decode(d))
        except JournalFormatError as err:
            skipped.append(Skipped(i, err.reason, None if where is None else where[i]))
    return records, skipped


def readable(raw: Sequence[Record], reader: str) -> list[JournalRecord]:
    """`read_records` for a reader that can only say what it skipped in the log (risk's
    restore, an executor's reconciliation)."""
    records, skipped = read_records(raw)
    if skipped:
        first = skipped[0]
        _log.warning(
            "%s: %d journal records unreadable, skipped (first at %d: %s)",
            reader,
            len(skipped),
            first.index,
            first.reason,
        )
    return records


def skipped_summary(skipped: Sequence[Skipped], shown: int = 5) -> dict[str, Any]:
    """The report's account of unreadable records: how many, and the first few, where and why."""
    return {
        "unreadable_records": len(skipped),
        "unreadable": [
            {"index": s.index, "where": s.where, "reason": s.reason} for s in skipped[:shown]
        ],
    }

"""Journal analytics: what a run earned and where, computed from its typed records alone.

Per strategy, symbol and venue pair: opportunities decided, approved, clipped, executed
(an execution with any fill), wins, expected and captured edge, slippage, realized PnL, fees,
failed legs and what repairs cost; then top and bottom pairs, a cumulative PnL curve, edge
per trade, inventory per venue over time, rejections by reason over time, latency histograms
per hop, risk events and the limits that bound clips. The result is plain JSON-able data
(the report's `analytics`; charts are drawn from it elsewhere).

Money is in quote currency, times are ns since the epoch as the records carry them.
Realized PnL is the `Ledger`'s, booked fill by fill over the whole journal in order (so the
PnL curve ends where the report's realized PnL does, for trades whose outcome was journaled):
each fill's change of `realized_pnl_quote`, fees included, belongs to its trade. The
*expected* edge of a trade is its intent's `expected_profit_quote` (the detector's profit
after taker fees, at the approved size); the *captured* edge is the realized PnL of its two
legs, after their fees, the same basis; a repair's realized PnL is apart (`repair_cost_quote`,
positive when it lost), so realized = captured - repair cost. Slippage is expected minus
captured per notional traded (intent size x buy limit price), in bps: positive = worse.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hft_ray.journal import Decision, Execution, Fill, Intent, JournalRecord, RiskEvent, Unwind
from hft_ray.ledger import Ledger

_TOP = 5
_PER_DECADE = 5  # latency histogram buckets per factor of ten
_MIN_US = 0.01  # latencies below this (10 ns) share the first bucket


@dataclass(frozen=True)
class _Opp:
    """What an opportunity was: its strategy, symbol and venues."""

    kind: str
    symbol: str
    buy: str
    sell: str


@dataclass
class _Group:
    strategy: set[str] = field(default_factory=set)
    opportunities: int = 0
    approved: int = 0
    clipped: int = 0
    executed: int = 0
    wins: int = 0
    expected: float = 0.0
    captured: float = 0.0
    notional: float = 0.0
    pnl: float = 0.0
    fees: float = 0.0
    legs_failed: int = 0
    repairs: int = 0
    repair_cost: float = 0.0


@dataclass
class _Trade:
    """What the journal says one opportunity's fills did."""

    legs_pnl: float = 0.0
    repair_pnl: float = 0.0
    fees: float = 0.0
    filled: bool = False


def analytics(records: Sequence[JournalRecord], latency_ns: dict[str, list[int]]) -> dict[str, Any]:
    """The analytics of a run's journal (see the module doc for each quantity's meaning)."""
    opps = _opportunities(records)
    trades, inventory, final = _book_fills(records)
    intents = {r.opp_id: r for r in records if isinstance(r, Intent)}
    groups: dict[tuple[str, str], _Group] = defaultdict(_Group)
    meta: dict[tuple[str, str], tuple[str | None, str | None, str | None]] = {}

    def touched(opp: _Opp) -> list[_Group]:
        keys = [
            (("by_pair", f"{opp.symbol} {opp.buy}->{opp.sell}"), (opp.symbol, opp.buy, opp.sell)),
            (("by_symbol", opp.symbol), (opp.symbol, None, None)),
            (("by_strategy", opp.kind), (None, None, None)),
        ]
        out = []
        for key, info in keys:
            meta[key] = info
            g = groups[key]
            g.strategy.add(opp.kind)
            out.append(g)
        return out

    clips: Counter[str] = Counter()
    for r in records:
        if isinstance(r, Decision):
            for g in touched(opps[r.opp_id]):
                g.opportunities += 1
                g.approved += r.verdict != "rejected"
                g.clipped += r.verdict == "clipped"
            if r.verdict == "clipped":
                clips[r.clip or r.reason or "unspecified"] += 1
        elif isinstance(r, Unwind) and r.opp_id in opps and r.placed() is not None:
            for g in touched(opps[r.opp_id]):
                g.repairs += 1
    curve: list[list[float]] = []
    edge: list[list[float]] = []
    cumulative = 0.0
    executions = sorted((r for r in records if isinstance(r, Execution)), key=lambda r: r.ts_ns)
    for ex in executions:
        trade = trades.get(ex.opp_id, _Trade())
        pnl = trade.legs_pnl + trade.repair_pnl
        cumulative += pnl
        curve.append([ex.ts_ns, cumulative])
        opp = opps.get(ex.opp_id)
        if opp is None:
            continue
        intent = intents.get(ex.opp_id)
        for g in touched(opp):
            g.legs_failed += ex.legs_failed
            g.pnl += pnl
            g.fees += trade.fees
            g.repair_cost -= trade.repair_pnl
            if not trade.filled:
                continue
            g.executed += 1
            g.wins += pnl > 0
            g.captured += trade.legs_pnl
            if intent is not None:
                g.expected += intent.expected_profit_quote
                g.notional += _notional(intent)
        if trade.filled and intent is not None and _notional(intent) > 0:
            n = _notional(intent)
            edge.append(
                [ex.ts_ns, intent.expected_profit_quote / n * 1e4, trade.legs_pnl / n * 1e4]
            )
    out_groups: dict[str, list[dict[str, Any]]] = {
        "by_pair": [],
        "by_symbol": [],
        "by_strategy": [],
    }
    for (kind, key), g in sorted(groups.items()):
        out_groups[kind].append(_group_dict(key, meta[(kind, key)], g))
    ranked = sorted(
        (g for g in out_groups["by_pair"] if g["executed"]),
        key=lambda g: (-g["realized_pnl_quote"], g["key"]),
    )
    return {
        "groups": out_groups,
        "top": ranked[:_TOP],
        "bottom": list(reversed(ranked))[:_TOP],
        "pnl_curve": curve,
        "edge": edge,
        "inventory": inventory,
        "inventory_drift": final,
        "rejections": _rejections(records),
        "latency_us": {hop: _histogram(v) for hop, v in sorted(latency_ns.items())},
        "risk_events": [_risk_event(r) for r in records if isinstance(r, RiskEvent)],
        "clips": dict(clips),
    }


def _opportunities(records: Iterable[JournalRecord]) -> dict[str, _Opp]:
    """Each opportunity's strategy, symbol and venues, from its decision, else its intent."""
    out: dict[str, _Opp] = {}
    for r in records:
        if isinstance(r, Decision):
            out[r.opp_id] = _Opp(r.kind, r.symbol, r.buy_venue, r.sell_venue)
    for r in records:
        if isinstance(r, Intent) and r.opp_id not in out:
            venues = {leg.side: leg.venue for leg in r.legs}
            out[r.opp_id] = _Opp(r.kind, r.symbol, venues.get("buy", ""), venues.get("sell", ""))
    return out


def _book_fills(
    records: Iterable[JournalRecord],
) -> tuple[dict[str, _Trade], dict[str, dict[str, list[list[float]]]], dict[str, dict[str, float]]]:
    """Book every fill through one `Ledger`, in journal order: each trade's share of realized
    PnL (legs apart from a repair, whose client id ends in U), and each venue's balance of
    the fill's two assets after it."""
    ledger = Ledger()
    trades: dict[str, _Trade] = defaultdict(_Trade)
    inventory: dict[str, dict[str, list[list[float]]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if not isinstance(r, Fill):
            continue
        before, fills = ledger.realized_pnl_quote, ledger.fills
        ledger.apply_fill(
            r.venue, r.symbol, r.side, r.filled, r.price, r.fee_quote, r.client_id, r.fee_base
        )
        if ledger.fills == fills:  # a fill journaled twice is booked once
            continue
        trade = trades[r.opp_id]
        delta = ledger.realized_pnl_quote - before
        if r.client_id.endswith("U"):
            trade.repair_pnl += delta
        else:
            trade.legs_pnl += delta
        trade.fees += r.fee_quote
        trade.filled = True
        for asset in r.symbol.split("/"):
            inventory[r.venue][asset].append([r.ts_ns, ledger.position(r.venue, asset)])
    final = {v: dict(assets) for v, assets in ledger.positions.items()}
    return dict(trades), {v: dict(a) for v, a in inventory.items()}, final


def _notional(intent: Intent) -> float:
    return sum(leg.amount * leg.price for leg in intent.legs if leg.side == "buy")


def _group_dict(
    key: str, info: tuple[str | None, str | None, str | None], g: _Group
) -> dict[str, Any]:
    symbol, buy, sell = info
    return {
        "key": key,
        "strategy": "+".join(sorted(g.strategy)),
        "symbol": symbol,
        "buy_venue": buy,
        "sell_venue": sell,
        "opportunities": g.opportunities,
        "approved": g.approved,
        "clipped": g.clipped,
        "executed": g.executed,
        "wins": g.wins,
        "win_rate": g.wins / g.executed if g.executed else 0.0,
        "expected_edge_quote": g.expected,
        "captured_edge_quote": g.captured,
        "slippage_bps": (g.expected - g.captured) / g.notional * 1e4 if g.notional else 0.0,
        "realized_pnl_quote": g.pnl,
        "fees_quote": g.fees,
        "legs_failed": g.legs_failed,
        "repairs": g.repairs,
        "repair_cost_quote": g.repair_cost,
    }


def bucket_ns(span_ns: int) -> int:
    """A bucket width for a time axis of `span_ns`: about 20 buckets for 10 s, 100 for a
    day (the count grows as span^0.18 between), rounded up to 1, 2 or 5 x 10^k ns."""
    span_s = max(span_ns, 1) / 1e9
    count = 20.0 * (max(span_s, 1e-3) / 10.0) ** (math.log(5) / math.log(8640))
    raw = max(span_ns / count, 1.0)
    scale = 10 ** math.floor(math.log10(raw))
    for step in (1, 2, 5, 10):
        if step * scale >= raw * (1 - 1e-12):
            return int(step * scale)
    raise AssertionError("unreachable: 10 x scale >= raw")


def _rejections(records: Sequence[JournalRecord]) -> dict[str, Any]:
    """Rejections by reason, counted per time bucket over the span of every decision."""
    decisions = [r for r in records if isinstance(r, Decision)]
    if not decisions:
        return {"bucket_ns": bucket_ns(0), "start_ns": 0, "by_reason": {}}
    start = min(r.ts_ns for r in decisions)
    span = max(r.ts_ns for r in decisions) - start
    width = bucket_ns(span)
    n = span // width + 1
    by_reason: dict[str, list[int]] = {}
    for r in decisions:
        if r.verdict == "rejected":
            counts = by_reason.setdefault(r.reason, [0] * n)
            counts[(r.ts_ns - start) // width] += 1
    return {"bucket_ns": width, "start_ns": start, "by_reason": dict(sorted(by_reason.items()))}


def _histogram(samples_ns: Sequence[int]) -> dict[str, list[Any]]:
    """Log-spaced buckets (`_PER_DECADE` per factor of ten) from the smallest sample to the
    largest, in microseconds: `counts[i]` samples in [edges[i], edges[i + 1])."""
    if not samples_ns:
        return {"edges": [], "counts": []}
    us = [max(s / 1e3, _MIN_US) for s in samples_ns]
    lo = math.floor(math.log10(min(us)) * _PER_DECADE)
    hi = math.floor(math.log10(max(us)) * _PER_DECADE) + 1
    edges = [float(f"{10 ** (i / _PER_DECADE):.3g}") for i in range(lo, hi + 1)]
    counts = [0] * (len(edges) - 1)
    for x in us:
        i = min(math.floor(math.log10(x) * _PER_DECADE) - lo, len(counts) - 1)
        counts[max(i, 0)] += 1
    return {"edges": edges, "counts": counts}


def _risk_event(r: RiskEvent) -> dict[str, Any]:
    if r.kind == "resume":
        detail = f"cleared {r.detail}" if r.detail else "nothing was tripped"
    else:
        detail = f"{r.breaker} -> {r.state}: {r.detail}"
    return {"ts_ns": r.ts_ns, "kind": r.kind, "detail": detail}


def pair_table(result: dict[str, Any]) -> list[str]:
    """The per-pair lines of the terminal summary: pair, opportunities, executed, win rate,
    realized PnL."""
    rows = result["groups"]["by_pair"]
    if not rows:
        return []
    width = max(len("pair"), *(len(g["key"]) for g in rows))
    lines = [f"  {'pair':<{width}}  {'opps':>7}  {'executed':>8}  {'win rate':>8}  {'pnl':>12}"]
    for g in rows:
        lines.append(
            f"  {g['key']:<{width}}  {g['opportunities']:>7}  {g['executed']:>8}  "
            f"{g['win_rate']:>8.0%}  {g['realized_pnl_quote']:>+12.4f}"
        )
    return lines

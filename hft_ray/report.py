"""The run report: what a run did, with positions rebuilt from its journal alone."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from hft_ray.analytics import analytics
from hft_ray.config import HftConfig
from hft_ray.journal import Decision, Execution, JournalRecord, Order
from hft_ray.latency import STAGES, summarize_us
from hft_ray.ledger import Ledger, positions_equal


def journal_summary(records: list[JournalRecord]) -> dict[str, Any]:
    """Counts and positions that the journal alone supports."""
    ledger = Ledger.from_journal(records)
    types = Counter(r.TYPE for r in records)
    decisions = [r for r in records if isinstance(r, Decision)]
    executions = [r for r in records if isinstance(r, Execution)]
    orders = [r for r in records if isinstance(r, Order)]
    filled = {o.opp_id for o in orders if o.filled > 0}
    return {
        "records": dict(types),
        "approved": sum(1 for r in decisions if r.verdict != "rejected"),
        "rejected": dict(Counter(r.reason for r in decisions if r.verdict == "rejected")),
        "trades": sum(1 for e in executions if e.opp_id in filled),
        "legs_failed": sum(e.legs_failed for e in executions),
        "unwinds": sum(1 for e in executions if e.unwound),
        "orders_by_status": dict(Counter(o.status for o in orders)),
        **ledger.snapshot(),
    }


def build_report(
    *,
    config: HftConfig,
    run_id: str,
    run_dir: Path,
    duration_s: float,
    feed_stats: list[dict[str, Any]],
    detector_stats: list[dict[str, Any]],
    risk_state: dict[str, Any],
    journal: list[JournalRecord],
    latency_ns: dict[str, list[int]],
    placement: list[dict[str, Any]],
    cpus_per_bundle: float,
) -> dict[str, Any]:
    from_journal = journal_summary(journal)
    positions = from_journal["positions"]
    shared = any(p["shared_cores"] for p in placement)
    quotes = sorted({s.split("/")[1] for s in config.symbols})
    return {
        "run_id": run_id,
        "mode": config.mode,
        # Paper venues match orders locally against live books: nothing of theirs is sent.
        "orders_sent_to_venues": config.orders_sent_to_venues,
        "paper_venues": config.paper_venues,
        "run_dir": str(run_dir),
        "duration_s": round(duration_s, 3),
        "venues": list(config.venues),
        "symbols": list(config.symbols),
        "quote_currencies": quotes,
        "book_updates": sum(f["updates"] for f in feed_stats),
        "book_updates_by_venue": {
            v: f["updates"] for v, f in zip(config.venues, feed_stats, strict=True)
        },
        "invalid_books": sum(sum(f["invalid"].values()) for f in feed_stats),
        # Books a venue published that its feed never saw (it fell behind): counted, not lost.
        "books_conflated": sum(int(f.get("conflated", 0)) for f in feed_stats),
        "rows_scanned": sum(int(d.get("rows_scanned", 0)) for d in detector_stats),
        "opportunities": sum(d["opportunities"] for d in detector_stats),
        "opportunities_suppressed": sum(d["suppressed"] for d in detector_stats),
        "approved": risk_state["approved"],
        "clipped": risk_state["clipped"],
        "clipped_by": risk_state["clipped_by"],  # the limit that bound each clip
        "rejected": risk_state["rejected"],
        "trades": risk_state["trades"],
        "legs_failed": risk_state["legs_failed"],
        "unwinds": risk_state["unwinds"],
        "realized_pnl_quote": round(from_journal["realized_pnl_quote"], 8),
        "fees_quote": round(from_journal["fees_quote"], 8),
        "positions": positions,
        "positions_match_journal": positions_equal(positions, risk_state["positions"]),
        "risk_positions": risk_state["positions"],
        "risk_state": risk_state["state"],
        "risk_breakers": risk_state["breakers"],
        "gross_exposure_quote": round(risk_state["gross_exposure_quote"], 8),
        "journal": {
            "records": from_journal["records"],
            "fills": from_journal["fills"],
            "orders_by_status": from_journal["orders_by_status"],
            "write_errors": risk_state.get("journal_errors", 0),
        },
        "latency_us": {name: summarize_us(v) for name, v in sorted(latency_ns.items())},
        "analytics": analytics(journal, latency_ns),
        "placement": {
            "strategy": config.cluster.placement_strategy,
            "cpus_per_bundle": cpus_per_bundle,
            "pinning": "shared" if shared else ("exclusive" if config.cluster.pin_cores else "off"),
            "bundles": placement,
        },
    }


def write_report(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


def format_positions(positions: dict[str, dict[str, float]]) -> list[str]:
    """One line per venue: each asset's balance change, or flat."""
    lines = []
    for venue, assets in sorted(positions.items()):
        moved = "  ".join(f"{a} {q:+.8g}" for a, q in sorted(assets.items()) if abs(q) > 1e-12)
        lines.append(f"  {venue}: {moved or 'flat'}")
    return lines


def human_summary(report: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    quote = "/".join(report["quote_currencies"])
    lat = report["latency_us"]
    lines = [
        f"run {report['run_id']} ({report['mode']}, {report['duration_s']:.1f}s, "
        f"{len(report['venues'])} venues x {len(report['symbols'])} symbols)",
        f"  books {report['book_updates']}  opportunities {report['opportunities']}  "
        f"approved {report['approved']}  rejected {sum(report['rejected'].values())}"
        + (f" {report['rejected']}" if report["rejected"] else ""),
        f"  trades {report['trades']}  legs failed {report['legs_failed']}  "
        f"unwinds {report['unwinds']}",
        f"  realized PnL {report['realized_pnl_quote']:+.4f} {quote}  "
        f"fees {report['fees_quote']:.4f} {quote}  risk {report['risk_state']}  "
        f"positions match journal: {'yes' if report['positions_match_journal'] else 'NO'}, "
        f"venues: {'yes' if report.get('positions_match_venues', True) else 'NO'}",
    ]
    if report.get("paper_venues"):
        sent = "" if report.get("orders_sent_to_venues") else ": no real order was sent"
        lines.append(f"  paper trading on live books ({', '.join(report['paper_venues'])}){sent}")
    for name in ("tick_to_detect", "tick_to_trade"):
        if name in lat and lat[name]["count"]:
            s = lat[name]
            lines.append(
                f"  {name} us: p50 {s['p50']:.0f}  p90 {s['p90']:.0f}  p99 {s['p99']:.0f}  "
                f"max {s['max']:.0f}"
            )
    stages = [name for _, name in STAGES if name in lat and lat[name]["count"]]
    if stages:
        per = "  ".join(f"{n} {lat[n]['p50']:.0f}/{lat[n]['p99']:.0f}" for n in stages)
        lines.append(f"  stages us p50/p99: {per}")
    lines.append(f"  pinning: {report['placement']['pinning']}")
    lines += _replay_lines(report.get("replay"))
    read = report["journal"].get("read") or {}
    if read.get("duplicates") or read.get("missing") or read.get("corrupt_records"):
        where = ", ".join(f"{c['segment']}@{c['offset']}" for c in read.get("corrupt", [])[:5])
        lines.append(
            f"  journal: {read.get('corrupt_records', 0)} corrupt records skipped"
            + (f" ({where})" if where else "")
            + f", {read.get('duplicates', 0)} duplicates dropped, "
            f"{read.get('missing', 0)} missing"
        )
    if read.get("unreadable_records"):
        first = read["unreadable"][0]
        lines.append(
            f"  journal: {read['unreadable_records']} records this version cannot read skipped"
            f" (first #{first['index']}: {first['reason']})"
        )
    return "\n".join(lines)


def _replay_lines(replay: dict[str, Any] | None, shown: int = 5) -> list[str]:
    """What a replay released and skipped, with the first few reasons (file:line: why)."""
    if not replay:
        return []
    unreadable = replay.get("unreadable_files", [])
    malformed = replay.get("malformed_lines", [])
    others = replay.get("other_exchanges", 0) + replay.get("other_symbols", 0)
    held = replay.get("held_s") or 0.0
    lines = [
        f"  replay: {replay['lines']} lines released, {len(malformed)} malformed skipped, "
        f"{others} of venues or symbols outside the run, {len(unreadable)} files cut short"
        + (f", held {held:.1f}s for feeds behind" if held else "")
    ]
    reasons = [*unreadable, *replay.get("unknown", []), *malformed]
    lines += [f"    {r}" for r in reasons[:shown]]
    if len(reasons) > shown:
        lines.append(f"    ... {len(reasons) - shown} more in the report")
    return lines

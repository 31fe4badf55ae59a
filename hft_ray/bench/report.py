"""The terminal summary of a bench report: one line per figure, beside its baseline."""

from __future__ import annotations

from typing import Any


def summary_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    m = report["machine"]
    lines.append(
        f"machine: {m['cpus']} cpus ({m['cpu_model']}), load {m['load_average']}, "
        f"CPU stolen by the hypervisor {report.get('cpu_stolen_share', 0):.1%}, "
        f"scale {report['scale']}"
    )
    if "kernel" in report:
        same, full = report["kernel"]["same_books"], report["kernel"]["full_scan"]
        lines.append(
            f"kernel: {same['kernel_ms']} ms vs reference {same['reference_ms']} ms on the "
            f"same books, x{same['speedup_vs_reference']} (target x{same['target_speedup']}); "
            f"full scan {full['kernel_ms']} ms with {full['crossed_pairs_share']:.2%} "
            f"crossed (target < {full['target_ms']} ms)"
        )
    if "feed" in report:
        feed = report["feed"]
        lines.append(
            f"feed path: {feed['ours']['us_per_update']} us/update "
            f"({feed['ours']['updates_per_s_per_core']}/s per core); baseline "
            f"{feed['baseline_same_run']['us_per_update']} us/update, "
            f"x{feed['speedup_vs_baseline']}; our checksum alone {feed['checksum_alone_us']} us,"
            f" cryptofeed documents {feed['cryptofeed_documented_checksum_us']} us for its own"
        )
    if "ingest" in report:
        ing = report["ingest"]
        rates = ", ".join(
            f"{r['nominal_per_s']:,}/s -> {r['ingested_per_s']:,}/s "
            f"({r['conflated_share']:.1%} conflated)"
            for r in ing["rates"]
        )
        base = ing["baseline_same_run"]
        lines.append(
            f"ingest: {rates}; held {ing['highest_held_per_s']:,}/s (target "
            f"{ing['target_per_s']:,}/s); stages alone {base['total_us_per_update']} us/update "
            f"= {base['bound_per_s_on_these_cores']:,}/s on these cores"
        )
    if "tick_to_trade" in report:
        t2t = report["tick_to_trade"]
        parts = []
        for case in ("floor", "fused", "distributed"):
            for load, figures in t2t[case].items():
                s = figures["tick_to_trade"]
                if s and s["count"]:
                    parts.append(f"{case} {load}: p50 {s['p50']:.0f} p99 {s['p99']:.0f} us")
        lines.append("tick_to_trade: " + "; ".join(parts))
        hops = t2t["hops"]
        lines.append(
            f"hops: actor one-way p50 {hops['actor_one_way']['latency_us']['p50']:.0f} us, "
            "compiled graph 3 stages p50 "
            f"{hops['compiled_graph_3_stages']['latency_us']['p50']:.0f} us; {hops['verdict']}"
        )
    if "memory" in report:
        mem = report["memory"]
        run, base = mem["run"]["total"], mem["baseline_same_run"]["total"]
        lines.append(
            f"memory: run {run['pss_mib']} MiB PSS ({run['rss_mib']} RSS, "
            f"{run['processes']} processes) vs bare Ray {base['pss_mib']} MiB PSS "
            f"({base['processes']}); target < {mem['target_pss_mib']} MiB: "
            f"{'met' if mem['meets_target'] else 'missed'}"
        )
    return lines

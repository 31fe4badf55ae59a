"""The terminal summary of a bench report: one line per figure, beside its baseline."""

from __future__ import annotations

from typing import Any


def summary_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    m = report["machine"]
    lines.append(
        f"machine: {m['cpus']} cpus ({m['cpu_model']}), load {m['load_average']}, "
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

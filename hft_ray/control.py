"""Operating a run from outside it: status through the named status actor (or the risk actor
when none runs), halt and resume through the named risk actor, and positions and PnL rebuilt
from a run's journal alone."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hft_ray import names
from hft_ray.cluster import ClusterError, check_reachable
from hft_ray.config import HftConfig
from hft_ray.ledger import positions_equal
from hft_ray.report import journal_summary
from hft_ray.risk.core import executions_from_journal
from hft_ray.status import risk_lines, with_risk
from hft_ray.store import open_store
from hft_ray.store.base import INTENT

_CALL_TIMEOUT_S = 10.0


@contextlib.contextmanager
def _joined(address: str | None, namespace: str) -> Iterator[None]:
    """Join the running cluster for the duration of the block."""
    import ray

    if address:
        check_reachable(address)
    try:
        ray.init(
            address=address or "auto",
            namespace=namespace,
            logging_level=logging.ERROR,
            log_to_driver=False,
        )
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise ClusterError(f"cannot join the Ray cluster at {address or 'auto'}: {err}") from None
    try:
        yield
    finally:
        ray.shutdown()


def _risk_call(namespace: str, method: str, **kwargs: Any) -> dict[str, Any]:
    import ray

    try:
        risk = ray.get_actor(names.RISK, namespace=namespace)
    except ValueError:
        raise ClusterError(f"no run is active in Ray namespace {namespace!r}") from None
    try:
        result: dict[str, Any] = ray.get(
            getattr(risk, method).remote(**kwargs), timeout=_CALL_TIMEOUT_S
        )
    except ray.exceptions.RayError as err:
        raise ClusterError(
            f"the risk actor did not answer {method} within {_CALL_TIMEOUT_S:.0f}s "
            f"({err.__class__.__name__}); it may be restoring, and the command may still "
            "take effect: check with hft-ray status"
        ) from None
    return result


def call_risk(address: str | None, namespace: str, method: str, **kwargs: Any) -> dict[str, Any]:
    """Call `method` on the risk actor of the run active in `namespace` on a running cluster."""
    with _joined(address, namespace):
        return _risk_call(namespace, method, **kwargs)


def read_status(address: str | None, namespace: str) -> tuple[dict[str, Any], bool]:
    """The status of the run active in `namespace`, and whether it is the status actor's whole
    document (True) or, when no status actor runs, the risk actor's stats alone (False).

    The document's risk part is read from the risk actor at once, so a halt shows straight
    away rather than at the driver's next push."""
    import ray

    with _joined(address, namespace):
        doc: dict[str, Any] | None = None
        try:
            holder: Any = ray.get_actor(names.STATUS, namespace=namespace)
            doc = ray.get(holder.document.remote(), timeout=_CALL_TIMEOUT_S)
        except (ValueError, ray.exceptions.RayError):
            pass  # no status actor: an older run, or status.enabled false
        if doc is None:
            return _risk_call(namespace, "stats"), False
        try:
            risk = _risk_call(namespace, "stats")
        except (ClusterError, ray.exceptions.RayError):
            return doc, True  # risk is restarting: its part as the driver last saw it
        return with_risk(doc, risk), True


def format_status(s: dict[str, Any]) -> str:
    """The risk actor's view of a running run (no status actor), for a terminal."""
    counted = ("approved", "clipped", "rejected", "trades", "legs_failed", "unwinds")
    counts = {k: s[k] for k in (*counted, "in_flight", "fills")}
    counts["rejected_total"] = sum(s["rejected"].values())
    pnl = {
        "realized": s["realized_pnl_quote"],
        "fees": s["fees_quote"],
        "gross_exposure": s["gross_exposure_quote"],
    }
    return "\n".join(risk_lines(s, counts, pnl))


def journal_report(config: HftConfig, run_dir: Path) -> dict[str, Any]:
    """Positions, PnL and counts of a run from its journal alone (the embedded store under
    `run_dir`, or Redis when the config names it, the run id being the directory's name),
    compared with what the run's risk actor held if its report is there."""
    store = open_store(config.store, run_dir.name, run_dir, "report")

    async def read() -> list[dict[str, Any]]:
        try:
            return await store.read_journal()
        finally:
            await store.close()

    journal = asyncio.run(read())
    summary = journal_summary(journal)
    finished = {r.opp_id for r in executions_from_journal(journal)}
    unfinished = sorted(
        r["opp_id"] for r in journal if r.get("type") == INTENT and r["opp_id"] not in finished
    )
    out: dict[str, Any] = {"run_dir": str(run_dir), **summary, "unfinished_intents": unfinished}
    report_file = run_dir / "report.json"
    if report_file.exists():
        held = json.loads(report_file.read_text()).get("risk_positions")
        if held is not None:
            out["risk_positions"] = held
            out["positions_match_risk"] = positions_equal(summary["positions"], held)
    return out

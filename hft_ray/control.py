"""Operating a run from outside it: status through the named status actor (or the risk actor
when none runs), halt and resume through the named risk actor, and positions and PnL rebuilt
from a run's journal alone.

A command reaches one run: the one its `Target` names (an explicit Ray address and namespace,
or a run's recorded address, see `run_registry`), and checks the risk actor it found belongs
to that run before it changes anything."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hft_ray import names, run_registry, startup
from hft_ray.analytics import analytics
from hft_ray.cluster import ClusterError, check_reachable
from hft_ray.config import HftConfig
from hft_ray.journal import Intent, read_records, skipped_summary
from hft_ray.ledger import positions_equal
from hft_ray.report import journal_summary
from hft_ray.risk.core import executions_from_journal
from hft_ray.status import risk_lines, with_risk
from hft_ray.store import open_store

_CALL_TIMEOUT_S = 10.0
DEFAULT_NAMESPACE = "hft_ray"
#: Breakers that say money was lost: clearing them by hand needs the operator's confirmation.
LOSS_BREAKERS = ("max_daily_loss", "max_drawdown")


@dataclass(frozen=True)
class Target:
    """The run a control command acts on."""

    address: str
    namespace: str
    run_id: str | None  # None: whatever run holds the namespace (an explicit --address)

    def describe(self, state: dict[str, Any]) -> str:
        run_id = state.get("run_id") or self.run_id or "?"
        return f"run {run_id} (namespace {self.namespace} at {self.address})"


def target(address: str | None, namespace: str | None, run: str | None) -> Target:
    """An explicit address (or $RAY_ADDRESS) with its namespace; else the run `run` names, or
    the one run live on this host. Never whatever cluster happens to run here."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is not None:
        if run is not None:
            raise ClusterError("give either --address or --run, not both")
        return Target(address, namespace or DEFAULT_NAMESPACE, None)
    try:
        recorded = run_registry.resolve(run)
    except run_registry.RegistryError as err:
        raise ClusterError(str(err)) from None
    if namespace is not None and namespace != recorded.namespace:
        raise ClusterError(
            f"run {recorded.run_id} is in namespace {recorded.namespace}, not {namespace}"
        )
    return Target(recorded.address, recorded.namespace, recorded.run_id)


@contextlib.contextmanager
def _joined(to: Target) -> Iterator[None]:
    """Join the run's cluster for the duration of the block."""
    import ray

    check_reachable(to.address)
    startup.use_token_if_held()
    try:
        ray.init(
            address=to.address,
            namespace=to.namespace,
            logging_level=logging.ERROR,
            log_to_driver=False,
        )
    except ray.exceptions.AuthenticationError:
        raise ClusterError(startup.refused(to.address)) from None
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise ClusterError(f"cannot join the Ray cluster at {to.address}: {err}") from None
    try:
        yield
    finally:
        ray.shutdown()


def _risk_call(to: Target, method: str, **kwargs: Any) -> dict[str, Any]:
    import ray

    try:
        risk = ray.get_actor(names.RISK, namespace=to.namespace)
    except ValueError:
        raise ClusterError(
            f"no run is active in Ray namespace {to.namespace!r} at {to.address}"
        ) from None
    try:
        if to.run_id is not None and method != "stats":
            _risk_call(to, "stats")  # the run check, before anything changes
        result: dict[str, Any] = ray.get(
            getattr(risk, method).remote(**kwargs), timeout=_CALL_TIMEOUT_S
        )
    except ray.exceptions.RayError as err:
        raise ClusterError(
            f"the risk actor did not answer {method} within {_CALL_TIMEOUT_S:.0f}s "
            f"({err.__class__.__name__}); it may be restoring, and the command may still "
            "take effect: check with hft-ray status"
        ) from None
    if to.run_id is not None and result.get("run_id") != to.run_id:
        raise ClusterError(
            f"namespace {to.namespace} at {to.address} now holds run {result.get('run_id')}, "
            f"not {to.run_id}: nothing was changed"
        )
    return result


def call_risk(to: Target, method: str, **kwargs: Any) -> dict[str, Any]:
    """Call `method` on the risk actor of the run `to` names."""
    with _joined(to):
        return _risk_call(to, method, **kwargs)


def loss_breakers(state: dict[str, Any]) -> dict[str, str]:
    """The tripped breakers that say money was lost, with their details."""
    return {
        name: str(b.get("detail", "")) if isinstance(b, dict) else str(b)
        for name, b in state.get("breakers", {}).items()
        if name in LOSS_BREAKERS
    }


def read_status(to: Target) -> tuple[dict[str, Any], bool]:
    """The status of the run `to` names, and whether it is the status actor's whole
    document (True) or, when no status actor runs, the risk actor's stats alone (False).

    The document's risk part is read from the risk actor at once, so a halt shows straight
    away rather than at the driver's next push."""
    import ray

    with _joined(to):
        doc: dict[str, Any] | None = None
        try:
            holder: Any = ray.get_actor(names.STATUS, namespace=to.namespace)
            doc = ray.get(holder.document.remote(), timeout=_CALL_TIMEOUT_S)
        except (ValueError, ray.exceptions.RayError):
            pass  # no status actor: an older run, or status.enabled false
        if doc is None:
            return _risk_call(to, "stats"), False
        try:
            risk = _risk_call(to, "stats")
        except (ClusterError, ray.exceptions.RayError):
            if to.run_id is not None and doc.get("run_id") != to.run_id:
                raise ClusterError(
                    f"namespace {to.namespace} at {to.address} now holds run "
                    f"{doc.get('run_id')}, not {to.run_id}"
                ) from None
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

    journal, skipped = read_records(asyncio.run(read()))
    summary = journal_summary(journal)
    finished = {r.opp_id for r in executions_from_journal(journal)}
    unfinished = sorted(
        r.opp_id for r in journal if isinstance(r, Intent) and r.opp_id not in finished
    )
    out: dict[str, Any] = {
        "run_dir": str(run_dir),
        **summary,
        "unfinished_intents": unfinished,
        "journal_read": {**store.last_read.summary(), **skipped_summary(skipped)},
        "analytics": analytics(journal, {}),
    }
    report_file = run_dir / "report.json"
    if report_file.exists():
        held = json.loads(report_file.read_text()).get("risk_positions")
        if held is not None:
            out["risk_positions"] = held
            out["positions_match_risk"] = positions_equal(summary["positions"], held)
    return out

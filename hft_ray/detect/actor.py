"""DetectorActor: runs a DetectorCore over each batch and forwards what it finds to risk."""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import ray

from hft_ray import heap, metrics, names
from hft_ray.clock import LiveClock
from hft_ray.config import HftConfig
from hft_ray.latency import LatencySamples, Warmup
from hft_ray.markets import Markets
from hft_ray.pinning import pin_actor
from hft_ray.remote import hot_path
from hft_ray.types import Universe

if TYPE_CHECKING:
    from hft_ray.detect.core import DetectorCore


@ray.remote(max_restarts=-1, max_task_retries=-1)
class DetectorActor:
    def __init__(
        self,
        config: HftConfig,
        universe: Universe,
        markets: Markets,
        index: int,
        id_prefix: str,
        cores: list[int],
    ) -> None:
        # Imported here, in the detector's own process: the driver and risk hold handles to
        # this class without loading numba for it.
        from hft_ray.detect.core import DetectorCore

        self.placement = pin_actor(cores, config.cluster)
        # A restarted detector starts counting again: a fresh incarnation tag keeps its
        # opportunity ids, and so client order ids, from repeating the last incarnation's.
        incarnation = secrets.token_hex(2)
        prefix = f"{id_prefix}d{index}{incarnation}n"
        self._core: DetectorCore = DetectorCore(config, universe, markets, LiveClock(), prefix)
        self._core.warm_up()
        # By name, not by handle: a restarted detector finds the singleton the same way.
        self._risk = ray.get_actor(names.RISK)
        self._latency = LatencySamples()
        self._warmup = Warmup(config.run.warmup_s)
        # A synchronous actor has no loop to flush from: batches and stats calls push when due.
        self._metrics = metrics.MetricsFlusher(config.metrics.enabled)

    def ready(self) -> dict[str, object]:
        self._warmup.start(time.monotonic_ns())
        return self.placement

    def ping(self) -> bool:
        return True

    def warm(self) -> None:
        """Reach risk once, so the first opportunity does not pay for the connection."""
        ray.get(self._risk.ping.remote())
        heap.freeze()

    @hot_path
    def on_batch(self, rows: np.ndarray, sent_mono_ns: int = 0) -> int:
        """Scan a feed's batch (sent at `sent_mono_ns`) and hand what it found to risk,
        without waiting for risk."""
        taken = time.monotonic_ns()
        found = self._core.on_batch(rows)
        if self._warmup.over(taken):
            self._latency.extend(self._core.tick_to_detect_ns)
            self._metrics.sample_ns(metrics.TICK_TO_DETECT, self._core.tick_to_detect_ns)
        self._core.tick_to_detect_ns.clear()
        if found:
            stamped = [
                o._replace(batch_sent_mono_ns=sent_mono_ns, detector_in_mono_ns=taken)
                for o in found
            ]
            self._risk.submit.remote(stamped)
        self._metrics.maybe_push(self._metrics_reading)
        return len(found)

    def _metrics_reading(self) -> metrics.Reading:
        return metrics.detector_reading(
            opportunities=self._core.opportunities, suppressed=self._core.suppressed
        )

    def set_positions(self, positions: dict[str, dict[str, float]]) -> None:
        self._core.set_positions(positions)

    def barrier(self) -> bool:
        """Return once risk has taken every opportunity sent before this call."""
        self._metrics.maybe_push(self._metrics_reading, force=True)
        return bool(ray.get(self._risk.ping.remote()))

    def stats(self) -> dict[str, Any]:
        self._metrics.maybe_push(self._metrics_reading)
        return {
            "updates": self._core.updates,
            "rows_scanned": self._core.rows_scanned,
            "opportunities": self._core.opportunities,
            "suppressed": self._core.suppressed,
        }

    def latency_samples(self) -> dict[str, list[int]]:
        return {"tick_to_detect": self._latency.values()}

"""What each process imports: a worker that only holds a handle to an actor, or creates one,
must not load ccxt (about 80 MiB a process) or numba (about 120 MiB): they are imported where
a live venue or a kernel runs, and only there."""

from __future__ import annotations

import subprocess
import sys

import pytest

#: Modules a process loads to create, or hold a handle to, each actor; and the driver's.
LIGHT = (
    "hft_ray.feed.actor",
    "hft_ray.detect.actor",
    "hft_ray.execute.actor",
    "hft_ray.risk.actor",
    "hft_ray.node.actor",
    "hft_ray.venues.sim",
    "hft_ray.runner",
    "hft_ray.cli",
    "hft_ray.status",
)


@pytest.mark.parametrize("module", LIGHT)
def test_loading_an_actor_module_loads_neither_ccxt_nor_numba(module: str) -> None:
    probe = f"import sys, {module}; print(sorted({{'ccxt', 'numba'}} & set(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]", (module, out.stdout)

"""Where a run can be reached: its Ray address and namespace, recorded by its driver.

Control commands (`status`, `halt`, `resume`) act on one run, never on whatever cluster
happens to run on the host. A driver records its run twice: `<run_dir>/address.json`, which
stays with the run's journal, and a file in the host's state directory
(`$HFT_RAY_STATE_DIR`, default `~/.hft_ray/runs`), removed when the run stops, so that
`hft-ray halt` with no arguments finds the one run live on this host and refuses to guess
when there are several.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

ADDRESS_FILE = "address.json"
STATE_DIR_ENV = "HFT_RAY_STATE_DIR"


class RegistryError(RuntimeError):
    """No run, or no single run, matches what a control command was asked to reach."""


class RunAddress(BaseModel):
    """What a control command needs to reach a run, and to check it reached that run."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    run_id: str
    run_dir: str
    address: str  # the GCS address, host:port
    namespace: str
    driver_pid: int
    driver_host: str
    started_ray: bool  # the driver started this Ray instance (it ends with the run)
    started_unix: float
    session_dir: str = ""  # Ray's session directory on the driver's node: its logs are there
    # A local instance's own processes (GCS, raylet, ...) as (pid, start time in clock
    # ticks since boot): a pid the kernel has since given to another process is left alone.
    ray_procs: tuple[tuple[int, int], ...] = ()

    def driver_alive(self) -> bool:
        """Whether the recording driver still runs (only knowable on its own host)."""
        if self.driver_host != os.uname().nodename:
            return True
        return _alive(self.driver_pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV) or Path.home() / ".hft_ray" / "runs")


def _write(path: Path, run: RunAddress) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(run.model_dump_json(indent=2) + "\n")
    os.replace(tmp, path)


def record(run: RunAddress) -> None:
    """Record a starting run in its directory and in this host's state directory."""
    _write(Path(run.run_dir) / ADDRESS_FILE, run)
    _write(state_dir() / f"{run.run_id}.json", run)


def forget(run_id: str) -> None:
    """A run that stopped is no longer live on this host (its run directory keeps the record)."""
    (state_dir() / f"{run_id}.json").unlink(missing_ok=True)


def _read(path: Path) -> RunAddress:
    try:
        return RunAddress.model_validate(json.loads(path.read_text()))
    except OSError as err:
        raise RegistryError(f"{path}: cannot read ({err.strerror})") from None
    except (ValueError, ValidationError):
        raise RegistryError(f"{path}: not a run address record") from None


def _recorded() -> list[RunAddress]:
    """Every readable record in this host's state directory."""
    runs = []
    for path in sorted(state_dir().glob("*.json")):
        try:
            runs.append(_read(path))
        except RegistryError:
            continue
    return runs


def live_runs() -> list[RunAddress]:
    """Runs recorded on this host whose driver still runs."""
    return [run for run in _recorded() if run.driver_alive()]


def orphans() -> list[RunAddress]:
    """Runs recorded on this host whose driver died without stopping them (SIGKILL, OOM)."""
    return [run for run in _recorded() if not run.driver_alive()]


def start_time(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot (None: no such process)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return out


def process_tree(roots: list[int]) -> list[int]:
    """`roots` and every process descended from them."""
    children = _children()
    seen: list[int] = []
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.append(pid)
            todo.extend(children.get(pid, ()))
    return seen


def reap(run: RunAddress, timeout_s: float = 5.0) -> list[int]:
    """End what a dead driver's local Ray instance left running (its agents would hold the
    metrics and dashboard ports for a minute); return the pids that were still alive. A run
    that joined someone else's cluster leaves nothing of ours to reap: Ray ends its actors
    with the driver."""
    ours = [pid for pid, started in run.ray_procs if start_time(pid) == started]
    alive = process_tree(ours) if run.started_ray else []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(_alive(p) for p in alive):
            time.sleep(0.05)
    forget(run.run_id)
    return alive


def resolve(run: str | None) -> RunAddress:
    """The run a control command acts on: `run` names a run directory or a run id recorded on
    this host; without it, the one live run on this host."""
    if run is not None:
        as_dir = Path(run)
        if (as_dir / ADDRESS_FILE).exists():
            return _read(as_dir / ADDRESS_FILE)
        recorded = state_dir() / f"{run}.json"
        if recorded.exists():
            return _read(recorded)
        raise RegistryError(
            f"no run {run!r}: neither a run directory with {ADDRESS_FILE} nor a run live on "
            "this host"
        )
    live = live_runs()
    if not live:
        raise RegistryError(
            "no run is live on this host: name one with --run RUN_DIR, or its cluster with "
            "--address"
        )
    if len(live) > 1:
        listed = ", ".join(f"{r.run_id} ({r.run_dir})" for r in live)
        raise RegistryError(
            f"{len(live)} runs are live on this host ({listed}): pick one with --run"
        )
    return live[0]

"""Memory: peak RSS and PSS of a run's processes, per process kind and of the whole tree.

A local `ray.init` starts every Ray process (gcs_server, raylet, the dashboard and its module
processes, the agents, the workers) as a descendant of the driver, so one walk of the process
tree below the command finds them all. RSS counts every shared page in full in each process
(the interpreter, numpy, the object store), so summed RSS overstates what a run costs; PSS
divides each shared page among the processes that map it, and the sum of PSS over the tree is
the memory the run really holds. Both come from `/proc/<pid>/smaps_rollup`; where that is
unreadable, PSS falls back to `VmRSS` from `/proc/<pid>/status` and the process is counted in
`pss_from_rss`.

The baseline, measured the same way in the same bench run, is a bare local Ray (dashboard on,
no actors held) kept up for as long as the run trades: the part of a run's memory that is Ray's
own, before hft_ray adds anything.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from hft_ray.bench.common import Scale

TARGET_PSS_MIB = 2048
MIB = 1024 * 1024

#: Seconds a command may take beyond its own duration (Ray start-up, actors, shutdown) before
#: it is interrupted as a user's Ctrl-C would.
STARTUP_AND_SHUTDOWN_S = 120.0
#: Seconds an interrupted command gets to stop cleanly before its process group is killed.
STOP_GRACE_S = 30.0

#: Ray's own processes, by a path in their command line (before any process title is set).
_SCRIPT_KINDS = (
    ("ray/dashboard/dashboard.py", "dashboard"),
    ("ray/dashboard/agent.py", "dashboard_agent"),
    ("ray/_private/runtime_env/agent/main.py", "runtime_env_agent"),
    ("ray/_private/log_monitor.py", "log_monitor"),
    ("ray/autoscaler/_private/monitor.py", "monitor"),
    ("ray/_private/workers/default_worker.py", "worker:IDLE"),
)
_BINARY_KINDS = {"gcs_server": "gcs_server", "raylet": "raylet"}
#: Process titles Ray sets with setproctitle that are not workers.
_TITLE_KINDS = {"DashboardAgent": "dashboard_agent", "RuntimeEnvAgent": "runtime_env_agent"}
#: A worker's title is `ray::<task name>` while it runs a task and `ray::<ActorClass>` between
#: calls: `ray::IDLE`, `ray::_node_cores`, `ray::FeedActor.start`, and for a named actor's
#: creation `ray::<actor name>:<ActorClass>.__init__`.
_RAY_TITLE = re.compile(r"^ray::(\S+)")
#: The dashboard head's module processes (`ray-dashboard-MetricsHead-0 (...)`) and the
#: multiprocessing forkserver it starts them from.
_DASHBOARD_MODULE = re.compile(r"^ray-dashboard-|ray\.dashboard\.subprocesses")


@dataclass(frozen=True)
class ProcessMemory:
    """One process of the tree at one moment; sizes in bytes."""

    pid: int
    ppid: int
    kind: str
    rss: int
    pss: int
    pss_from_rss: bool  # smaps_rollup was unreadable: `pss` is the RSS, an upper bound
    command: str


def kind_of(command: str) -> str | None:
    """The kind of a Ray process from its command line or process title; None when it is
    none of Ray's (the caller decides: the driver, a helper of its parent, or `other`)."""
    title = _RAY_TITLE.match(command)
    if title:
        name = title.group(1).rpartition(":")[2].split(".")[0]
        return _TITLE_KINDS.get(name, f"worker:{name}")
    if _DASHBOARD_MODULE.search(command):
        return "dashboard"
    argv = command.split()
    if not argv:
        return None
    binary = _BINARY_KINDS.get(os.path.basename(argv[0]))
    if binary:
        return binary
    for arg in argv[1:3]:
        for path, kind in _SCRIPT_KINDS:
            if arg.endswith(path):
                return kind
    return None


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:  # gone, a zombie, or not ours to read
        return None


def _stat(pid: int) -> tuple[int, str] | None:
    """(ppid, state) of `pid`; the fields after the parenthesised name, which may hold spaces."""
    text = _read(f"/proc/{pid}/stat")
    if text is None:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    return int(fields[1]), fields[0]


def _kib_field(text: str, name: str) -> int | None:
    match = re.search(rf"^{name}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


def _memory(pid: int) -> tuple[int, int, bool] | None:
    """(rss, pss, pss_from_rss) of `pid`, or None once it holds no memory (exited)."""
    rollup = _read(f"/proc/{pid}/smaps_rollup")
    if rollup:
        rss, pss = _kib_field(rollup, "Rss"), _kib_field(rollup, "Pss")
        if rss is not None and pss is not None:
            return rss, pss, False
    status = _read(f"/proc/{pid}/status")
    rss = _kib_field(status, "VmRSS") if status else None
    return (rss, rss, True) if rss is not None else None


def _descendants(root_pid: int) -> list[tuple[int, int]]:
    """(pid, ppid) of `root_pid` and every live process below it, parents before children."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _stat(int(entry))
        if stat is not None and stat[1] != "Z":
            children.setdefault(stat[0], []).append(int(entry))
    root = _stat(root_pid)
    if root is None or root[1] == "Z":
        return []
    found = [(root_pid, root[0])]
    for pid, _ in found:
        found.extend((child, pid) for child in sorted(children.get(pid, [])))
    return found


def sample_tree(root_pid: int) -> list[ProcessMemory]:
    """Every live process from `root_pid` down, with its kind and memory.

    `root_pid` is the `driver`. A process none of Ray's kinds describes is counted with its
    parent (the dashboard's multiprocessing helpers, a worker's own subprocess), or as `other`
    when its parent is the driver. Processes that exit while the tree is read are left out.
    """
    kinds: dict[int, str] = {}
    out = []
    for pid, ppid in _descendants(root_pid):
        command = (_read(f"/proc/{pid}/cmdline") or "").replace("\0", " ").strip()
        memory = _memory(pid)
        if memory is None:
            continue
        if pid == root_pid:
            kind = "driver"
        else:
            parent = kinds.get(ppid, "driver")
            kind = kind_of(command) or ("other" if parent == "driver" else parent)
        kinds[pid] = kind
        out.append(ProcessMemory(pid, ppid, kind, memory[0], memory[1], memory[2], command))
    return out


class _Peaks:
    """Peaks over samples: per kind of the summed sizes and of the process count, and of the
    whole tree's sums."""

    def __init__(self) -> None:
        self.samples = 0
        self.kinds: dict[str, dict[str, int]] = {}
        self.total = {"rss_bytes": 0, "pss_bytes": 0, "processes": 0}
        self.pss_from_rss: set[int] = set()

    def add(self, tree: list[ProcessMemory]) -> None:
        if not tree:
            return
        self.samples += 1
        sums: dict[str, dict[str, int]] = {}
        for p in tree:
            s = sums.setdefault(p.kind, {"rss_bytes": 0, "pss_bytes": 0, "processes": 0})
            s["rss_bytes"] += p.rss
            s["pss_bytes"] += p.pss
            s["processes"] += 1
            if p.pss_from_rss:
                self.pss_from_rss.add(p.pid)
        whole = {k: sum(s[k] for s in sums.values()) for k in self.total}
        _raise(self.total, whole)
        for kind, now in sums.items():
            _raise(self.kinds.setdefault(kind, dict.fromkeys(now, 0)), now)


def _raise(peak: dict[str, int], now: dict[str, int]) -> None:
    for key, value in now.items():
        peak[key] = max(peak[key], value)


def _tail(f: IO[bytes], chars: int = 2000) -> str:
    f.seek(0)
    return f.read().decode(errors="replace")[-chars:]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Send `proc` SIGINT (hft-ray run stops cleanly on it, as on Ctrl-C); kill its process
    group if it does not stop in time."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _reap_group(pgid: int) -> None:
    """End what the command left behind in its own process group (Ray's processes normally
    exit with their driver): TERM, a grace period, then KILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return


def measure_command(
    argv: list[str], seconds: float, interval_s: float = 0.5, cwd: Path | None = None
) -> dict[str, Any]:
    """Run `argv` (in its own process group, in `cwd`) and sample its process tree every
    `interval_s` until it exits, or until `seconds` have passed, when it is interrupted.

    Returns sizes in bytes: per kind the peak over samples of the kind's summed RSS and PSS
    and of its process count, the same peaks for the whole tree, the number of samples, how
    many processes had PSS replaced by RSS, the exit status (negative: killed by that signal),
    whether the bound stopped it, and the tail of its stderr. Also the CPU the sampling took
    (`sampler_cpu_s`): the kernel walks every page of a process to sum its PSS, about 25 ms
    for a Ray worker on a busy 2-core machine, so a whole run's tree takes most of a second
    and the interval is then only a lower bound.
    """
    if not argv:
        raise ValueError("measure_command: argv is empty")
    if seconds <= 0 or interval_s <= 0:
        raise ValueError(
            f"measure_command: seconds ({seconds}) and interval_s ({interval_s}) must be > 0"
        )
    peaks = _Peaks()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=cwd, start_new_session=True)
        started, cpu = time.monotonic(), time.process_time()
        stopped_at_bound = False
        try:
            while proc.poll() is None:
                sampled = time.monotonic()
                peaks.add(sample_tree(proc.pid))
                if sampled - started > seconds:
                    stopped_at_bound = True
                    _stop(proc)
                    break
                time.sleep(max(0.0, interval_s - (time.monotonic() - sampled)))
        finally:
            if proc.poll() is None:
                _stop(proc)
            _reap_group(proc.pid)
        stderr_tail = _tail(err)
        cpu = time.process_time() - cpu
    return {
        "command": argv,
        "exit_status": proc.returncode,
        "stopped_at_bound": stopped_at_bound,
        "samples": peaks.samples,
        "interval_s": interval_s,
        "sampler_cpu_s": round(cpu, 2),
        "total": peaks.total,
        "kinds": dict(sorted(peaks.kinds.items())),
        "pss_from_rss": len(peaks.pss_from_rss),
        "stderr_tail": stderr_tail,
    }


def _mib(sizes: dict[str, int]) -> dict[str, float | int]:
    return {
        "rss_mib": round(sizes["rss_bytes"] / MIB, 1),
        "pss_mib": round(sizes["pss_bytes"] / MIB, 1),
        "processes": sizes["processes"],
    }


def _in_mib(measured: dict[str, Any]) -> dict[str, Any]:
    if measured["exit_status"] != 0 or measured["stopped_at_bound"]:
        raise RuntimeError(
            f"memory bench: {' '.join(measured['command'])} "
            + ("did not finish in time" if measured["stopped_at_bound"] else "failed")
            + f" (exit status {measured['exit_status']}):\n{measured['stderr_tail']}"
        )
    return {
        "command": measured["command"],
        "samples": measured["samples"],
        "sampler_cpu_s": measured["sampler_cpu_s"],
        "pss_from_rss": measured["pss_from_rss"],
        "total": _mib(measured["total"]),
        "kinds": {kind: _mib(sizes) for kind, sizes in measured["kinds"].items()},
    }


def _absolute_config(run_args: Sequence[str]) -> list[str]:
    """`run_args` with a `--config` path made absolute: the run starts in a scratch directory
    (so that its journal and report stay out of the caller's tree)."""
    args = list(run_args)
    for i, arg in enumerate(args):
        if arg == "--config" and i + 1 < len(args):
            args[i + 1] = str(Path(args[i + 1]).resolve())
        elif arg.startswith("--config="):
            args[i] = "--config=" + str(Path(arg.split("=", 1)[1]).resolve())
    return args


def _config_in(topology: str) -> str:
    """The packaged config in `topology`, as YAML."""
    import yaml

    from hft_ray.config import load_config

    data = load_config().model_dump(mode="json")
    data["cluster"]["topology"] = topology
    return str(yaml.safe_dump(data))


def bench_memory(
    scale: Scale, run_args: Sequence[str] = (), interval_s: float = 0.5
) -> dict[str, Any]:
    """Peak memory of `hft-ray run --duration <scale.run_seconds> [run_args]` (the packaged
    config unless `run_args` names one; local Ray with its dashboard), beside a bare local Ray
    held up as long, per process kind and of the whole run, in MiB."""
    with tempfile.TemporaryDirectory(prefix="hft-ray-bench-memory-") as scratch:
        cwd = Path(scratch)
        run_argv = [
            *(sys.executable, "-m", "hft_ray.cli", "run"),
            *("--duration", str(scale.run_seconds), "--report", str(cwd / "report.json")),
            *_absolute_config(run_args),
        ]
        bare_argv = [
            sys.executable,
            "-c",
            "import os, time, ray; os.environ.setdefault('RAY_AUTH_MODE', 'disabled'); "
            f"ray.init(logging_level='WARNING'); time.sleep({scale.run_seconds}); ray.shutdown()",
        ]
        bound = scale.run_seconds + STARTUP_AND_SHUTDOWN_S
        ours = _in_mib(measure_command(run_argv, bound, interval_s, cwd))
        baseline = _in_mib(measure_command(bare_argv, bound, interval_s, cwd))
        others = {}
        if scale.name == "full" and not run_args:
            # The other topology of the same run, for comparison (the default picks fused
            # on a machine with fewer CPUs than distributed actors).
            for topology in ("fused", "distributed"):
                path = cwd / f"{topology}.yaml"
                path.write_text(_config_in(topology))
                argv = [*run_argv, "--config", str(path)]
                others[topology] = _in_mib(measure_command(argv, bound, interval_s, cwd))
    pss = ours["total"]["pss_mib"]
    return {
        "run": ours,
        "by_topology": {t: m["total"] for t, m in others.items()},
        "baseline_same_run": baseline,
        "over_baseline_pss_mib": round(pss - baseline["total"]["pss_mib"], 1),
        "interval_s": interval_s,
        "target_pss_mib": TARGET_PSS_MIB,
        "meets_target": pss < TARGET_PSS_MIB,
    }

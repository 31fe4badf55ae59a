"""Core assignment, and pinning that really sets every thread's affinity."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from hft_ray.pinning import allowed_cores, assign_cores


def test_one_distinct_core_per_bundle_while_cores_last() -> None:
    out = assign_cores(["a", "a", "b"], {"a": [2, 3], "b": [0]})
    assert out == [([2], False), ([3], False), ([0], False)]


def test_more_bundles_than_cores_degrades_to_sharing() -> None:
    out = assign_cores(["a", "a", "a"], {"a": [4, 5]})
    assert [cores for cores, _ in out] == [[4], [5], [4]]
    assert all(shared for _, shared in out)


PINNED_CHILD = textwrap.dedent(
    """
    import sys, threading, time
    from hft_ray.pinning import pin_process_threads
    stop = threading.Event()
    threads = [threading.Thread(target=stop.wait) for _ in range(3)]
    for t in threads:
        t.start()
    print(pin_process_threads([int(sys.argv[1])]), flush=True)
    sys.stdin.readline()
    stop.set()
    """
)


def cpus_allowed(pid: int) -> dict[int, str]:
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                out[int(task.name)] = line.split(":", 1)[1].strip()
    return out


def test_every_thread_of_the_process_is_pinned() -> None:
    core = allowed_cores()[-1]
    proc = subprocess.Popen(
        [sys.executable, "-c", PINNED_CHILD, str(core)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == f"[{core}]"
        threads = cpus_allowed(proc.pid)
        assert len(threads) >= 4
        assert set(threads.values()) == {str(core)}
        proc.stdin.write("\n")
        proc.stdin.flush()
    finally:
        proc.wait(10)
    assert os.sched_getaffinity(0) == set(allowed_cores())  # the parent is untouched

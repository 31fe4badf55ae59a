"""Core assignment, and pinning that really sets every thread's affinity."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hft_ray.pinning import allowed_cores, assign_cores


def test_one_distinct_core_per_bundle_while_cores_last() -> None:
    out = assign_cores(["a", "a", "b"], {"a": [2, 3], "b": [0]})
    assert out == [([2], False), ([3], False), ([0], False)]


def test_more_bundles_than_cores_degrades_to_sharing() -> None:
    out = assign_cores(["a", "a", "a"], {"a": [4, 5]})
    assert out == [([4], False), ([5], True), ([5], True)]


PIPELINE = ["feed", "feed", "detector", "risk", "executor"]


def test_feeds_and_risk_keep_their_own_cores_and_the_executor_shares() -> None:
    out = assign_cores(["n"] * 5, {"n": [0, 1, 2, 3]}, PIPELINE)
    by_role = dict(zip(["feed0", "feed1", "detector", "risk", "executor"], out, strict=True))
    assert [by_role[r][1] for r in ("feed0", "feed1", "risk")] == [False, False, False]
    assert by_role["detector"] == by_role["executor"] == ([3], True)


def test_with_far_more_bundles_than_cores_the_load_is_even_and_feeds_apart() -> None:
    roles = ["feed", "feed", "feed", "detector", "risk", "executor"]
    out = assign_cores(["n"] * 6, {"n": [0, 1]}, roles)
    # Dealt in priority order (feeds, risk, detector, executor), round-robin: three apiece,
    # the feeds alternate, and risk does not land on the core that carries two feeds.
    assert out == [([0], True), ([1], True), ([0], True), ([0], True), ([1], True), ([1], True)]


def test_a_one_core_node_shares_its_core_while_other_nodes_stay_exclusive() -> None:
    out = assign_cores(
        ["big", "small", "small", "big"], {"big": [0, 1], "small": [7]}, PIPELINE[1:]
    )
    assert out == [([0], False), ([7], True), ([7], True), ([1], False)]


def test_every_assignment_is_even_distinct_while_cores_last_and_says_when_it_shares() -> None:
    roles = ["executor", "feed", "risk", "detector", "feed", "executor", "detector", "feed"]
    for k in range(1, 6):
        for n in range(1, len(roles) + 1):
            node_cores = {"n": list(range(10, 10 + k))}
            out = assign_cores(["n"] * n, node_cores, roles[:n])
            cores = [c[0] for c, _ in out]
            assert set(cores) <= set(node_cores["n"])
            load = {core: cores.count(core) for core in node_cores["n"]}
            assert max(load.values()) - min(load.values()) <= 1, (k, n, out)
            assert all(shared == (load[c[0]] > 1) for c, shared in out)
            if n <= k:
                assert len(set(cores)) == n
            # No bundle shares while a less critical one has a core of its own.
            rank = {"feed": 0, "risk": 1, "detector": 2, "executor": 3}
            alone = [rank[r] for r, (_, shared) in zip(roles, out, strict=False) if not shared]
            sharing = [rank[r] for r, (_, shared) in zip(roles, out, strict=False) if shared]
            assert not alone or not sharing or max(alone) <= min(sharing), (k, n, out)


def test_a_node_without_cores_is_refused() -> None:
    with pytest.raises(ValueError, match="node x reports no allowed cores"):
        assign_cores(["x"], {"x": []})


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


def _in_child(code: str) -> str:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_a_pipeline_actor_leaves_the_nice_value_ray_gives_workers() -> None:
    """Ray starts workers at nice 15; a pipeline actor goes back to 0 where it may."""
    import os

    got = _in_child(
        "import os, threading, time; os.nice(15);"
        "t = threading.Thread(target=time.sleep, args=(1,)); t.start();"
        "from hft_ray.pinning import raise_priority; print(raise_priority())"
    )
    allowed = os.geteuid() == 0  # CAP_SYS_NICE: root here and in CI
    assert int(got) == (0 if allowed else 15)


def test_realtime_priority_is_round_robin_on_every_thread_where_allowed() -> None:
    import os

    got = _in_child(
        "import os, threading, time;"
        "t = threading.Thread(target=time.sleep, args=(1,)); t.start();"
        "from hft_ray.pinning import realtime; ok = realtime();"
        "tids = [int(x) for x in os.listdir('/proc/self/task')];"
        "print(ok, all(os.sched_getscheduler(x) == os.SCHED_RR for x in tids))"
    )
    allowed = os.geteuid() == 0
    assert got == ("True True" if allowed else "False False")

"""`ray job submit` end to end: a Ray head of its own (`ray start --head`), an hft_ray run
submitted to it through cluster/submit.sh, the job's report read back, hft_ray's metrics
scraped from the head's metrics export port, the head stopped.

The head is separate from the session's Ray instance (tests/conftest.py), and is stopped
without `ray stop`, which would stop every Ray process on the machine, the session's included:
it runs as `ray start --block` in a process group of its own; SIGTERM to that process makes
Ray's own handler stop the processes it started, and whatever is left of the group (or still
names the head's temp dir) is killed after. The test checks that the session's Ray survives.

Addresses: every port is chosen explicitly and free, the dashboard (the job API) listens on
127.0.0.1 only. Ray 2.60 maps `--node-ip-address 127.0.0.1` to the host's reachable address and
binds its gRPC servers on every interface (ray._private.services.resolve_ip_for_localhost);
there is no flag to keep them on loopback.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hft_ray.config import load_config
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
SUBMIT = ROOT / "cluster" / "submit.sh"
WORKER_PORTS = range(10002, 20000)
START_TIMEOUT_S = 60
JOB_TIMEOUT_S = 240
STOP_TIMEOUT_S = 30
# Workers send their metrics to the node's agent about every 10 s: wait for a few rounds.
METRICS_TIMEOUT_S = 30

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def free_port_outside_worker_range() -> int:
    while True:
        port = free_port()
        if port not in WORKER_PORTS:
            return port


@dataclass
class RayHead:
    """A `ray start --head --block` this test owns, in its own process group."""

    proc: subprocess.Popen[bytes]
    temp_dir: Path
    ports: dict[str, int]
    env: dict[str, str]
    log: Path

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['dashboard']}"

    def metrics_url(self) -> str:
        """The head's Prometheus endpoint (`--metrics-export-port`), where Ray exports the
        cluster's metrics and, once hft_ray exports its own, hft_ray's."""
        return f"http://127.0.0.1:{self.ports['metrics']}/metrics"

    def own_pids(self) -> set[int]:
        """Live processes of this head: its process group, or naming its temp dir."""
        pids = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            try:
                # The state follows the parenthesised command name; Z is a zombie (dead).
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                cmdline = (entry / "cmdline").read_bytes()
                in_group = os.getpgid(pid) == self.proc.pid
            except (OSError, IndexError):
                continue
            if state != "Z" and (in_group or str(self.temp_dir).encode() in cmdline):
                pids.add(pid)
        return pids

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(STOP_TIMEOUT_S)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(STOP_TIMEOUT_S)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while (left := self.own_pids()) and time.monotonic() < deadline:
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)


def start_head(log: Path) -> RayHead:
    # A short temp dir: Ray's Unix socket paths (<temp>/session_<date>_<pid>/sockets/...) must
    # stay under the 107-byte limit, which pytest's tmp_path would exceed.
    temp_dir = Path(tempfile.mkdtemp(prefix="hftj-", dir="/tmp"))
    names = (
        "gcs",
        "dashboard",
        "metrics",
        "object_manager",
        "node_manager",
        "client",
        "agent_http",
        "agent_grpc",
        "runtime_env_agent",
    )
    ports: dict[str, int] = {}
    while len(set(ports.values())) < len(names):
        ports = {name: free_port_outside_worker_range() for name in names}
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    # As README shows: token authentication, the token readable by its owner alone.
    token = temp_dir / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    # On SIGTERM, stop at once instead of draining the node for up to 30 s.
    env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "0"
    command = [
        "ray",
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={ports['gcs']}",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={ports['dashboard']}",
        f"--metrics-export-port={ports['metrics']}",
        f"--object-manager-port={ports['object_manager']}",
        f"--node-manager-port={ports['node_manager']}",
        f"--ray-client-server-port={ports['client']}",
        f"--dashboard-agent-listen-port={ports['agent_http']}",
        f"--dashboard-agent-grpc-port={ports['agent_grpc']}",
        f"--runtime-env-agent-port={ports['runtime_env_agent']}",
        # Workers bind ports the OS picks: none can collide with the session's Ray.
        "--min-worker-port=0",
        "--max-worker-port=0",
        "--num-cpus=2",
        "--object-store-memory=200000000",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    head = RayHead(proc, temp_dir, ports, env, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            version = urllib.request.Request(
                f"{head.dashboard_url}/api/version",
                headers={"Authorization": f"Bearer {token.read_text()}"},
            )
            with urllib.request.urlopen(version, timeout=2):
                return head
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                head.stop()
                shutil.rmtree(temp_dir, ignore_errors=True)
                pytest.fail(f"ray start --head did not come up:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)


@pytest.fixture
def ray_head(tmp_path: Path) -> Iterator[RayHead]:
    head = start_head(tmp_path / "ray-start.log")
    try:
        yield head
    finally:
        head.stop()
        shutil.rmtree(head.temp_dir, ignore_errors=True)


def scrape(url: str) -> str:
    """The body of a Prometheus endpoint, retried until it answers (at most START_TIMEOUT_S)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body: str = response.read().decode()
                return body
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]

# Ray's own labels on every series; hft_ray's are what is left.
RAY_LABELS = {
    "Component",
    "NodeAddress",
    "SessionName",
    "Version",
    "WorkerId",
    "JobId",
    "otel_scope_name",
    "otel_scope_schema_url",
    "otel_scope_version",
}


def hft_ray_series(body: str) -> Series:
    """hft_ray's samples in a Prometheus text body, summed over Ray's labels (one series per
    worker process), keyed by sample name and hft_ray's own labels."""
    from prometheus_client.parser import text_string_to_metric_families

    series: Series = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name.startswith("ray_hft_ray_"):
                labels = tuple(
                    sorted((k, v) for k, v in sample.labels.items() if k not in RAY_LABELS)
                )
                key = (sample.name, labels)
                series[key] = series.get(key, 0.0) + sample.value
    return series


def total(series: Series, name: str, **labels: str) -> float:
    """The sum of `name` over the series whose labels include `labels`."""
    return sum(
        value
        for (n, have), value in series.items()
        if n == name and set(labels.items()) <= set(have)
    )


def wait_for_metrics(url: str, wanted: list[tuple[str, dict[str, str]]]) -> Series:
    """Scrape until every wanted sample (name, labels) is above zero, at most
    METRICS_TIMEOUT_S; return the last scrape's hft_ray series."""
    deadline = time.monotonic() + METRICS_TIMEOUT_S
    while True:
        series = hft_ray_series(scrape(url))
        if all(total(series, name, **labels) > 0 for name, labels in wanted):
            return series
        if time.monotonic() > deadline:
            return series
        time.sleep(2)


def wait_for_job(head: RayHead, submission_id: str) -> str:
    """The job's final status, waiting at most JOB_TIMEOUT_S."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    token = Path(head.env["RAY_AUTH_TOKEN_PATH"]).read_text()
    client = JobSubmissionClient(head.dashboard_url, headers={"Authorization": f"Bearer {token}"})
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        status = client.get_job_status(submission_id)
        if status.is_terminal():
            break
        if time.monotonic() > deadline:
            client.stop_job(submission_id)
            break
        time.sleep(1)
    if status != JobStatus.SUCCEEDED:
        logs = client.get_job_logs(submission_id)
        pytest.fail(f"job {submission_id} ended {status}:\n{logs[-4000:]}")
    return str(status)


def test_submitted_run_succeeds_and_its_report_is_retrievable(
    ray_head: RayHead, ray_session: str, tmp_path: Path
) -> None:
    import ray

    assert ray_session != f"127.0.0.1:{ray_head.ports['gcs']}"
    # The run joins the head (RAY_ADDRESS, set by Ray's job supervisor), so the head's metrics
    # export port is the one in use; the config's must not be the same port anyway.
    assert ray_head.ports["metrics"] != load_config().metrics.export_port

    report_path = tmp_path / "report.json"
    submission_id = f"hft-ray-test-{uuid.uuid4().hex[:8]}"
    submit = subprocess.run(
        [
            str(SUBMIT),
            "--address",
            ray_head.dashboard_url,
            "--submission-id",
            submission_id,
            "--no-wait",
            "--",
            "--duration",
            "15",
            "--report",
            str(report_path),
        ],
        env=ray_head.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert submit.returncode == 0, submit.stdout + submit.stderr
    assert wait_for_job(ray_head, submission_id) == "SUCCEEDED"

    report = json.loads(report_path.read_text())
    assert report["run_id"].startswith("local-")
    assert report["mode"] == "sim"
    assert report["venues"] == ["binance", "okx", "gateio"]
    assert report["book_updates"] > 0
    assert report["trades"] > 0
    assert report["positions_match_journal"] is True

    # The head's metrics endpoint answers (its agent starts after the dashboard), and serves
    # hft_ray's metrics, which its actors reported through ray.util.metrics during the run.
    assert "# TYPE" in scrape(ray_head.metrics_url())
    # Counters and histograms only: the agent drops a gauge ~2 export rounds after its worker
    # exited, and the job's workers have exited by now.
    wanted = [
        *(("ray_hft_ray_book_updates_total", {"venue": venue}) for venue in report["venues"]),
        ("ray_hft_ray_feed_batch_rows_count", {"venue": "binance"}),
        ("ray_hft_ray_opportunities_total", {}),
        ("ray_hft_ray_tick_to_detect_seconds_count", {}),
        ("ray_hft_ray_risk_approvals_total", {}),
        ("ray_hft_ray_detect_to_approve_seconds_count", {}),
        ("ray_hft_ray_orders_total", {"status": "filled"}),
        ("ray_hft_ray_fills_total", {}),
        ("ray_hft_ray_tick_to_trade_seconds_count", {}),
    ]
    series = wait_for_metrics(ray_head.metrics_url(), wanted)
    missing = [(name, labels) for name, labels in wanted if not total(series, name, **labels)]
    assert not missing, f"not exported (or zero): {missing}; hft_ray series: {sorted(series)}"
    # What was exported before the workers exited is at most what the report counted.
    assert total(series, "ray_hft_ray_book_updates_total") <= report["book_updates"]
    assert total(series, "ray_hft_ray_risk_approvals_total") <= report["approved"]

    head_pids = ray_head.own_pids()
    assert head_pids
    ray_head.stop()
    assert not ray_head.own_pids()
    # The session's Ray instance, in this process, is untouched.
    assert ray.is_initialized()
    assert ray.get_runtime_context().gcs_address == ray_session
    assert ray.get(ray.put("alive")) == "alive"

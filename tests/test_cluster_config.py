"""cluster/: the `ray up` launcher config passes Ray's own preparation and validation, the job's
runtime environment parses and packages what a run needs, and submit.sh builds the documented
`ray job submit` command. No cluster is started here (tests/test_job_submit.py does that)."""

from __future__ import annotations

import copy
import os
import shlex
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest
import yaml
from ray.autoscaler._private.commands import _bootstrap_config
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.dashboard.modules.dashboard_sdk import parse_runtime_env_args
from ray.runtime_env import RuntimeEnv
from ray.scripts.scripts import start as ray_start_command

from hft_ray.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
LAUNCHER = ROOT / "cluster" / "local.yaml"
RUNTIME_ENV = ROOT / "cluster" / "runtime_env.yaml"
SUBMIT = ROOT / "cluster" / "submit.sh"
WORKER_PORTS = range(10002, 20000)


def launcher_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(LAUNCHER.read_text())
    return config


def bootstrap(config: dict[str, Any]) -> dict[str, Any]:
    """What `ray up` does to a config before it touches a node: fill defaults, prepare the
    provider's node types, validate against ray-schema.json, bootstrap the provider."""
    resolved: dict[str, Any] = _bootstrap_config(copy.deepcopy(config), no_config_cache=True)
    return resolved


def test_launcher_config_passes_rays_own_validation() -> None:
    resolved = bootstrap(launcher_config())
    # The local provider turns head_ip/worker_ips into one node type, head included.
    assert resolved["provider"] == {**launcher_config()["provider"], **resolved["provider"]}
    assert resolved["head_node_type"] in resolved["available_node_types"]
    assert resolved["max_workers"] == len(resolved["provider"]["worker_ips"])
    # The same checks called one by one, as the autoscaler on the head calls them.
    validate_config(prepare_config(launcher_config()))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"setup_command": ["true"]}, "'setup_command' was unexpected"),
        ({"upscaling_speed": "fast"}, "'fast' is not of type 'number'"),
        ({"auth": {"ssh_user": "ray", "ssh_password": "x"}}, "'ssh_password' was unexpected"),
    ],
)
def test_rays_validation_rejects_a_broken_launcher_config(
    change: dict[str, Any], message: str
) -> None:
    broken = {**launcher_config(), **change}
    with pytest.raises(jsonschema.ValidationError, match=message):
        bootstrap(broken)


def ray_start_commands(commands: list[str]) -> list[tuple[dict[str, str], list[str]]]:
    """(environment assignments, arguments) of each `ray start` in a list of shell commands."""
    found = []
    for command in commands:
        for part in command.split(";"):
            words = shlex.split(part)
            if "ray" not in words:
                continue
            at = words.index("ray")
            if words[at + 1 : at + 2] == ["start"]:
                env = dict(w.split("=", 1) for w in words[:at])
                found.append((env, words[at + 2 :]))
    return found


def test_every_ray_start_sets_auth_mode_and_parses_with_rays_cli() -> None:
    config = launcher_config()
    starts = ray_start_commands(config["head_start_ray_commands"])
    starts += ray_start_commands(config["worker_start_ray_commands"])
    assert len(starts) == 2
    for env, args in starts:
        # Ray >= 2.59 picks token auth by itself for some clusters: say it explicitly.
        assert env.get("RAY_AUTH_MODE") in ("token", "disabled")
        with ray_start_command.make_context("start", list(args)) as ctx:
            params = ctx.params
        port = params["metrics_export_port"]
        assert port is not None and port not in WORKER_PORTS
    (_, head_args) = ray_start_commands(config["head_start_ray_commands"])[0]
    with ray_start_command.make_context("start", list(head_args)) as ctx:
        assert ctx.params["head"] is True
        assert ctx.params["dashboard_host"] == "127.0.0.1"


def test_rays_cli_rejects_an_unknown_ray_start_option() -> None:
    with pytest.raises(click.exceptions.NoSuchOption):
        ray_start_command.make_context("start", ["--head", "--metrics-port=8080"])


def runtime_env() -> dict[str, Any]:
    # As `ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml` builds it.
    env: dict[str, Any] = parse_runtime_env_args(runtime_env=str(RUNTIME_ENV), working_dir=".")
    return env


def test_runtime_env_parses_and_holds_no_secret_or_auth_override() -> None:
    env = runtime_env()
    parsed = RuntimeEnv(**env)
    assert parsed.working_dir() == "."
    assert parsed.env_vars() == {"PYTHONUNBUFFERED": "1"}
    for name in parsed.env_vars():
        assert not name.startswith("RAY_AUTH"), "the job inherits the cluster's auth mode"
        for word in ("PASSWORD", "SECRET", "TOKEN", "KEY"):
            assert word not in name.upper()


def test_runtime_env_packages_the_code_and_config_and_leaves_out_the_rest(
    tmp_path: Path,
) -> None:
    from ray._private.runtime_env.packaging import GCS_STORAGE_MAX_SIZE, create_package

    env = runtime_env()
    package = tmp_path / "working_dir.zip"
    # include_gitignore=True: .gitignore'd files are excluded, as in `ray job submit`.
    create_package(str(ROOT), package, include_gitignore=True, excludes=env["excludes"])
    names = set(zipfile.ZipFile(package).namelist())
    assert {"hft_ray/cli.py", "hft_ray/config.py", "configs/local.yaml", "pyproject.toml"} <= names
    for left_out in (".git/", "tests/data/", ".mypy_cache/", "runs/", "k8s/"):
        assert not any(n.startswith(left_out) for n in names), left_out
    assert package.stat().st_size < GCS_STORAGE_MAX_SIZE


def fake_ray(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An environment whose `ray` writes its working directory and arguments to a file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    record = tmp_path / "argv"
    script = bin_dir / "ray"
    script.write_text(f'#!/bin/sh\npwd > {record}\nprintf "%s\\n" "$@" >> {record}\n')
    script.chmod(0o755)
    env = {
        k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")
    }
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    return env, record


def run_submit(tmp_path: Path, args: list[str], **extra_env: str) -> tuple[Path, list[str]]:
    env, record = fake_ray(tmp_path)
    env.update(extra_env)
    subprocess.run([str(SUBMIT), *args], env=env, cwd=tmp_path, check=True, timeout=30)
    cwd, *argv = record.read_text().splitlines()
    return Path(cwd), argv


def test_submit_script_builds_the_documented_job_submission(tmp_path: Path) -> None:
    cwd, argv = run_submit(tmp_path, ["--", "--duration", "30"])
    assert cwd == ROOT
    assert argv == [
        "job",
        "submit",
        "--working-dir",
        ".",
        "--runtime-env",
        "cluster/runtime_env.yaml",
        "--address",
        "http://127.0.0.1:8265",
        "--",
        "hft-ray",
        "run",
        "--duration",
        "30",
    ]
    args = build_parser().parse_args(argv[argv.index("--") + 2 :])
    assert args.command == "run" and args.duration == 30


def test_submit_script_passes_ray_options_and_keeps_a_given_address(tmp_path: Path) -> None:
    _, argv = run_submit(
        tmp_path,
        ["--address", "http://10.0.0.5:8265", "--no-wait", "--", "--report", "/tmp/r.json"],
    )
    assert argv[argv.index("--") :] == ["--", "hft-ray", "run", "--report", "/tmp/r.json"]
    assert argv.count("--address") == 1 and "http://10.0.0.5:8265" in argv
    assert "--no-wait" in argv[: argv.index("--")]
    _, argv = run_submit(tmp_path, [], RAY_API_SERVER_ADDRESS="http://10.0.0.6:8265")
    assert "--address" not in argv, "ray's CLI reads RAY_API_SERVER_ADDRESS itself"
    assert argv[-3:] == ["--", "hft-ray", "run"]

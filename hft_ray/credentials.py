"""Secrets kept out of every Ray worker's environment.

A Ray worker inherits the environment of the process that started Ray, so an API key in the
driver's environment would be in every worker's, readable by any code that runs there. Before
a run starts Ray, the driver moves each secret its config names by variable (`*_env`) into
a file of its own, readable by its owner alone, in a private directory that lives as long as
the run; the config handed to the actors names the file (`*_file`), the variable leaves the
driver's environment, and the one process that needs the secret reads it at use
(`config.read_secret`). On a cluster of several machines, mount the secrets as files on
every node instead (a Kubernetes Secret volume) and name them with `*_file`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hft_ray.config import HftConfig, parse_config, read_secret


def _references(node: Any, path: str = "") -> Iterator[tuple[dict[str, Any], str, str]]:
    """(section, secret name, key path) of every secret a config names by variable: a key
    `<name>_env` beside a `<name>_file`."""
    if isinstance(node, dict):
        for key, value in node.items():
            base = key[:-4] if isinstance(key, str) and key.endswith("_env") else None
            if base is not None and f"{base}_file" in node and value is not None:
                yield node, base, f"{path}{base}"
            else:
                yield from _references(value, f"{path}{key}.")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _references(value, f"{path}{i}.")


@contextmanager
def staged(config: HftConfig, run_id: str) -> Iterator[HftConfig]:
    """The config with every environment secret moved into a private file, for as long as
    the block runs; the variables are gone from this process's environment from then on."""
    data = config.model_dump(mode="json")
    refs = list(_references(data))
    if not refs:
        yield config
        return
    directory = Path(tempfile.mkdtemp(prefix=f"hft_ray-{run_id}-", dir=_private_root()))
    moved: dict[str, Path] = {}
    try:
        for section, name, key_path in refs:
            variable = section[f"{name}_env"]
            if variable not in moved:
                value = read_secret(variable, None, key_path)
                assert value is not None
                moved[variable] = _write_private(directory / f"{len(moved)}", value)
            section[f"{name}_env"] = None
            section[f"{name}_file"] = str(moved[variable])
        staged_config = parse_config(data, "the run's config")
        for variable in moved:
            os.environ.pop(variable, None)
        yield staged_config
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _private_root() -> str | None:
    """Memory-backed and per user where the system offers it ($XDG_RUNTIME_DIR)."""
    root = os.environ.get("XDG_RUNTIME_DIR")
    return root if root and os.path.isdir(root) else None


def _write_private(path: Path, value: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")  # read_secret drops one trailing newline
    return path

"""What a run makes sure of before it starts Ray: its ports are free (or it says which is
not, in one line), a dead driver's Ray instance is not still holding them, and the instance
it starts admits only clients holding its token.

Ray itself, given a taken metrics port, times out after 40 s with a traceback that names no
port; and since Ray 2.60 a local instance listens on every interface, so a local run without
token authentication could be halted, or read, by anyone who reaches the machine.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from pathlib import Path

from hft_ray import run_registry
from hft_ray.config import HftConfig

AUTH_MODE_ENV = "RAY_AUTH_MODE"


class PortTaken(RuntimeError):
    """A port the run needs is held by another process."""


def port_free(port: int, host: str = "0.0.0.0") -> bool:
    """Whether a listener could bind `port` on `host` now (as servers do, with SO_REUSEADDR,
    so a socket lingering in TIME_WAIT does not count as taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def needed_ports(config: HftConfig, starting_ray: bool) -> list[tuple[int, str, str]]:
    """(port, host, what it is) for every port this driver's node must offer the run. The
    dashboard is not among them: given its default port taken, Ray tries the next ones."""
    ports: list[tuple[int, str, str]] = []
    if config.status.enabled:
        ports.append((config.status.port, config.status.host, "status.port"))
    if starting_ray and config.metrics.enabled:
        ports.append((config.metrics.export_port, "0.0.0.0", "metrics.export_port"))
    return ports


def check_ports(config: HftConfig, starting_ray: bool) -> None:
    """Raise `PortTaken` naming the first port the run needs that another process holds,
    after ending what dead drivers' local Ray instances left holding them."""
    for orphan in run_registry.orphans():
        run_registry.reap(orphan)
    for port, host, what in needed_ports(config, starting_ray):
        if not port_free(port, host):
            raise PortTaken(
                f"port {port} ({what}) is already in use on this machine: stop what holds it "
                f"(e.g. `ss -ltnp 'sport = :{port}'`) or choose another port"
            )


def refused(address: str) -> str:
    """What to say when a cluster refuses us for want of its token."""
    return (
        f"the Ray cluster at {address} refused this client: it needs the cluster's token "
        "(RAY_AUTH_TOKEN, a file named by RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token)"
    )


def use_token_if_held() -> None:
    """For a client of a cluster at an explicit address: Ray turns token authentication on
    for it only when told, so a client holding a token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or
    ~/.ray/auth_token, as hft_ray's local runs leave) uses it unless RAY_AUTH_MODE says
    otherwise. Ray keeps this in process-wide configuration: call it before `ray.init`."""
    if AUTH_MODE_ENV in os.environ:
        return
    from ray._private.authentication.authentication_token_setup import _enable_token_auth
    from ray._raylet import AuthenticationTokenLoader  # type: ignore[attr-defined]

    if AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True):
        _enable_token_auth()  # Ray's own switch, without its warning on every command


def token_path() -> Path:
    """Where Ray's clients look for the token when RAY_AUTH_TOKEN(_PATH) is unset."""
    return Path.home() / ".ray" / "auth_token"


def ensure_local_token() -> None:
    """Before a local Ray instance starts: unless the environment chose another mode, Ray
    turns token authentication on for it (Ray >= 2.60), with a token it would write readable
    by every user of the machine; write it first, readable by its owner alone."""
    if os.environ.get(AUTH_MODE_ENV, "token") != "token":
        return
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return
    path = token_path()
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
    elif path.stat().st_mode & 0o077:
        with contextlib.suppress(PermissionError):
            path.chmod(0o600)

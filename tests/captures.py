"""Reading the captured exchange traffic in tests/data (format in tests/data/README.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data"


@dataclass(frozen=True)
class Frame:
    ts: float
    sent: bool  # True for frames the recorder sent (subscriptions)
    body: Any


def ws_frames(path: Path) -> list[Frame]:
    frames = []
    for line in filter(None, path.read_text().splitlines()[1:]):
        if " <- " in line:
            _, rest = line.split(" <- ", 1)
            ts, body = rest.split(": ", 1)
            frames.append(Frame(float(ts), True, json.loads(body)))
        else:
            ts, body = line.split(": ", 1)
            frames.append(Frame(float(ts), False, json.loads(body)))
    return frames


def http_bodies(path: Path) -> dict[str, Any]:
    """URL -> decoded body of each REST response."""
    out = {}
    for line in filter(None, path.read_text().splitlines()):
        url, rest = line.split(" -> ", 1)
        _, body = rest.split(": ", 1)
        out[url] = json.loads(body)
    return out

"""The store interface: an append-only journal and a small key-value state.

A journal record is a flat dict with `type` (what happened) and `ts_ns` (our wall clock);
records from exchanges also carry the exchange's own timestamp. `append` may batch; a record
is durable once `flush` has returned, and code that must not lose a record (an intent before
its first leg is sent, a fill before it is reported) awaits `flush`. Both implementations
raise `StoreUnavailable` when they cannot make that promise, so callers can fail closed.
"""

from __future__ import annotations

from typing import Any, Protocol

Record = dict[str, Any]

#: Journal record types.
INTENT = "intent"
ORDER = "order"
FILL = "fill"
LEG_RESULT = "leg_result"
UNWIND = "unwind"
DECISION = "decision"
EXECUTION = "execution"


class StoreUnavailable(RuntimeError):
    """The store cannot accept or return data right now."""


class Store(Protocol):
    async def append(self, record: Record) -> None:
        """Queue one journal record."""

    async def flush(self) -> None:
        """Make every appended record durable, or raise `StoreUnavailable`."""

    async def read_journal(self) -> list[Record]:
        """Every durable journal record of the run, in order."""

    async def put_state(self, key: str, value: Record) -> None:
        """Replace the state stored under `key`."""

    async def get_state(self, key: str) -> Record | None:
        """The state under `key`, or None."""

    async def ping(self) -> bool:
        """Whether the store answers now."""

    async def close(self) -> None:
        """Flush and release connections and files."""

"""The store interface: an append-only journal and a small key-value state.

A journal record is stored as a flat dict with `type` (what happened) and `ts_ns` (our wall
clock); records from exchanges also carry the exchange's own timestamp. Its typed form, and
the only code that writes or reads one, is `hft_ray/journal.py`. `append` may batch; a record
is durable once `flush` has returned, and code that must not lose a record (an intent before
its first leg is sent, a fill before it is reported) awaits `flush`. Both implementations
raise `StoreUnavailable` when they cannot make that promise, so callers can fail closed, and
`StoreLost` once the store has lost what the run wrote to it.

Every record is stored beside a record id, `<writer>.<incarnation>.<sequence>`, given when it
is appended and kept out of the record itself: a write retried after a lost answer may land
twice, and `read_journal` returns it once. A write that failed is never undone, so a caller
that acted on a failure says so in the journal (an executor whose intent could not be made
durable sends nothing and journals an `execution` with `reason: store_unavailable`, whatever
became of the intent).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

Record = dict[str, Any]

#: The `reason` of an `execution` that never sent a leg: its intent could not be made durable.
STORE_UNAVAILABLE = "store_unavailable"


class StoreUnavailable(RuntimeError):
    """The store cannot accept or return data right now."""


class StoreLost(StoreUnavailable):
    """The store lost what the run wrote to it (a Redis restarted without persistence, a
    journal deleted): nothing it holds can be trusted again in this run."""


@dataclass(frozen=True)
class Corruption:
    """A stretch of a journal segment that held no readable record, skipped to the next."""

    segment: str
    offset: int  # bytes from the start of the segment
    length: int  # bytes skipped


@dataclass
class JournalRead:
    """What the last `read_journal` found besides its records, for the run report."""

    records: int = 0
    duplicates: int = 0  # records stored twice (a retried write), returned once
    missing: int = 0  # gaps in a writer's record sequence: records written but not read
    torn: int = 0  # segments ending in a partial frame (a writer died mid-write)
    corrupt: list[Corruption] = field(default_factory=list)

    @property
    def corrupt_records(self) -> int:
        return len(self.corrupt)

    def summary(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "duplicates": self.duplicates,
            "missing": self.missing,
            "torn": self.torn,
            "corrupt_records": self.corrupt_records,
            "corrupt": [
                {"segment": c.segment, "offset": c.offset, "length": c.length} for c in self.corrupt
            ],
        }


class RecordIds:
    """Record ids of one writer's process: `<writer>.<incarnation>.<sequence>`."""

    def __init__(self, writer: str) -> None:
        self._prefix = f"{writer}.{uuid.uuid4().hex[:12]}."
        self._next = 0

    def peek(self) -> str:
        """The id the next record gets."""
        return f"{self._prefix}{self._next}"

    def take(self) -> str:
        rid = self.peek()
        self._next += 1
        return rid


def unique_records(entries: Iterable[tuple[str | None, Record]], read: JournalRead) -> list[Record]:
    """The records of `(record id, record)` pairs in order, each id once (records of an older
    format have no id and are all kept); counts duplicates and sequence gaps into `read`."""
    seen: set[str] = set()
    sequences: dict[str, list[int]] = {}
    out: list[Record] = []
    for rid, record in entries:
        if rid is not None:
            if rid in seen:
                read.duplicates += 1
                continue
            seen.add(rid)
            incarnation, _, seq = rid.rpartition(".")
            if seq.isdigit():
                sequences.setdefault(incarnation, []).append(int(seq))
        out.append(record)
    read.missing += sum(max(s) + 1 - len(s) for s in sequences.values())
    read.records = len(out)
    return out


class Store(Protocol):
    where: str  # what the store is, for messages ("redis at redis://host:6379/0")
    last_read: JournalRead

    async def append(self, record: Record) -> None:
        """Queue one journal record."""

    async def flush(self) -> None:
        """Make every appended record durable, or raise `StoreUnavailable`."""

    async def read_journal(self) -> list[Record]:
        """Every durable journal record of the run, in order, each once (`last_read` says
        what else the read found)."""

    async def put_state(self, key: str, value: Record) -> None:
        """Replace the state stored under `key`."""

    async def get_state(self, key: str) -> Record | None:
        """The state under `key`, or None."""

    async def ping(self) -> bool:
        """Whether the store answers now."""

    async def verify(self, create: bool = False) -> None:
        """Raise `StoreUnavailable` (one line) unless the store answers now, `StoreLost` if
        it lost the run's data. `create`: the run starts now, so write its epoch unless one
        is there; without it the run started earlier and its epoch must be there."""

    async def close(self) -> None:
        """Flush and release connections and files."""

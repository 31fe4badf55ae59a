"""The embedded store: append-only journal files and atomic state files under the run directory.

Each writer (actor) owns one segment, `journal/<writer>.log`, so processes never interleave
writes. A record is framed as `<magic "\\xf0HJ1"><u32 length><u32 crc32><msgpack [record id,
record]>` and written with one `write` call, so it survives the writer's crash as soon as
`append` returns; `flush` adds an fsync when `fsync` is set (power loss). Segments of the
older format (`<u32 length><u32 crc32><msgpack record>`, no magic, no id) are still read, and
a new writer appends new frames after old ones.

A frame that does not check (a torn last write, a flipped byte, a crash mid-write followed
by a restarted writer's records) is skipped up to the next frame whose header, length, crc32
and record all check: every record after it is read, and `last_read` names each skipped
stretch by segment and byte offset. The magic makes that search a scan for four bytes; in
old-format stretches every offset is tried.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import msgpack

from hft_ray.store.base import (
    Corruption,
    JournalRead,
    Record,
    RecordIds,
    StoreLost,
    StoreUnavailable,
    unique_records,
)

MAGIC = b"\xf0HJ1"  # read as an old frame's length it is ~0.8 GB: never a valid old frame
_HEADER = struct.Struct("<II")
_FRAME_HEADER = len(MAGIC) + _HEADER.size
_MAX_PAYLOAD = 1 << 24  # a journal record is a few hundred bytes; a longer frame is corrupt
JOURNAL_DIR = "journal"
STATE_DIR = "state"
_log = logging.getLogger(__name__)

_Frame = tuple[int, str | None, Record]  # end offset, record id (None: old format), record


def frame(rid: str, record: Record) -> bytes:
    """One record as it is written to a segment."""
    payload = msgpack.packb([rid, record], use_bin_type=True)
    if len(payload) > _MAX_PAYLOAD:
        raise ValueError(f"journal record of {len(payload)} bytes (at most {_MAX_PAYLOAD})")
    return MAGIC + _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def _frame_at(data: bytes, pos: int) -> _Frame | None:
    """The frame starting at `pos` if it checks, else None."""
    new = data.startswith(MAGIC, pos)
    start = pos + (_FRAME_HEADER if new else _HEADER.size)
    if start > len(data):
        return None
    length, crc = _HEADER.unpack_from(data, start - _HEADER.size)
    end = start + length
    if length > _MAX_PAYLOAD or end > len(data):
        return None
    payload = data[start:end]
    if zlib.crc32(payload) != crc:
        return None
    try:
        body: Any = msgpack.unpackb(payload, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException):
        return None
    if not new:
        return (end, None, body) if isinstance(body, dict) else None
    if isinstance(body, list) and len(body) == 2:
        rid, record = body
        if isinstance(rid, str) and isinstance(record, dict):
            return end, rid, record
    return None


def _next_frame(data: bytes, pos: int, new_only: bool) -> int | None:
    """The first offset after `pos` where a frame checks. `new_only`: the segment already
    holds new frames, so no old one can follow (only the magic is looked for)."""
    if new_only:
        at = data.find(MAGIC, pos + 1)
        while at != -1:
            if _frame_at(data, at) is not None:
                return at
            at = data.find(MAGIC, at + 1)
        return None
    for at in range(pos + 1, len(data) - _HEADER.size + 1):
        if _frame_at(data, at) is not None:
            return at
    return None


def read_segment(path: Path, read: JournalRead) -> list[tuple[int, str | None, Record]]:
    """Every record of one segment that checks, as (offset, record id, record); what does
    not check is counted into `read` and logged."""
    data = path.read_bytes()
    out: list[tuple[int, str | None, Record]] = []
    pos, new_seen = 0, False
    while pos < len(data):
        found = _frame_at(data, pos)
        if found is not None:
            end, rid, record = found
            out.append((pos, rid, record))
            new_seen = new_seen or rid is not None
            pos = end
            continue
        nxt = _next_frame(data, pos, new_seen)
        if nxt is None and _runs_past_the_end(data, pos):
            read.torn += 1  # the last write of a writer that died: no record was promised
            break
        stop = len(data) if nxt is None else nxt
        read.corrupt.append(Corruption(str(path), pos, stop - pos))
        _log.warning(
            "journal %s: corrupt record at byte %d, %d bytes skipped to %s",
            path,
            pos,
            stop - pos,
            "the end" if nxt is None else f"the next record at byte {nxt}",
        )
        pos = stop
    return out


def _runs_past_the_end(data: bytes, pos: int) -> bool:
    """Whether the frame at `pos` claims more bytes than the segment holds (a torn write)."""
    start = pos + (_FRAME_HEADER if data.startswith(MAGIC, pos) else _HEADER.size)
    if start > len(data):
        return True
    length, _ = _HEADER.unpack_from(data, start - _HEADER.size)
    return length <= _MAX_PAYLOAD and start + length > len(data)


class LocalStore:
    def __init__(self, root: Path, writer: str, *, fsync: bool = False) -> None:
        self._root = Path(root)
        self._writer = writer
        self._fsync = fsync
        self._fd: int | None = None
        self._ids = RecordIds(writer)
        self.where = f"files under {self._root}"
        self.last_read = JournalRead()

    def _segment_fd(self) -> int:
        if self._fd is None:
            journal = self._root / JOURNAL_DIR
            try:
                journal.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(
                    journal / f"{self._writer}.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
                )
            except OSError as err:
                raise StoreUnavailable(f"journal at {journal}: {err.strerror}") from None
        return self._fd

    async def append(self, record: Record) -> None:
        data = frame(self._ids.peek(), record)
        try:
            os.write(self._segment_fd(), data)
        except OSError as err:
            raise StoreUnavailable(f"journal write failed: {err.strerror}") from None
        self._ids.take()  # a failed write keeps its id: no gap for a record never promised

    async def flush(self) -> None:
        if self._fd is not None and self._fsync:
            try:
                os.fsync(self._fd)
            except OSError as err:
                raise StoreUnavailable(f"journal fsync failed: {err.strerror}") from None

    async def read_journal(self) -> list[Record]:
        read = JournalRead()
        entries: list[tuple[int, str, int, str | None, Record]] = []
        for segment in sorted((self._root / JOURNAL_DIR).glob("*.log")):
            writer = segment.stem
            for offset, rid, record in read_segment(segment, read):
                entries.append((int(record.get("ts_ns", 0)), writer, offset, rid, record))
        entries.sort(key=lambda e: e[:3])
        records = unique_records(((e[3], e[4]) for e in entries), read)
        self.last_read = read
        return records

    async def put_state(self, key: str, value: Record) -> None:
        state = self._root / STATE_DIR
        try:
            state.mkdir(parents=True, exist_ok=True)
            tmp = state / f".{key}.{os.getpid()}.tmp"
            tmp.write_bytes(msgpack.packb(value, use_bin_type=True))
            os.replace(tmp, state / f"{key}.msgpack")
        except OSError as err:
            raise StoreUnavailable(f"state {key}: {err.strerror}") from None

    async def get_state(self, key: str) -> Record | None:
        path = self._root / STATE_DIR / f"{key}.msgpack"
        try:
            state: Record = msgpack.unpackb(path.read_bytes(), raw=False)
            return state
        except FileNotFoundError:
            return None
        except OSError as err:
            raise StoreUnavailable(f"state {key}: {err.strerror}") from None

    async def ping(self) -> bool:
        return os.access(self._root, os.W_OK) if self._root.exists() else False

    async def verify(self, create: bool = False) -> None:
        """The local store has no epoch: it is lost when this writer's segment was deleted
        under it (the run directory removed while the run goes on)."""
        if self._fd is not None and os.fstat(self._fd).st_nlink == 0:
            raise StoreLost(f"store: {self.where}: journal segment {self._writer}.log deleted")
        if create:
            try:
                self._root.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise StoreUnavailable(f"store: {self.where}: {err.strerror}") from None
        if not await self.ping():
            raise StoreUnavailable(f"store: {self.where} cannot be written")

    async def close(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None

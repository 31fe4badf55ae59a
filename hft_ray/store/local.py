"""The embedded store: append-only journal files and atomic state files under the run directory.

Each writer (actor) owns one segment, `journal/<writer>.log`, so processes never interleave
writes. A record is framed as `<u32 length><u32 crc32><msgpack>` and written with one `write`
call, so it survives the writer's crash as soon as `append` returns; `flush` adds an fsync when
`fsync` is set (power loss). A torn last frame, the trace of a crash mid-write, is skipped and
counted, never misread.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import msgpack

from hft_ray.store.base import Record, StoreUnavailable

_HEADER = struct.Struct("<II")
JOURNAL_DIR = "journal"
STATE_DIR = "state"


class LocalStore:
    def __init__(self, root: Path, writer: str, *, fsync: bool = False) -> None:
        self._root = Path(root)
        self._writer = writer
        self._fsync = fsync
        self._fd: int | None = None
        self.torn_frames = 0

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
        payload = msgpack.packb(record, use_bin_type=True)
        frame = _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        try:
            os.write(self._segment_fd(), frame)
        except OSError as err:
            raise StoreUnavailable(f"journal write failed: {err.strerror}") from None

    async def flush(self) -> None:
        if self._fd is not None and self._fsync:
            try:
                os.fsync(self._fd)
            except OSError as err:
                raise StoreUnavailable(f"journal fsync failed: {err.strerror}") from None

    async def read_journal(self) -> list[Record]:
        records: list[tuple[int, str, int, Record]] = []
        self.torn_frames = 0
        for segment in sorted((self._root / JOURNAL_DIR).glob("*.log")):
            for offset, record in self._read_segment(segment):
                records.append((int(record.get("ts_ns", 0)), segment.stem, offset, record))
        records.sort(key=lambda r: r[:3])
        return [r[3] for r in records]

    def _read_segment(self, path: Path) -> list[tuple[int, Record]]:
        data = path.read_bytes()
        out: list[tuple[int, Record]] = []
        pos = 0
        while pos + _HEADER.size <= len(data):
            length, crc = _HEADER.unpack_from(data, pos)
            payload = data[pos + _HEADER.size : pos + _HEADER.size + length]
            if len(payload) < length or zlib.crc32(payload) != crc:
                self.torn_frames += 1
                break
            out.append((pos, msgpack.unpackb(payload, raw=False)))
            pos += _HEADER.size + length
        if pos < len(data) and not self.torn_frames:
            self.torn_frames += 1
        return out

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

    async def close(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None

"""Incremental collection: a cache of each source file's normalised rows.

Stdlib only, so that deciding "nothing changed" costs no pandas/pyarrow import.

A file is unchanged when its size and mtime match the manifest, or, when those differ, when
its content hash (sha256) still matches (a copy that kept the bytes but not the mtime). The
manifest is keyed by dpo's version, the schema's fingerprint and the cache's format (which
includes the row-hash algorithm's version): any of them changing drops the whole cache.
Each cache entry carries a CRC of its bytes; an entry that fails it is rebuilt from the
source file, never trusted.
"""

from __future__ import annotations

import json
import mmap
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from dpo import __version__
from dpo.fsio import Fingerprint, atomic_file, sha256_of, write_if_changed
from dpo.tables.meta import ROW_HASH_VERSION

# 2: each segment carries its rows' dpo.transform.rowhash hashes (cacheio.HASH_COLUMN). Hashes made by
# another algorithm must never be compared with this one's, hence its version in the key.
CACHE_FORMAT = f"segments-2.rowhash-{ROW_HASH_VERSION}"


class TableCache:
    """The cache of one dynamic table: `<cache_dir>/collect/<table>/`.

    Normalised rows live in segment files (Arrow IPC, uncompressed so reading them is a copy,
    not a decode); each run that reads new files adds one segment for just those files, so a
    daily run writes a few kilobytes, not the whole table. The manifest says which segment,
    offset and row count hold each file, and each segment's size and CRC. Past MAX_SEGMENTS
    the collector compacts everything into one.
    """

    MAX_SEGMENTS = 8

    def __init__(self, cache_dir: Path, table: str, schema_fingerprint: str) -> None:
        self.folder = cache_dir / "collect" / table
        self.manifest_path = self.folder / "manifest.json"
        self.key = f"{__version__}:{schema_fingerprint}:{CACHE_FORMAT}"
        self.manifest = self._load()

    def _load(self) -> dict[str, Any]:
        empty: dict[str, Any] = {"key": self.key, "files": {}, "segments": {}, "next": 1,
                                 "output": None}
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return empty
        if not isinstance(data, dict) or data.get("key") != self.key or "segments" not in data:
            return empty  # another dpo, schema or format: nothing in here can be trusted
        return data

    # -- per file -----------------------------------------------------------------------------
    def lookup(self, path: Path, fp: Fingerprint) -> dict[str, Any] | None:
        """The cache record of an unchanged source file, or None (then it must be read)."""
        record = self.manifest["files"].get(path.name)
        if not isinstance(record, dict) or record.get("size") != fp.size:
            return None
        if record.get("mtime_ns") != fp.mtime_ns:
            if record.get("sha256") != sha256_of(path):
                return None
            record["mtime_ns"] = fp.mtime_ns  # same bytes, touched: keep using the rows
        return record

    def segment_bytes(self, name: str) -> mmap.mmap | None:
        """A segment's bytes (memory-mapped: no copy), or None if missing or corrupt (its
        files are then read again)."""
        expected = self.manifest["segments"].get(name)
        if not expected or not expected["size"]:
            return None
        try:
            with open(self.folder / name, "rb") as handle:
                data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            return None
        if len(data) != expected["size"] or zlib.crc32(data) != expected["crc32"]:
            data.close()
            return None
        return data

    def add_segment(self, write: Callable[[ByteSink], None],
                    files: list[tuple[Path, Fingerprint, int]],
                    digests: Mapping[str, str] | None = None, *, replace_all: bool = False
                    ) -> None:
        """A new segment holding `files`' rows in this order (path, fingerprint, rows).

        `digests`: sha256 of files taken before they were read (see DataCollector._parts), so
        a file replaced after it was read is read again next time, never served stale."""
        name = f"segment-{self.manifest['next']:06d}.arrow"
        self.manifest["next"] += 1
        with atomic_file(self.folder / name, point="cache:rows", durable=False) as handle:
            counted = _CrcWriter(handle)
            write(counted)  # straight to disk: a 200,000-row segment is never held in memory
        if replace_all:
            self.manifest["files"], self.manifest["segments"] = {}, {}
        self.manifest["segments"][name] = {"size": counted.size, "crc32": counted.crc}
        offset = 0
        for path, fp, rows in files:
            known = (digests or {}).get(path.name)
            self.manifest["files"][path.name] = {
                "size": fp.size, "mtime_ns": fp.mtime_ns,
                "sha256": known or sha256_of(path), "segment": name, "offset": offset,
                "rows": rows}
            offset += rows

    def keep_only(self, names: set[str]) -> None:
        """Forget files that are no longer among the sources (or could not be served)."""
        self.manifest["files"] = {n: r for n, r in self.manifest["files"].items() if n in names}

    @property
    def needs_compaction(self) -> bool:
        return len(self.manifest["segments"]) >= self.MAX_SEGMENTS

    # -- the table's output -------------------------------------------------------------------
    def record_output(self, files: list[str], output: Path, summary: dict[str, Any]) -> None:
        fp = Fingerprint.of(output)
        self.manifest["output"] = {"files": files, "size": fp.size, "mtime_ns": fp.mtime_ns,
                                   **summary}

    def recorded_output(self, output: Path) -> dict[str, Any] | None:
        """What was recorded of `output` (rows, hash, duplicates...), if it is still the file
        that was recorded (same size and mtime)."""
        recorded = self.manifest.get("output")
        try:
            fp = Fingerprint.of(output)
        except OSError:
            return None
        if not recorded or (fp.size, fp.mtime_ns) != (recorded.get("size"), recorded.get("mtime_ns")):
            return None
        return dict(recorded)

    def output_hash(self, output: Path) -> str | None:
        """The content hash recorded for `output`, if it is still the file recorded (saves
        reading the Parquet footer)."""
        digest = (self.recorded_output(output) or {}).get("hash")
        return digest if isinstance(digest, str) else None

    def unchanged_output(self, files: list[Path], output: Path) -> dict[str, Any] | None:
        """The recorded summary when neither the sources nor the output changed since."""
        recorded = self.manifest.get("output")
        if not recorded or recorded.get("files") != [p.name for p in files]:
            return None
        try:
            out_fp = Fingerprint.of(output)
            fps = [Fingerprint.of(p) for p in files]
        except OSError:
            return None
        if (out_fp.size, out_fp.mtime_ns) != (recorded["size"], recorded["mtime_ns"]):
            return None
        if any(self.lookup(p, fp) is None for p, fp in zip(files, fps, strict=True)):
            return None
        return dict(recorded)

    def save(self) -> None:
        """Write the manifest; delete segments no file refers to any more."""
        live = {r["segment"] for r in self.manifest["files"].values()}
        self.manifest["segments"] = {n: v for n, v in self.manifest["segments"].items()
                                     if n in live}
        write_if_changed(self.manifest_path, self.manifest, point="cache:manifest")
        for path in self.folder.glob("segment-*.arrow") if self.folder.is_dir() else ():
            if path.name not in live:
                path.unlink(missing_ok=True)


def sha256_by_name(files: list[Path]) -> dict[str, str]:
    """Each file's sha256 by name (a file gone or unreadable is left out: its read says why)."""
    found = {}
    for path in files:
        try:
            found[path.name] = sha256_of(path)
        except OSError:
            continue  # gone or unreadable: the read reports it
    return found


class ByteSink(Protocol):
    def write(self, data: bytes | memoryview) -> int: ...
    def flush(self) -> None: ...
    def tell(self) -> int: ...


class _CrcWriter:
    """A write-only file that keeps the CRC and size of what went through it."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.crc = 0
        self.size = 0

    def write(self, data: bytes | memoryview) -> int:
        self.crc = zlib.crc32(data, self.crc)
        count = memoryview(data).nbytes
        self.size += count
        self.handle.write(data)
        return count

    def flush(self) -> None:
        self.handle.flush()

    def tell(self) -> int:
        return self.size

    def writable(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return False

    def close(self) -> None:
        """The real file is closed by its owner (atomic_file)."""

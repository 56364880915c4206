"""Incremental collection: per-source-file fingerprints and a cache of each file's result.

Stdlib only, so that deciding "nothing changed" costs no pandas/pyarrow import.

A file is unchanged when its size and mtime match the manifest, or, when those differ, when
its content hash (sha256) still matches (a copy that kept the bytes but not the mtime). The
manifest is keyed by dpo's version, the schema's fingerprint and the cache's format (which
includes the row-hash algorithm's version): any of them changing drops the whole cache.
Each cache entry carries a CRC of its bytes; an entry that fails it is rebuilt from the
source file, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from dpo import __version__
from dpo.fsio import atomic_file, atomic_write_bytes
from dpo.metakeys import ROW_HASH_VERSION

# 2: each segment carries its rows' dpo.rowhash hashes (cacheio.HASH_COLUMN). Hashes made by
# another algorithm must never be compared with this one's, hence its version in the key.
CACHE_FORMAT = f"segments-2.rowhash-{ROW_HASH_VERSION}"


@dataclass(frozen=True)
class Fingerprint:
    size: int
    mtime_ns: int

    @staticmethod
    def of(path: Path) -> Fingerprint:
        st = path.stat()
        return Fingerprint(st.st_size, st.st_mtime_ns)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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

    def output_hash(self, output: Path) -> str | None:
        """The content hash recorded for `output`, if it is still the file recorded (saves
        reading the Parquet footer)."""
        recorded = self.manifest.get("output")
        try:
            fp = Fingerprint.of(output)
        except OSError:
            return None
        if not recorded or (fp.size, fp.mtime_ns) != (recorded.get("size"), recorded.get("mtime_ns")):
            return None
        digest = recorded.get("hash")
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


def write_if_changed(path: Path, data: dict[str, Any], point: str) -> None:
    """Rewrite a state file only when its content changes: a no-change run touches nothing."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    try:
        current: str | None = path.read_text(encoding="utf-8")
    except OSError:
        current = None  # missing or unreadable: write it
    if current == text:
        return
    atomic_write_bytes(path, text.encode("utf-8"), point=point, durable=False)


def folder_size(folder: Path) -> int:
    total = 0
    for dirpath, _dirs, names in os.walk(folder):
        total += sum(os.stat(os.path.join(dirpath, n)).st_size for n in names)
    return total


def forget_loader_state(cache_dir: Path) -> None:
    """Make the next run load every table again (e.g. after a hold is released by hand: its
    inputs did not change, so the no-change run would otherwise keep the held version)."""
    (cache_dir / "loader.json").unlink(missing_ok=True)


class LoaderState:
    """What Phase 2 last published from: per table the input's fingerprint, hash and rows.

    `<cache_dir>/loader.json`, written after every successful Phase 2. A table whose input
    has the same fingerprint, and whose current version still carries the recorded hash, is
    unchanged without being read.
    """

    def __init__(self, cache_dir: Path, schema_fingerprint: str) -> None:
        self.path = cache_dir / "loader.json"
        self.key = f"{__version__}:{schema_fingerprint}"
        self.tables: dict[str, dict[str, Any]] = {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if isinstance(data, dict) and data.get("key") == self.key:
            self.tables = data.get("tables", {})
            self.annotations = data.get("annotations")

    annotations: Any = None

    def unchanged(self, table: str, source: Path) -> dict[str, Any] | None:
        """The recorded {hash, rows, ...} if `source` is as it was when it was last loaded."""
        record = self.tables.get(table)
        try:
            fp = Fingerprint.of(source)
        except OSError:
            return None
        if not record or (record["size"], record["mtime_ns"]) != (fp.size, fp.mtime_ns):
            return None
        return record

    def record(self, table: str, source: Path, digest: str, rows: int,
               warnings: list[dict[str, Any]] | None = None, blank_rows: int = 0) -> None:
        """What `table` was published from; its warnings are kept so that a run that does not
        read the unchanged file again still says them."""
        fp = Fingerprint.of(source)
        self.tables[table] = {"size": fp.size, "mtime_ns": fp.mtime_ns, "hash": digest,
                              "rows": rows, "warnings": warnings or [], "blank_rows": blank_rows}

    def save(self, annotation_path: Path) -> None:
        fp = Fingerprint.of(annotation_path) if annotation_path.exists() else None
        self.annotations = [fp.size, fp.mtime_ns] if fp else None
        data = {"key": self.key, "tables": self.tables, "annotations": self.annotations}
        write_if_changed(self.path, data, point="loader:state")

    def annotations_unchanged(self, annotation_path: Path) -> bool:
        try:
            fp = Fingerprint.of(annotation_path)
        except OSError:
            return False
        return bool(self.annotations == [fp.size, fp.mtime_ns])

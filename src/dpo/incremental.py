"""Incremental collection: per-source-file fingerprints and a cache of each file's result.

Stdlib only, so that deciding "nothing changed" costs no pandas/pyarrow import.

A file is unchanged when its size and mtime match the manifest, or, when those differ, when
its content hash (sha256) still matches (a copy that kept the bytes but not the mtime). The
manifest is keyed by dpo's version and the schema's fingerprint: either changing drops the
whole cache. Each cache entry carries a CRC of its bytes; an entry that fails it is rebuilt
from the source file, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dpo import __version__
from dpo.fsio import atomic_write_bytes


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

    One blob holds the normalised rows of every clean source file, back to back; the manifest
    says which rows belong to which file (offset, rows) and the blob's CRC.
    """

    def __init__(self, cache_dir: Path, table: str, schema_fingerprint: str) -> None:
        self.folder = cache_dir / "collect" / table
        self.manifest_path = self.folder / "manifest.json"
        self.blob_path = self.folder / "rows.arrow"
        self.key = f"{__version__}:{schema_fingerprint}"
        self.manifest = self._load()

    def _load(self) -> dict[str, Any]:
        empty: dict[str, Any] = {"key": self.key, "files": {}, "crc32": None, "output": None}
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return empty
        if not isinstance(data, dict) or data.get("key") != self.key:
            return empty  # another dpo version or schema: nothing in here can be trusted
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

    def blob(self) -> bytes | None:
        """The cached rows, or None if missing or corrupt (then every file is read again)."""
        try:
            data = self.blob_path.read_bytes()
        except OSError:
            return None
        return data if zlib.crc32(data) == self.manifest.get("crc32") else None

    def replace(self, data: bytes, files: list[tuple[Path, Fingerprint, int]]) -> None:
        """A new blob holding `files`' rows in this order (path, fingerprint, rows)."""
        atomic_write_bytes(self.blob_path, data, point="cache:rows", durable=False)
        offset = 0
        records: dict[str, Any] = {}
        for path, fp, rows in files:
            old = self.manifest["files"].get(path.name) or {}
            same = (old.get("size"), old.get("mtime_ns")) == (fp.size, fp.mtime_ns)
            digest = old["sha256"] if same and "sha256" in old else sha256_of(path)
            records[path.name] = {"size": fp.size, "mtime_ns": fp.mtime_ns, "sha256": digest,
                                  "offset": offset, "rows": rows}
            offset += rows
        self.manifest["files"] = records
        self.manifest["crc32"] = zlib.crc32(data)

    def forget_all(self) -> None:
        self.manifest["files"] = {}

    # -- the table's output -------------------------------------------------------------------
    def record_output(self, files: list[str], output: Path, summary: dict[str, Any]) -> None:
        fp = Fingerprint.of(output)
        self.manifest["output"] = {"files": files, "size": fp.size, "mtime_ns": fp.mtime_ns,
                                   **summary}

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
        write_if_changed(self.manifest_path, self.manifest, point="cache:manifest")


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

    def record(self, table: str, source: Path, digest: str, rows: int) -> None:
        fp = Fingerprint.of(source)
        self.tables[table] = {"size": fp.size, "mtime_ns": fp.mtime_ns, "hash": digest,
                              "rows": rows}

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

"""The row hashes of published tables, cached by content hash: Phase 1 writes them for the
tables it writes, the diff after a publish (dpo.store.changes) reads them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from dpo.tables.contenthash import content_hash_of


class RowHashes:
    """Row hashes of published tables by content hash, in the cache (`<cache>/rowhashes/`):
    the diff of the next publish finds the previous version's there instead of hashing it
    again. Written by Phase 1 for the tables it writes, and by the diff. A cache: a file that
    is missing or of the wrong size is recomputed, never trusted."""

    KEEP = 64  # files kept (newest by mtime): a few versions of every table

    def __init__(self, cache_dir: Path) -> None:
        self.folder = cache_dir / "rowhashes"

    def _path(self, digest: str) -> Path:
        return self.folder / f"{digest.replace(':', '_')}.u64"

    def get(self, digest: str | None, schema: pa.Schema) -> np.ndarray | None:
        """The row hashes of the table with content hash `digest` and this schema, if cached
        and proven: they must give that very content hash (blake2b over 8 bytes a row)."""
        if not digest:
            return None
        try:
            data = self._path(digest).read_bytes()
        except OSError:
            return None
        if len(data) % 8:
            return None
        hashes = np.frombuffer(data, dtype="<u8")
        return hashes if content_hash_of(schema, hashes) == digest else None

    def put(self, digest: str, hashes: np.ndarray) -> None:
        from dpo.fsio import atomic_write_bytes

        atomic_write_bytes(self._path(digest), np.ascontiguousarray(hashes, dtype="<u8").tobytes(),
                           point="cache:rowhashes", durable=False)
        files = sorted(self.folder.glob("*.u64"), key=lambda p: p.stat().st_mtime_ns)
        for stale in files[:-self.KEEP]:
            stale.unlink(missing_ok=True)

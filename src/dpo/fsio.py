"""Durable file operations: temp file in the same folder, flush, fsync, rename, fsync folder.

A reader never sees a half-written file, and after a crash a file is either the old or the new
one. Temp files carry TMP_MARK so a later run can find and remove what a crash left.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from dpo.errors import DpoError, ErrorType, IntegrityError
from dpo.faults import checkpoint
from dpo.frames import META_HASH, META_ROWS, content_hash

TMP_MARK = ".dpo-tmp-"


def next_stamp(base: str, used: set[str]) -> str:
    """`base`, or `base-2`, `base-3`... : above every suffix of `base` in `used` (one per run).

    Not the first free one: retention may have deleted `base-2` while `base-3` is kept, and a
    reused `base-2` would reuse a published name and sort as older than `base-3`.
    """
    taken = [int(n or 1) for b, _, n in (s.partition("-") for s in used) if b == base]
    return f"{base}-{max(taken) + 1}" if taken else base


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_file(path: Path, point: str, *, durable: bool = True) -> Iterator[BinaryIO]:
    """Yield a temp file beside `path`; on success it replaces `path` (fsynced if `durable`:
    caches that are checked on read and rebuilt when wrong skip the fsync)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=TMP_MARK, suffix=path.suffix, dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            checkpoint(f"{point}:written")
            if durable:
                os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        checkpoint(f"{point}:renamed")
        if durable:
            fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DpoError(f"cannot write {path}: {exc.strerror or exc}",
                       error_type=ErrorType.WRITE_ERROR, file=str(path)) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes, point: str, *, durable: bool = True) -> None:
    with atomic_file(path, point, durable=durable) as handle:
        handle.write(data)


def atomic_write_text(path: Path, text: str, point: str, *, durable: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), point, durable=durable)


def atomic_write_json(path: Path, data: Any, point: str, *, durable: bool = True) -> None:
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    atomic_write_text(path, text, point, durable=durable)


def append_line_block(path: Path, text: str) -> None:
    """Append to a log file and fsync; logs are append-only, so no temp file is needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def write_parquet(path: Path, table: pa.Table, meta: Mapping[bytes, bytes], point: str) -> str:
    """Write `table` atomically with its content hash in the file's metadata; return the hash.

    A META_HASH already in `meta` is the caller's hash of this very table (not recomputed).
    """
    known = meta.get(META_HASH)
    digest = known.decode() if known else content_hash(table)
    extra = {**(table.schema.metadata or {}), **meta, META_HASH: digest.encode(),
             META_ROWS: str(table.num_rows).encode()}
    table = table.replace_schema_metadata(extra)
    with atomic_file(path, point) as handle:
        try:
            pq.write_table(table, handle, compression="zstd")
        except (pa.ArrowException, ValueError) as exc:
            raise DpoError(f"cannot write Parquet {path}: {exc}", error_type=ErrorType.WRITE_ERROR,
                           file=str(path)) from exc
    return digest


def parquet_meta(path: Path) -> dict[bytes, bytes] | None:
    """The key-value metadata of a Parquet file, or None if it is missing or unreadable."""
    try:
        return dict(pq.read_schema(path).metadata or {})
    except (OSError, pa.ArrowException):
        return None


def recorded_hash(path: Path) -> str | None:
    meta = parquet_meta(path)
    value = meta.get(META_HASH) if meta else None
    return value.decode() if value else None


def read_verified(path: Path) -> pa.Table:
    """Read a Parquet file and prove its data still matches the hash recorded when written."""
    expected = recorded_hash(path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise IntegrityError(f"{path}: unreadable Parquet ({exc})", file=str(path)) from exc
    if expected is None or content_hash(table) != expected:
        raise IntegrityError(f"{path}: content does not match its recorded hash", file=str(path))
    return table


def is_intact(path: Path) -> bool:
    try:
        read_verified(path)
    except IntegrityError:
        return False
    return True


def copy_durably(src: Path, dst: Path, point: str) -> None:
    with open(src, "rb") as source, atomic_file(dst, point) as handle:
        shutil.copyfileobj(source, handle)


def move_durably(src: Path, dst: Path, point: str) -> None:
    """Rename within one file system, then fsync both folders."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dst)
    checkpoint(f"{point}:moved")
    fsync_dir(dst.parent)
    fsync_dir(src.parent)

"""Durable file operations: temp file in the same folder, flush, fsync, rename, fsync folder.

A reader never sees a half-written file, and after a crash a file is either the old or the new
one. Temp files carry TMP_MARK so a later run can find and remove what a crash left.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from dpo.errors import DpoError, ErrorType
from dpo.faults import checkpoint

TMP_MARK = ".dpo-tmp-"


def next_stamp(base: str, used: set[str]) -> str:
    """`base`, or `base-2`, `base-3`... : above every suffix of `base` in `used` (one per run).

    Not the first free one: retention may have deleted `base-2` while `base-3` is kept, and a
    reused `base-2` would reuse a published name and sort as older than `base-3`.
    """
    taken = [int(n or 1) for b, _, n in (s.partition("-") for s in used) if b == base]
    return f"{base}-{max(taken) + 1}" if taken else base


def stamp_key(stamp: str) -> tuple[str, int]:
    """Sort key of a version stamp `YYYYMMDD_HHMM[-N]`: `-2` after the bare one, `-10` after `-9`."""
    base, _, n = stamp.partition("-")
    return base, int(n) if n else 1


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_file(
    path: Path, point: str, *, durable: bool = True, sync_dir: bool = True
) -> Iterator[BinaryIO]:
    """Yield a temp file beside `path`; on success it replaces `path` (fsynced if `durable`:
    caches that are checked on read and rebuilt when wrong skip the fsync). `sync_dir=False`
    leaves the folder's fsync to a caller that writes several files there."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=TMP_MARK, suffix=path.suffix, dir=path.parent)
    except OSError as exc:  # read-only folder, disk full: a write error like any other
        raise DpoError(f"cannot write {path}: {exc.strerror or exc}",
                       error_type=ErrorType.WRITE_ERROR, file=str(path)) from exc
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
        if durable and sync_dir:
            fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DpoError(f"cannot write {path}: {exc.strerror or exc}",
                       error_type=ErrorType.WRITE_ERROR, file=str(path)) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(
    path: Path, data: bytes | memoryview, point: str, *, durable: bool = True,
    sync_dir: bool = True,
) -> None:
    with atomic_file(path, point, durable=durable, sync_dir=sync_dir) as handle:
        handle.write(data)


def atomic_write_text(
    path: Path, text: str, point: str, *, durable: bool = True, sync_dir: bool = True
) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), point, durable=durable, sync_dir=sync_dir)


def atomic_write_json(path: Path, data: Any, point: str, *, durable: bool = True) -> None:
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    atomic_write_text(path, text, point, durable=durable)


def remove_temp_files(folder: Path) -> list[Path]:
    """Delete the temp files (TMP_MARK) that a killed process left anywhere below `folder`.

    Only safe while holding the run lock: a running process's temp files look the same.
    """
    found = sorted(folder.rglob(f"{TMP_MARK}*")) if folder.is_dir() else []
    for path in found:
        path.unlink(missing_ok=True)
    return found


def append_line_block(path: Path, text: str, point: str | None = None) -> None:
    """Append to a log file and fsync; logs are append-only, so no temp file is needed.

    `point`: the crash point (dpo.faults) reached once the block is durable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    if point:
        checkpoint(point)


def copy_durably(src: Path, dst: Path, point: str) -> None:
    with open(src, "rb") as source, atomic_file(dst, point) as handle:
        shutil.copyfileobj(source, handle)


def move_durably(src: Path, dst: Path, point: str, *, sync: bool = True) -> None:
    """Rename within one file system, then fsync both folders (`sync=False`: the caller will)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dst)
    checkpoint(f"{point}:moved")
    if sync:
        fsync_dir(dst.parent)
        fsync_dir(src.parent)


# -- fingerprints and small state files (stdlib only: the no-change run needs just these) --
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

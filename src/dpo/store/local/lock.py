"""One run at a time per output directory.

The lock is an OS file lock (filelock), so the kernel releases it when its holder dies, even by
`kill -9`: a stale lock never blocks. Beside it, a small JSON file names the holder (pid, start
time) for the message a second run prints.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path

from filelock import FileLock, Timeout
from loguru import logger

from dpo.errors import DpoError, ErrorType, PipelineLocked


def _holder(info: Path) -> str:
    try:
        data = json.loads(info.read_text(encoding="utf-8"))
        return f"pid {data['pid']}, started {data['started_at']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "unknown holder"


@contextmanager
def run_lock(folder: Path, *, timeout: float = 0.0) -> Iterator[None]:
    """Hold the run lock of `folder`; wait up to `timeout` seconds, then raise PipelineLocked."""
    # The file names are shared with every dpo version that may run on the plant (an upgrade
    # mid-schedule): they stay as they were whatever the module is called.
    lock = FileLock(folder / ".dpo.store.lock", timeout=timeout)
    info = folder / ".dpo.store.lock.json"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if timeout <= 0:
                raise
            logger.debug("⏳ the run lock of {} is held ({}): waiting up to {:g} s", folder,
                         _holder(info), timeout)
            lock.acquire()
    except Timeout as exc:
        raise PipelineLocked(
            f"another dpo run holds {folder} ({_holder(info)}); wait for it to finish "
            "or use --wait SECONDS", file=str(folder),
        ) from exc
    except OSError as exc:  # a read-only output folder: say so, before anything is read
        raise DpoError(f"cannot take the run lock in {folder}: {exc.strerror or exc}; the output "
                       "folder must be writable by this user", error_type=ErrorType.WRITE_ERROR,
                       file=str(folder)) from exc
    try:
        holder = {"pid": os.getpid(), "started_at": datetime.now().isoformat(timespec="seconds")}
        with suppress(OSError):  # only names the holder in a second run's message (disk full?)
            info.write_text(json.dumps(holder), encoding="utf-8")
        yield
    finally:
        info.unlink(missing_ok=True)
        lock.release()

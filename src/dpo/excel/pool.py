"""Reading many source files at once: a thread per worker, results kept in file order.

fastexcel's `to_arrow` runs without the GIL but its parse (`load_sheet`) holds it, so two
threads read the 120-report plant ~1.45x faster than one (`bench/threads.py`). Forked
processes managed 1.1-1.2x: shipping the tables back costs what the parse gains.
A file that fails raises exactly as it would have serially, its retries reported.

`ReadAhead` lets Phase 1 ask for every table's files at its start: while the collector
normalises, merges and writes one table, the pool already reads the next table's files.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from dpo.errors import DpoError
from dpo.excel.reader import RawSheet, read_spec
from dpo.excel.retry import RetryReport, report_retries, with_retries
from dpo.fsio import Fingerprint
from dpo.schema import TableSpec

# Below this many files a pool costs more than it saves.
MIN_FILES_FOR_POOL = 4


def read_one(path: Path, spec: TableSpec, max_retries: int, retry_wait: float,
             retries: list[str]) -> RawSheet:
    return with_retries(
        lambda: read_spec(path, spec),
        max_retries=max_retries, what=path.name, base_wait=retry_wait, on_retry=retries.append)


@dataclass
class _Outcome:
    """One file's read, done ahead: the sheet or the error, and the retries it took."""

    sheet: RawSheet | None = None
    error: DpoError | None = None
    retries: list[str] = field(default_factory=list)
    after: Fingerprint | None = None  # the file when the read ended (None: gone)


class ReadAhead:
    """A reading pool shared by a phase's tables; reads asked for early are done early.

    A read done ahead is used only if the file still has the size and mtime it had when that
    read ended (read_sheet checks that the file did not change while it was read); otherwise
    the file is read again, when it is needed.
    """

    def __init__(self, *, workers: int, max_retries: int, retry_wait: float) -> None:
        self.max_retries = max_retries
        self.retry_wait = retry_wait
        self._pool = ThreadPoolExecutor(workers) if workers >= 2 else None
        self._ahead: dict[Path, Future[_Outcome]] = {}

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._pool is not None:  # reads nobody asked for again are not waited for
            self._pool.shutdown(wait=True, cancel_futures=True)

    @property
    def pooled(self) -> bool:
        return self._pool is not None

    def prefetch(self, files: list[Path], spec: TableSpec) -> None:
        """Start reading `files` now, in the background (no-op without a pool)."""
        if self._pool is None:
            return
        for path in files:
            if path not in self._ahead:
                self._ahead[path] = self._pool.submit(self._read, path, spec)

    def read(self, files: list[Path], spec: TableSpec, *, on_retry: RetryReport,
             on_done: Callable[[int], None]) -> list[RawSheet]:
        """Every file's raw sheet, in the order given; the first failure raises."""
        if self._pool is None or (len(files) < MIN_FILES_FOR_POOL and not self._ahead):
            return [self._deliver(self._read(path, spec), on_retry, on_done) for path in files]
        futures = [self._future(path, spec) for path in files]
        return [self._deliver(self._current(future.result(), path, spec), on_retry, on_done)
                for path, future in zip(files, futures, strict=True)]

    def _future(self, path: Path, spec: TableSpec) -> Future[_Outcome]:
        ahead = self._ahead.pop(path, None)
        if ahead is not None:
            return ahead
        assert self._pool is not None
        return self._pool.submit(self._read, path, spec)

    def _current(self, outcome: _Outcome, path: Path, spec: TableSpec) -> _Outcome:
        """The outcome, if the file is still as it was when it was read; else a new read."""
        return outcome if outcome.after == file_state(path) else self._read(path, spec)

    def _read(self, path: Path, spec: TableSpec) -> _Outcome:
        outcome = _Outcome()
        try:
            outcome.sheet = read_one(path, spec, self.max_retries, self.retry_wait,
                                     outcome.retries)
        except DpoError as exc:
            outcome.error = exc
        outcome.after = file_state(path)
        return outcome

    @staticmethod
    def _deliver(outcome: _Outcome, on_retry: RetryReport,
                 on_done: Callable[[int], None]) -> RawSheet:
        # A file that failed after retries still reports them.
        report_retries(outcome.retries, outcome.error is None, on_retry)
        on_done(1)
        if outcome.error is not None:
            raise outcome.error
        assert outcome.sheet is not None
        return outcome.sheet


def file_state(path: Path) -> Fingerprint | None:
    """The file's size and mtime now (None: gone): a read done ahead is used only while
    they are those it had when the read ended."""
    try:
        return Fingerprint.of(path)
    except OSError:
        return None

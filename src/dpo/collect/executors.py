"""Where Phase 1's per-file work runs (`executor` setting; README, "Beyond one machine").

  threads    (default) the reading pool in this process (excel.pool.ReadAhead); the new
             files of a table are then normalised together, in this process
  processes  a pool of worker processes (forkserver: no copy of this process's state), one
             per `workers`; each runs collect.filetask on a file
  dask       dask.distributed: `scheduler` (tcp://HOST:PORT), else DASK_SCHEDULER_ADDRESS,
             else a LocalCluster of `workers` processes on 127.0.0.1. The workers must see
             the plant's folders at the same paths (a shared disk)

A worker writes its file's rows as an Arrow IPC segment in the run's scratch folder and
returns a FileOutcome (plain data): no table travels back. Dask tasks are submitted with
pure=False: a changed file is never served from a cached task result.
"""

from __future__ import annotations

import importlib
import os
import shutil
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from dpo.collect.filetask import FileOutcome, FileTask, run_file_task
from dpo.collect.remotetask import RemotePlan, drop_scratch, fetch_segments
from dpo.config import RowPolicy
from dpo.errors import ConfigError
from dpo.fsio import Fingerprint
from dpo.schema import TableSpec

EXECUTORS = ("threads", "processes", "dask")


class Pending(Protocol):
    def result(self) -> Any: ...


class FileExecutor(Protocol):
    """Runs per-file tasks somewhere else; `submit` returns at once."""

    def submit(self, task: FileTask) -> Pending: ...
    def close(self) -> None: ...


class ProcessFiles:
    def __init__(self, workers: int) -> None:
        import multiprocessing  # here: the threads executor (the default) never needs them
        from concurrent.futures import ProcessPoolExecutor

        self._pool = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("forkserver"))

    def submit(self, task: FileTask) -> Pending:
        return self._pool.submit(run_file_task, task)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class DaskFiles:
    def __init__(self, workers: int, scheduler: str | None) -> None:
        try:  # imported here: only a run that asks for Dask pays for it
            distributed: Any = importlib.import_module("distributed")
        except ImportError as exc:
            raise ConfigError("executor dask needs the dask extra: pip install 'dpo[dask]'"
                              ) from exc
        address = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS") or None
        self._cluster: Any = None
        if address is None:
            self._cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                         host="127.0.0.1", dashboard_address=None)
            address = self._cluster.scheduler_address
        try:
            self._client = distributed.Client(address, set_as_default=False)
        except OSError as exc:
            self.close()
            raise ConfigError(f"no Dask scheduler at {address}: {exc}") from exc

    def submit(self, task: FileTask) -> Pending:
        future: Pending = self._client.submit(run_file_task, task, pure=False)
        return future

    def close(self) -> None:
        if getattr(self, "_client", None) is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()


def open_executor(kind: str, workers: int, scheduler: str | None) -> FileExecutor | None:
    """The executor named by the setting (None: threads, the in-process path)."""
    if kind == "processes":
        return ProcessFiles(workers)
    if kind == "dask":
        return DaskFiles(workers, scheduler)
    if kind != "threads":
        raise ConfigError(f"executor must be one of {EXECUTORS}, got {kind!r}")
    return None


class TaskAhead:
    """Files' tasks submitted early (every table's at Phase 1's start), results in file order.

    An outcome is used only if the file still has the size and mtime it had when its task
    ended; otherwise the file's task runs again (as excel.pool.ReadAhead does)."""

    def __init__(self, executor: FileExecutor, scratch_root: Path, policy: RowPolicy, *,
                 max_retries: int, retry_wait: float, remote: RemotePlan | None = None) -> None:
        self.executor = executor
        run = uuid.uuid4().hex
        self.scratch = scratch_root / run
        self.remote = remote.for_run(run) if remote else None  # workers on other machines
        self.policy, self.max_retries, self.retry_wait = policy, max_retries, retry_wait
        self._ahead: dict[Path, Pending] = {}
        shutil.rmtree(scratch_root, ignore_errors=True)  # what a killed run left

    def __enter__(self) -> TaskAhead:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.executor.close()
            if self.remote is not None:
                drop_scratch(self.remote)
        finally:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def prefetch(self, files: list[Path], spec: TableSpec) -> None:
        for path in files:
            if path not in self._ahead:
                self._ahead[path] = self._submit(path, spec)

    def run(self, files: list[Path], spec: TableSpec) -> list[FileOutcome]:
        pending = [self._pending(path, spec) for path in files]
        outcomes = []
        for path, task in zip(files, pending, strict=True):
            outcome: FileOutcome = task.result()
            if outcome.after != _fingerprint(path):  # changed since its task read it
                outcome = self._submit(path, spec).result()
            outcomes.append(outcome)
        if self.remote is not None:
            fetch_segments(outcomes, self.scratch, self.remote)
        return outcomes

    def _pending(self, path: Path, spec: TableSpec) -> Pending:
        ahead = self._ahead.pop(path, None)
        return ahead if ahead is not None else self._submit(path, spec)

    def _submit(self, path: Path, spec: TableSpec) -> Pending:
        remote = self.remote.source_of(path) if self.remote else None
        return self.executor.submit(FileTask(path, spec, self.policy, self.max_retries,
                                             self.retry_wait, self.scratch, remote))


def _fingerprint(path: Path) -> Fingerprint | None:
    try:
        return Fingerprint.of(path)
    except OSError:
        return None

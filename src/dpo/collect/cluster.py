"""Phase 1's batch task on workers that do not share this machine's disk (a Dask cluster
named by `--scheduler`): the source file is read from object storage, the segment is put there.

A run whose sources are on object storage (`dynamic_db_source_dir` a URL) mirrors them here
first (inputs.plant); a worker on another machine cannot see that mirror, so each task
also carries an `ObjectSource` per file (collect.batchtask): the object's URL and the ETag that was
mirrored. The worker

- reads each file where this machine put it if it sees it there unchanged (a worker on the
  same machine, or a shared disk), else GETs the object *with If-Match on that ETag*: the worker
  reads exactly the version this run's cache records, or the task fails (run again);
- runs the ordinary task (collect.batchtask.run_batch) on the batch's files;
- puts its segment (and quarantine) under `scratch_url` when the store is on object storage
  too (`<default_dir>/_dpo/tasks/<run>/`), returning their URLs; this process fetches them
  (`fetch_segments`) and deletes the run's prefix at the end (`drop_scratch`).

Credentials: each worker uses its own environment (AWS_* and the like). Storage options from
`dpo.toml` are secrets and are never put into a task (a Dask scheduler shows task arguments).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from dpo.collect.batchtask import BatchOutcome, BatchTask, FileRead, ObjectSource, run_batch
from dpo.config import Paths
from dpo.errors import DpoError, ErrorType
from dpo.fsio import Fingerprint

TASKS = "_dpo/tasks"  # under a remote default_dir: one prefix per run's segments


@dataclass(frozen=True)
class RemotePlan:
    """How this run's tasks reach workers on other machines (None: they share the disk)."""

    source_url: str  # the URL of dynamic_db_source_dir
    source_dir: Path  # its local mirror
    scratch_url: str | None  # segments on object storage (a remote default_dir), else local
    options: dict[str, str] = field(default_factory=dict, repr=False)  # this process only

    def source_of(self, path: Path) -> ObjectSource | None:
        """The object a mirrored source file is a copy of (its state says which ETag)."""
        from dpo.inputs.mirror import mirrored

        try:
            relative = path.relative_to(self.source_dir).as_posix()
            fingerprint = Fingerprint.of(path)
        except (ValueError, OSError):
            return None  # not a mirrored file: the worker reads the path (a shared disk)
        entry = mirrored(path.parent).get(path.name, {})
        return ObjectSource(f"{self.source_url}/{relative}", entry.get("e_tag"), fingerprint,
                            self.scratch_url)

    def for_run(self, run: str) -> RemotePlan:
        """This plan with the run's own prefix for segments."""
        return replace(self, scratch_url=f"{self.scratch_url}/{run}") if self.scratch_url \
            else self


def remote_plan(paths: Paths, executor: str, scheduler: str | None,
                options: dict[str, str]) -> RemotePlan | None:
    """A plan when the run's workers are a cluster it was pointed at (possibly other
    machines) and its sources are on object storage; else None (workers see this disk)."""
    if executor != "dask" or paths.source_url is None:
        return None
    if not (scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")):
        return None  # dpo's own LocalCluster: workers on this machine
    scratch = f"{paths.store_url}/{TASKS}" if paths.store_url else None
    return RemotePlan(paths.source_url, paths.source_dir, scratch, options)


def run_batch_task(task: BatchTask) -> BatchOutcome:
    """A batch on any worker (collect.batchtask.run_batch); never raises a DpoError (it is in
    the outcome). A batch is the unit of work for a pool or a cluster: what a unit costs to
    schedule, send and answer (a few ms on Dask) and Arrow's per-call costs of normalising
    (~15 ms a pass) are paid once per batch (collect.executors.batches cuts them)."""
    if not task.remote:
        return run_batch(task)
    work = Path(tempfile.mkdtemp(prefix="dpo-task-"))
    try:
        return run_object_batch(task, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_object_batch(task: BatchTask, work: Path) -> BatchOutcome:
    """A batch whose files have ObjectSources, on any machine (module docstring): each file
    read where this machine mirrored it if the worker sees it there unchanged, else fetched."""
    local: list[Path] = []
    for path, remote in zip(task.paths, task.remote, strict=True):
        try:
            local.append(path if remote is None else _readable_copy(path, remote, work))
        except DpoError as exc:  # the object could not be fetched: as a read failure
            reads = [FileRead(p.name) for p in task.paths]
            reads[len(local)].error = exc
            return BatchOutcome(reads)
    scratch_url = next((r.scratch_url for r in task.remote if r is not None), None)
    outcome = run_batch(replace(task, paths=tuple(local), remote=(),
                                scratch=work / "segments" if scratch_url else task.scratch))
    for read, path, copy, remote in zip(outcome.files, task.paths, local, task.remote,
                                        strict=True):
        if copy != path and remote is not None and read.after is not None:
            read.after = remote.fingerprint  # read from the object: as this machine mirrored it
    if scratch_url is not None:
        _put_segments(outcome, scratch_url)
    return outcome


def _readable_copy(path: Path, remote: ObjectSource, work: Path) -> Path:
    """The mirrored file if this worker sees it unchanged, else the object, fetched."""
    try:
        if Fingerprint.of(path) == remote.fingerprint:
            return path
    except OSError:
        pass  # not on this machine: fetch it
    from dpo.store.objects.client import ObjectChanged, open_bucket, storage_error, stream

    store, key = open_bucket(remote.url)
    target = work / path.name
    try:
        with target.open("wb") as handle:
            stream(store, key, handle.write, if_match=remote.e_tag)
    except ObjectChanged as exc:
        raise DpoError(f"{remote.url} changed on the store while this run read it; run again",
                       error_type=ErrorType.FILE_READ_ERROR, file=remote.url) from exc
    except OSError as exc:  # this machine's disk (the store's failures are DpoErrors)
        raise storage_error("read", remote.url, exc) from exc
    return target


def _put_segments(outcome: BatchOutcome, scratch_url: str) -> None:
    from dpo.store.objects.client import open_bucket, put

    for name in ("segment", "quarantine"):
        local = getattr(outcome, name)
        if isinstance(local, Path):
            url = f"{scratch_url}/{local.name}"
            store, key = open_bucket(url)
            put(store, key, local.read_bytes())
            setattr(outcome, name, url)


def fetch_segments(outcomes: list[BatchOutcome], local_dir: Path, plan: RemotePlan) -> None:
    """The segments workers put on object storage, fetched into `local_dir` (several at once)
    and named by their local paths in the outcomes, so that fanout reads files as always."""
    wanted = [(o, f) for o in outcomes for f in ("segment", "quarantine")
              if isinstance(getattr(o, f), str)]
    if not wanted:
        return
    local_dir.mkdir(parents=True, exist_ok=True)

    from dpo.store.objects.client import get_bytes, open_bucket, storage_error

    def fetch(url: str) -> Path:
        store, key = open_bucket(url, plan.options)
        target = local_dir / key.rsplit("/", 1)[-1]
        data = get_bytes(store, key)
        try:
            target.write_bytes(data)
        except OSError as exc:
            raise storage_error("read", url, exc) from exc
        return target

    with ThreadPoolExecutor(8) as pool:
        paths = list(pool.map(fetch, [getattr(o, f) for o, f in wanted]))
    for (outcome, name), path in zip(wanted, paths, strict=True):
        setattr(outcome, name, path)


def drop_scratch(plan: RemotePlan) -> None:
    """Delete the run's segment objects (a killed run's go at the next run's repair:
    dpo.store.objects.store.ObjectVersionStore.recover)."""
    from dpo.store.objects.client import delete, list_keys, open_bucket

    if plan.scratch_url is None:
        return
    store, prefix = open_bucket(plan.scratch_url, plan.options)
    delete(store, list_keys(store, prefix + "/"))

"""Phase 1's one task, for every executor: a batch of one table's consecutive files read and
normalised in ONE pass (`screen_sheets`, Arrow's per-call costs paid once per batch, not once
per file), their rows and row hashes as one table, and small plain data about each file.

A worker process or a Dask worker runs `run_batch`: it reads the files itself, writes the
batch's rows (with their row hashes) as one Arrow IPC segment beside the cache and hands back
only plain data (no table is pickled). The threads executor reads on its reading pool
(excel.pool.ReadAhead) and calls `screen_batch` on all new files of a table, the table held
in memory. `collect.fanout.combine` then puts batches together as one pass over all of them
would have made them (docs/behaviour.md, section 4).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from dpo.arrays import from_numpy
from dpo.collect.segments import HASH_COLUMN, segment_schema
from dpo.config import RowPolicy
from dpo.errors import CellError, CellErrors, DpoError
from dpo.excel.pool import file_state, read_one
from dpo.excel.reader import RawSheet
from dpo.fsio import Fingerprint
from dpo.quality import DataWarning
from dpo.schema import TableSpec
from dpo.transform.concat import concat_raw, error_cells, exact_origin
from dpo.transform.normalize import Normalized, normalize_table
from dpo.transform.rejects import Screened, screen_rows
from dpo.transform.rowhash import row_hashes


def screen_sheets(files: list[Path], sheets: list[RawSheet], spec: TableSpec, policy: RowPolicy,
                  *, as_read: bool = False) -> Screened:
    """The sheets' rows normalised as one table, then the row policies (rejects.screen_rows).
    `as_read`: quarantined rows keep the reader's types (see rejects.quarantine_table)."""
    raw, origin, exact = concat_raw(sheets)
    flagged = error_cells(sheets, origin)
    return screen_rows(
        raw, spec, policy,
        lambda where: normalize_table(raw, spec, where, exact, flagged, policy.on_error_cells),
        origin, lambda: exact_origin(files, sheets, origin), as_read=as_read)


@dataclass(frozen=True)
class ObjectSource:
    """Where a worker that cannot see this machine's disk finds a source file, and puts its
    segment (collect.cluster). No credentials: a worker uses its own environment."""

    url: str  # the source object
    e_tag: str | None  # the version this run mirrored: the worker reads that one or fails
    fingerprint: Fingerprint  # the local copy: a worker that sees it unchanged reads it
    scratch_url: str | None  # segments go under this prefix (None: into `scratch`)


@dataclass(frozen=True)
class BatchTask:
    """What a worker needs: plain values and paths only (a worker may be another machine
    that sees the same folders)."""

    paths: tuple[Path, ...]  # consecutive files of one table, in file order
    spec: TableSpec
    policy: RowPolicy
    max_retries: int
    retry_wait: float
    scratch: Path  # the run's folder for segments, inside the cache folder
    remote: tuple[ObjectSource | None, ...] = ()  # per path, workers elsewhere: collect.cluster


@dataclass(frozen=True)
class RawColumn:
    """How the reader typed one raw column of a file: what concatenating files decides on."""

    type: pa.DataType
    holds_values: bool
    has_exact: bool


@dataclass
class FileRead:
    """One file of a batch: its read, and how many of its rows load."""

    file: str
    error: DpoError | None = None  # the read failed (after its retries)
    retries: tuple[str, ...] = ()  # retries still to report (the threads path reported them)
    after: Fingerprint | None = None  # the file when it was read (None: gone, or not read)
    raw_rows: int = 0
    columns: tuple[RawColumn, ...] = ()
    notes: tuple[DataWarning, ...] = ()  # the reader's (loose headers, merged cells...)
    rows: int = 0  # rows that load, at this file's place in the batch's rows


@dataclass(frozen=True)
class Held:
    """The threads path's one batch (all new files of a table) kept in this process: its rows,
    their hashes and its quarantine as written (one pass over all files made it)."""

    table: pa.Table
    hashes: np.ndarray
    quarantine: pa.Table | None


@dataclass
class BatchOutcome:
    """One batch's pass, as plain data. `segment` holds the rows that load and their hashes,
    file after file; `quarantine` the rejected rows as read (when the policy quarantines)."""

    files: list[FileRead]
    error: DpoError | None = None  # normalising failed (not a read, not bad cells)
    cells: tuple[CellError, ...] = ()  # every bad cell (with `failed`: the policy fails them)
    failed: bool = False
    nulled: tuple[CellError, ...] = ()  # error cells loaded as NA
    totals: tuple[DataWarning, ...] = ()
    blank: int = 0
    segment: Path | str | None = None  # a URL while on object storage (collect.cluster)
    quarantine: Path | str | None = None
    quarantined: int = 0
    held: Held | None = field(default=None, repr=False)  # in-process: instead of the files


def run_batch(task: BatchTask) -> BatchOutcome:
    """Read and normalise a batch of files on this machine's disk; never raises a DpoError (it
    is in the outcome). A task whose files a worker may not see (`task.remote`) goes through
    collect.cluster.run_batch_task instead."""
    reads, sheets = [], []
    for path in task.paths:
        retries: list[str] = []
        read = FileRead(path.name)
        try:
            sheets.append(read_one(path, task.spec, task.max_retries, task.retry_wait, retries))
        except DpoError as exc:
            read.error = exc
        read.retries, read.after = tuple(retries), file_state(path)
        reads.append(read)
        if read.error is not None:  # the run stops at this file: the others are not read
            reads.extend(FileRead(p.name) for p in task.paths[len(reads):])
            return BatchOutcome(reads)
    return screen_batch(list(task.paths), sheets, reads, task.spec, task.policy, task.scratch)


def screen_batch(paths: list[Path], sheets: list[RawSheet], reads: list[FileRead],
                 spec: TableSpec, policy: RowPolicy, scratch: Path | None) -> BatchOutcome:
    """The batch's sheets normalised in one pass; its rows written as a segment into
    `scratch`, or held in this process (`scratch` None: the threads path, whose one batch
    holds all new files, so its quarantine is already as one pass makes it)."""
    batched = scratch is not None
    for read, sheet in zip(reads, sheets, strict=True):
        read.raw_rows, read.notes = sheet.table.num_rows, sheet.notes
        if batched:  # how the file typed its columns: for fanout._quarantine
            read.columns = tuple(
                RawColumn(column.type, column.null_count < len(column),
                          sheet.exact.get(name) is not None)
                for name, column in zip(sheet.table.column_names, sheet.table.columns,
                                        strict=True))
    outcome = BatchOutcome(reads)
    try:
        screened = screen_sheets(paths, sheets, spec, policy, as_read=batched)
    except CellErrors as exc:  # the run decides with every batch's cells (fanout.combine)
        outcome.cells, outcome.failed = exc.cells(), True
        return outcome
    except DpoError as exc:
        outcome.error = exc
        return outcome
    norm = screened.norm
    outcome.cells, outcome.nulled = norm.cells, norm.nulled
    outcome.totals = screened.warnings[len(norm.nulled):]  # screen_rows: nulled, then totals
    outcome.blank = screened.blank
    for read, rows in zip(reads, kept_rows(norm), strict=True):
        read.rows = rows
    hashes = row_hashes(norm.table)
    if screened.quarantine is not None:
        outcome.quarantined = screened.quarantine.num_rows
    if scratch is None:
        outcome.held = Held(norm.table, hashes, screened.quarantine)
        return outcome
    scratch.mkdir(parents=True, exist_ok=True)
    name = f"{spec.name}-{uuid.uuid4().hex}"
    outcome.segment = scratch / f"{name}.arrow"
    _write_ipc(outcome.segment, norm.table.append_column(
        segment_schema(spec).field(HASH_COLUMN), from_numpy(hashes)))
    if screened.quarantine is not None:
        outcome.quarantine = scratch / f"{name}.quarantine.arrow"
        _write_ipc(outcome.quarantine, screened.quarantine)
    return outcome


def kept_rows(norm: Normalized) -> list[int]:
    """Each file's rows that load (`norm.bad_rows` holds the raw positions cut out)."""
    bad = np.asarray(norm.bad_rows, dtype=np.int64)
    starts = [*norm.origin.starts, norm.table.num_rows + len(bad)]
    kept_before = [int(s) - int(np.searchsorted(bad, s)) for s in starts]
    return [kept_before[i + 1] - kept_before[i] for i in range(len(norm.origin.starts))]


def _write_ipc(path: Path, table: pa.Table) -> None:
    """Uncompressed, one record batch (read back as a map, like the cache's segments)."""
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table.combine_chunks(), max_chunksize=1 << 30)

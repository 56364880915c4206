"""Phase 1's per-file task, as a process or a Dask worker runs it: one source file read and
normalised under the row policies, its rows and row hashes written as an Arrow IPC segment
beside the cache, and only small plain data handed back (no table is pickled).

`screen_sheets` is the one normalisation of raw sheets, used by the in-process (threads) path
on all new files at once and by this task on one file; `collect.fanout` puts the files'
outcomes together as the one pass would have (docs/behaviour.md, section 4).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from dpo.arrays import from_numpy
from dpo.collect.segments import HASH_COLUMN, segment_schema
from dpo.config import RowPolicy
from dpo.errors import CellError, CellErrors, DpoError
from dpo.excel.pool import read_one
from dpo.excel.reader import RawSheet
from dpo.fsio import Fingerprint
from dpo.quality import DataWarning
from dpo.schema import TableSpec
from dpo.transform.concat import concat_raw, error_cells, exact_origin
from dpo.transform.normalize import normalize_table
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
class FileTask:
    """What a worker needs: plain values and paths only (a worker may be another machine
    that sees the same folders)."""

    path: Path
    spec: TableSpec
    policy: RowPolicy
    max_retries: int
    retry_wait: float
    scratch: Path  # the run's folder for segments, inside the cache folder
    remote: ObjectSource | None = None  # a worker on another machine: collect.cluster


@dataclass(frozen=True)
class RawColumn:
    """How the reader typed one raw column of a file: what concatenating files decides on."""

    type: pa.DataType
    holds_values: bool
    has_exact: bool


@dataclass
class FileOutcome:
    """One file's task, as plain data. `segment` holds the rows that load and their hashes;
    `quarantine` the file's rejected rows as read (when the policy quarantines)."""

    file: str
    error: DpoError | None = None
    read_failed: bool = False  # the error came from reading (else from normalising)
    retries: tuple[str, ...] = ()
    after: Fingerprint | None = None  # the file when the task ended (None: gone)
    raw_rows: int = 0
    columns: tuple[RawColumn, ...] = ()
    notes: tuple[DataWarning, ...] = ()
    cells: tuple[CellError, ...] = ()  # every bad cell (with `failed`: the policy fails them)
    failed: bool = False
    nulled: tuple[CellError, ...] = ()  # error cells loaded as NA
    totals: tuple[DataWarning, ...] = ()
    blank: int = 0
    rows: int = 0
    segment: Path | str | None = None  # a URL while on object storage (collect.cluster)
    quarantine: Path | str | None = None
    quarantined: int = 0


def run_file_task(task: FileTask) -> FileOutcome:
    """Read and normalise one file on this machine's disk; never raises a DpoError (it is in
    the outcome). A task whose file a worker may not see (`task.remote`) goes through
    collect.cluster.run_tasks instead."""
    outcome = FileOutcome(task.path.name)
    retries: list[str] = []
    try:
        sheet = read_one(task.path, task.spec, task.max_retries, task.retry_wait, retries)
    except DpoError as exc:
        outcome.error, outcome.read_failed = exc, True
        return _ended(outcome, task, retries)
    outcome.raw_rows = sheet.table.num_rows
    outcome.notes = sheet.notes
    outcome.columns = tuple(
        RawColumn(column.type, column.null_count < len(column), sheet.exact.get(name) is not None)
        for name, column in zip(sheet.table.column_names, sheet.table.columns, strict=True))
    try:
        screened = screen_sheets([task.path], [sheet], task.spec, task.policy, as_read=True)
    except CellErrors as exc:  # the run decides with every file's cells (fanout.combine)
        outcome.cells, outcome.failed = exc.cells(), True
        return _ended(outcome, task, retries)
    except DpoError as exc:
        outcome.error = exc
        return _ended(outcome, task, retries)
    norm = screened.norm
    outcome.cells, outcome.nulled = norm.cells, norm.nulled
    outcome.totals = screened.warnings[len(norm.nulled):]  # screen_rows: nulled, then totals
    outcome.blank, outcome.rows = screened.blank, norm.table.num_rows
    task.scratch.mkdir(parents=True, exist_ok=True)
    name = f"{task.spec.name}-{uuid.uuid4().hex}"
    outcome.segment = task.scratch / f"{name}.arrow"
    hashes = row_hashes(norm.table)
    stored = norm.table.append_column(segment_schema(task.spec).field(HASH_COLUMN),
                                      from_numpy(hashes))
    _write_ipc(outcome.segment, stored)
    if screened.quarantine is not None:
        outcome.quarantine = task.scratch / f"{name}.quarantine.arrow"
        outcome.quarantined = screened.quarantine.num_rows
        _write_ipc(outcome.quarantine, screened.quarantine)
    return _ended(outcome, task, retries)


def _write_ipc(path: Path, table: pa.Table) -> None:
    """Uncompressed, one record batch (read back as a map, like the cache's segments)."""
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table.combine_chunks(), max_chunksize=1 << 30)


def _ended(outcome: FileOutcome, task: FileTask, retries: list[str]) -> FileOutcome:
    outcome.retries = tuple(retries)
    try:
        outcome.after = Fingerprint.of(task.path)
    except OSError:
        outcome.after = None
    return outcome

"""Finding a dynamic table's source files (stdlib only: a no-change run needs just this)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from dpo.errors import DpoError, ErrorType
from dpo.quality import DataWarning, WarningKind, note
from dpo.schema import TableSpec

_DATE_IN_NAME = re.compile(r"^[^_]*_(\d{6,8})")


def discover(spec: TableSpec, folder: Path) -> list[Path]:
    """Source files of a dynamic table, oldest first (by the date in the name, then name)."""
    return discover_with_notes(spec, folder)[0]


def discover_with_notes(spec: TableSpec, folder: Path) -> tuple[list[Path], list[DataWarning]]:
    """The table's source files, and a warning for each file named like one that is not read
    as one (another extension) or has no date in its name (read after the dated files).
    Extensions match in any case: `.XLSX` on a Windows share is the same file type."""
    if not folder.is_dir():
        raise DpoError(f"source folder not found: {folder}", error_type=ErrorType.FILE_NOT_FOUND,
                       table=spec.name, file=str(folder))
    extension = spec.extension.lower()
    try:  # scandir: file types come with the listing, no stat per file
        with os.scandir(folder) as listing:
            named = [e for e in listing if e.name.startswith(spec.name_start)
                     and not e.name.startswith(("~$", ".")) and e.is_file()]
    except OSError as exc:  # e.g. a folder this user may not list
        raise DpoError(f"cannot list source folder {folder}: {exc.strerror or exc}",
                       error_type=ErrorType.FILE_READ_ERROR, table=spec.name,
                       file=str(folder)) from exc
    entries = [e for e in named if e.name.lower().endswith(extension)]
    notes = [note(WarningKind.SOURCE_FILE, f"{e.name}: named like a {spec.name} source but not "
                  f"{spec.extension}; not read", e.name) for e in named if e not in entries]
    files = [Path(e.path) for e in entries]
    if not files:
        raise DpoError(
            f"no {spec.name_start}*{spec.extension} files in {folder}",
            error_type=ErrorType.FILE_NOT_FOUND, table=spec.name, file=str(folder),
        )
    _refuse_escaping_links([Path(e.path) for e in entries if e.is_symlink()], folder, spec.name)
    _refuse_undecodable_names(files, spec.name)
    ordered = sorted(files, key=_date_key)
    notes += [note(WarningKind.SOURCE_FILE, f"{p.name}: no YYYYMM or YYMMDD date after "
                   f"{spec.name_start!r}; read after the dated files", p.name)
              for p in ordered if _date_key(p)[0]]
    return ordered, notes


def _refuse_undecodable_names(files: list[Path], table: str) -> None:
    """A name that is not valid text (bytes the file system's encoding cannot decode) cannot be
    opened by the reader, nor written into reports, Parquet metadata or the run ledger."""
    for path in files:
        try:
            path.name.encode("utf-8")
        except UnicodeEncodeError:
            shown = os.fsencode(path.name).decode("utf-8", errors="backslashreplace")
            raise DpoError(f"{shown}: file name is not valid UTF-8; rename the file",
                           error_type=ErrorType.FILE_READ_ERROR, table=table,
                           file=shown) from None


def _date_key(path: Path) -> tuple[int, str, str]:
    # YYYYMM and YYMMDD both sort chronologically as digit strings of equal length.
    match = _DATE_IN_NAME.match(path.name)
    return (0, match.group(1), path.name) if match else (1, "", path.name)


def _refuse_escaping_links(links: list[Path], folder: Path, table: str) -> None:
    root = folder.resolve()
    for path in links:
        if not path.resolve().is_relative_to(root):
            raise DpoError(f"{path.name}: symlink points outside the source folder; refused",
                           error_type=ErrorType.FILE_READ_ERROR, table=table, file=path.name)

"""A source file as a file: there, readable, a workbook by its content, not a decompression
bomb, not still being copied, and unchanged while it is read. Reader errors become dpo errors
here, once, naming the file."""

from __future__ import annotations

import os
import time
import zipfile
from pathlib import Path

import fastexcel

from dpo.errors import DpoError, ErrorType, TransientError

# Decompression-bomb bounds: an export of a plant's month is a few MB unpacked.
MAX_UNPACKED_BYTES = 2 * 1024**3
MAX_PACK_RATIO = 1000
# A file modified this recently that fails to open is probably still being copied in.
SETTLING_SECONDS = 5.0


def stat_source(path: Path, name: str) -> os.stat_result:
    try:
        return path.stat()
    except FileNotFoundError as exc:
        raise DpoError(f"{name}: file not found", error_type=ErrorType.FILE_NOT_FOUND,
                       file=name) from exc
    except PermissionError as exc:
        raise TransientError(f"{name}: permission denied", error_type=ErrorType.FILE_READ_ERROR,
                             file=name) from exc


# What every workbook starts with: .xlsx/.xlsm/.xlsb are zip packages, .xls an OLE2 container.
WORKBOOK_MAGIC = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")
# What files that land in an export folder by mistake start with (after a BOM and spaces).
_LOOKS_LIKE = ((b"%PDF", "a PDF"), (b"<!doctype html", "an HTML page"), (b"<html", "an HTML page"),
               (b"<table", "an HTML table"),
               (b"<?xml", "an XML file"), (b"{\\rtf", "an RTF document"),
               (b"\x1f\x8b", "a gzip archive"), (b"Rar!", "a RAR archive"),
               (b"7z\xbc\xaf", "a 7-Zip archive"), (b"\x89PNG", "a PNG image"),
               (b"\xff\xd8\xff", "a JPEG image"), (b"PK\x05\x06", "an empty zip archive"))


def check_workbook(path: Path, name: str, before: os.stat_result) -> None:
    """Decide by content before any reader tries: a file that does not start as a workbook is
    not one, at once and for good (never retried as a copy in progress); unless it is empty
    or zeros right after it changed, which is how a copy starts (docs/behaviour.md, "Discovery")."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
    except PermissionError as exc:
        raise TransientError(f"{name}: permission denied (locked?)",
                             error_type=ErrorType.FILE_READ_ERROR, file=name) from exc
    if head.startswith(WORKBOOK_MAGIC):
        return
    if not head.strip(b"\0") and time.time() - before.st_mtime < SETTLING_SECONDS:
        raise TransientError(f"{name}: empty right after it changed; still being copied?",
                             error_type=ErrorType.FILE_READ_ERROR, file=name)
    raise DpoError(f"{name}: not an Excel workbook ({_looks_like(head)}); export it again "
                   "as .xlsx or .xlsb", error_type=ErrorType.FILE_READ_ERROR, file=name)


def _looks_like(head: bytes) -> str:
    if not head:
        return "the file is empty"
    if not head.strip(b"\0"):
        return "it holds only zero bytes"
    start = head.removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    for magic, what in _LOOKS_LIKE:
        if start.startswith(magic.lower()):
            return f"it starts like {what}"
    # Text: UTF-8 (a character cut at byte 512 aside) of printable characters and line ends.
    text = head.decode("utf-8", errors="replace").removeprefix("\ufeff").removesuffix("\ufffd")
    if all(c.isprintable() or c in "\r\n\t" for c in text):
        return "it starts like text, a CSV file?"
    return f"its first bytes are {head[:8].hex(' ')}"


def check_unchanged(path: Path, name: str, before: os.stat_result) -> None:
    now = stat_source(path, name)
    if (now.st_ino, now.st_size, now.st_mtime_ns, now.st_ctime_ns) != (
            before.st_ino, before.st_size, before.st_mtime_ns, before.st_ctime_ns):
        raise TransientError(f"{name}: file changed while it was read (still being copied?)",
                             error_type=ErrorType.FILE_READ_ERROR, file=name)


def open_zip(path: Path, name: str) -> zipfile.ZipFile | None:
    """The file opened as a zip, refused if it is a decompression bomb; None if it is not a
    zip at all (the reader will say what it is)."""
    if not zipfile.is_zipfile(path):
        return None
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DpoError(f"{name}: not a readable Excel file ({exc})",
                       error_type=ErrorType.FILE_READ_ERROR, file=name) from exc
    unpacked = sum(info.file_size for info in archive.infolist())
    packed = sum(info.compress_size for info in archive.infolist()) or 1
    if unpacked > MAX_UNPACKED_BYTES or unpacked / packed > MAX_PACK_RATIO:
        archive.close()
        raise DpoError(
            f"{name}: refused, unpacks to {unpacked:,} bytes (ratio {unpacked / packed:.0f}:1); "
            "looks like a decompression bomb",
            error_type=ErrorType.FILE_READ_ERROR, file=name,
        )
    return archive


def open_reader(path: Path, name: str, mtime: float) -> fastexcel.ExcelReader:
    try:
        with open(path, "rb"):
            pass  # the reader would report "permission denied" as an unreadable Excel file
        return fastexcel.read_excel(path)
    except PermissionError as exc:
        raise TransientError(f"{name}: permission denied (locked?)",
                             error_type=ErrorType.FILE_READ_ERROR, file=name) from exc
    except fastexcel.FastExcelError as exc:
        if time.time() - mtime < SETTLING_SECONDS:
            raise TransientError(f"{name}: unreadable right after it changed; still being copied?",
                                 error_type=ErrorType.FILE_READ_ERROR, file=name) from exc
        raise read_error(name, exc, None) from exc


def read_error(name: str, exc: Exception, sheet: str | None) -> DpoError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "password protected" in first.lower():
        return DpoError(f"{name}: the workbook is password-protected; save it without a "
                        "password (File > Info > Protect Workbook)",
                        error_type=ErrorType.FILE_READ_ERROR, file=name, sheet=sheet)
    return DpoError(f"{name}: not a readable Excel file ({first})",
                    error_type=ErrorType.FILE_READ_ERROR, file=name, sheet=sheet)

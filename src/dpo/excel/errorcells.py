"""What the reader does not say about a sheet, found in the workbook's own bytes.

calamine, under every Python reader, returns an error cell (#N/A, #DIV/0!...) and a formula
that was never calculated (no cached value: a workbook written by a script) as an empty cell,
so either would load as NA without a word; and it does not say which cells are merged (all but
the top-left one read as empty). This module looks at the sheet's bytes: `t="e"` cells,
`<f>` cells without `<v>` and `<mergeCell>` in .xlsx XML; BrtCellError/BrtFmlaError and
BrtMergeCell records in .xlsb. The common case (none of these anywhere) costs one streamed
byte search per sheet; sheets that have any are parsed fully. (An .xlsb formula record always
carries its value, so "not calculated" is an .xlsx matter.)
"""

from __future__ import annotations

import html
import re
import struct
import zipfile
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np

from dpo.errors import NOT_CALCULATED
from dpo.excel.numbercells import lossy_only, lossy_texts_of, xlsx_lossy_numbers
from dpo.excel.xlsbmarks import XlsbMarks, xlsb_marks

ERROR_CODES = {0x00: "#NULL!", 0x07: "#DIV/0!", 0x0F: "#VALUE!", 0x17: "#REF!", 0x1D: "#NAME?",
               0x24: "#NUM!", 0x2A: "#N/A", 0x2B: "#GETTING_DATA"}
_BRT_ROW, _BRT_CELL_ERROR, _BRT_FMLA_ERROR, _BRT_BUNDLE_SH = 0x00, 0x03, 0x0B, 0x9C
_BRT_MERGE_CELL = 0xB0
_XLSX_ERROR_CELL = re.compile(rb'<c\b[^>]*\bt="e"[^>]*>(?:(?!</c>).)*?<v>([^<]*)</v>', re.S)
# A formula cell with no cached value: <c r="B5"><f>A5*2</f></c>, or a shared formula's
# <f t="shared" si="0"/> alone (a calculated "" has <v></v>, and is an empty text, not this).
_XLSX_UNCALCULATED = re.compile(rb'<c\b([^>]*[^/])?>\s*<f\b[^>]*(?:/>|>[^<]*</f>)\s*</c>')
_XLSX_MERGE = re.compile(rb'<mergeCell\b[^>]*\bref="([A-Z]+)(\d+):([A-Z]+)(\d+)"')
_CELL_REF = re.compile(rb'\br="([A-Z]+)(\d+)"')


@dataclass(frozen=True)
class ErrorCell:
    row: int  # 0-based sheet row
    col: int  # 0-based sheet column
    text: str  # e.g. "#DIV/0!", or NOT_CALCULATED


@dataclass(frozen=True)
class Merge:
    """A merged range, 0-based and inclusive: what Excel shows in all of it is the top-left
    cell's value."""

    first_row: int
    first_col: int
    last_row: int
    last_col: int

    def ref(self) -> str:
        return f"{cell_ref(self.first_row, self.first_col)}:{cell_ref(self.last_row, self.last_col)}"


@dataclass(frozen=True)
class SheetScan:
    errors: tuple[ErrorCell, ...] = ()
    merges: tuple[Merge, ...] = ()
    lossy: frozenset[str] = frozenset()  # reader's texts of numbers it rounds (numbercells)


def cell_ref(row: int, col: int) -> str:
    """A 0-based cell as Excel names it: (4, 1) -> "B5"."""
    letters, col = "", col + 1
    while col:
        col, rest = divmod(col - 1, 26)
        letters = chr(65 + rest) + letters
    return f"{letters}{row + 1}"


def scan_sheet(path: str, sheet: str, archive: zipfile.ZipFile | None = None) -> SheetScan:
    """Error cells, uncalculated formulas, merged ranges and lossy numbers of `sheet`, from one
    stream through its bytes; empty when there are none (or the file is not a zip).
    `archive`: the file already opened as a zip (its directory is not read twice)."""
    try:
        with zipfile.ZipFile(path) if archive is None else nullcontext(archive) as opened:
            part = _sheet_part(opened, sheet)
            if part is None:
                return SheetScan()
            binary = part.endswith(".bin")
            maybe, lossy = _stream(opened, part, binary)
            if not maybe:
                return SheetScan(lossy=lossy)
            data = opened.read(part)
    except (zipfile.BadZipFile, OSError, KeyError):
        return SheetScan()  # the reader reports unreadable files; this is only a second look
    found = _xlsb_scan(data) if binary else SheetScan(tuple(_xlsx_errors(data)),
                                                       tuple(_xlsx_merges(data)))
    return SheetScan(found.errors, found.merges, lossy)


def _stream(archive: zipfile.ZipFile, part: str, binary: bool) -> tuple[bool, frozenset[str]]:
    """One pass, 1 MiB at a time (a 60 MB sheet is never held twice): may the sheet hold error
    cells, formulas or merges (the cheap test), and its lossy numbers' texts (numbercells).
    A large sheet is scanned while the reader parses it, at the run's memory peak: 4 MiB
    blocks (and every number kept) added ~30 MB there, 1 MiB ones ~7 MB, at the same CPU."""
    maybe, numbers, tail = False, [], b""
    with archive.open(part) as stream:
        while block := stream.read(_CHUNK):
            joined = tail + block
            if binary:
                marks = xlsb_marks(joined)
                maybe = maybe or _may_hold_errors(joined, marks)
                numbers.append(lossy_only(marks.numbers))
            else:
                maybe = maybe or _xlsx_may_hold(joined)
                numbers.append(xlsx_lossy_numbers(joined))
            tail = block[-_OVERLAP:]
    return maybe, lossy_texts_of(np.concatenate([np.zeros(0), *numbers]))


_CHUNK = 1 << 20
_OVERLAP = 512  # longer than any error record or `t="e"` cell tag that could straddle chunks


_XLSX_MARKERS = (b't="e"', b"</f></c>", b"/></c>", b"<mergeCell ")


def _xlsx_may_hold(block: bytes) -> bool:
    return any(marker in block for marker in _XLSX_MARKERS)


# -- locating the sheet's part ------------------------------------------------------------------
def _sheet_part(archive: zipfile.ZipFile, sheet: str) -> str | None:
    """The zip member holding `sheet`. Files exported from one template share their workbook
    and relationship parts: known by their CRCs, they are not parsed again."""
    key = (sheet, *((info.filename, info.CRC, info.file_size) for info in archive.infolist()
                    if info.filename in _WORKBOOK_PARTS))
    known = _PARTS.get(key, "")  # no part is named "": "" means not known yet
    if known != "":
        return known
    part = _find_sheet_part(archive, sheet)
    if len(_PARTS) > 256:  # reading threads share it: a dict's single operations are atomic
        _PARTS.clear()
    _PARTS[key] = part
    return part


_WORKBOOK_PARTS = frozenset({"xl/workbook.xml", "xl/workbook.bin", "xl/_rels/workbook.xml.rels",
                             "xl/_rels/workbook.bin.rels"})
_PARTS: dict[tuple[object, ...], str | None] = {}


def _find_sheet_part(archive: zipfile.ZipFile, sheet: str) -> str | None:
    names = set(archive.namelist())
    if "xl/workbook.xml" in names:
        rel_id = _xlsx_rel_id(archive.read("xl/workbook.xml"), sheet)
        rels = "xl/_rels/workbook.xml.rels"
    elif "xl/workbook.bin" in names:
        rel_id = _xlsb_rel_id(archive.read("xl/workbook.bin"), sheet)
        rels = "xl/_rels/workbook.bin.rels"
    else:
        return None
    if rel_id is None or rels not in names:
        return None
    for attrs in re.findall(rb"<Relationship\b([^>]*)>", archive.read(rels)):
        found = dict(re.findall(rb'(\w+)="([^"]*)"', attrs))
        if found.get(b"Id", b"").decode() == rel_id:
            target = found.get(b"Target", b"").decode()
            return target.lstrip("/") if target.startswith("/") else str(
                PurePosixPath("xl") / target)
    return None


def _xlsx_rel_id(workbook: bytes, sheet: str) -> str | None:
    for attrs in re.findall(rb"<sheet\b([^>]*)>", workbook):
        found: dict[bytes, bytes] = dict(re.findall(rb'([\w:]+)="([^"]*)"', attrs))
        if html.unescape(found.get(b"name", b"").decode("utf-8")) == sheet:
            return found.get(b"r:id", b"").decode()
    return None


def _xlsb_rel_id(workbook: bytes, sheet: str) -> str | None:
    for rtype, start, _size in records(workbook):
        if rtype != _BRT_BUNDLE_SH:
            continue
        rel_id, offset = _wide_string(workbook, start + 8)
        name, _ = _wide_string(workbook, offset)
        if name == sheet:
            return rel_id
    return None


def _wide_string(data: bytes, offset: int) -> tuple[str, int]:
    (count,) = struct.unpack_from("<I", data, offset)
    if count == 0xFFFFFFFF:  # a nullable string that is null
        return "", offset + 4
    end = offset + 4 + 2 * count
    return data[offset + 4:end].decode("utf-16-le"), end


# -- .xlsx ----------------------------------------------------------------------------------------
def _xlsx_errors(data: bytes) -> list[ErrorCell]:
    found = []
    for match in _XLSX_ERROR_CELL.finditer(data):
        ref = _CELL_REF.search(match.group(0))
        if ref is None:
            continue
        found.append(ErrorCell(int(ref.group(2)) - 1, _column_index(ref.group(1).decode()),
                               html.unescape(match.group(1).decode("utf-8"))))
    for match in _XLSX_UNCALCULATED.finditer(data):
        ref = _CELL_REF.search(match.group(0))
        if ref is not None:
            found.append(ErrorCell(int(ref.group(2)) - 1, _column_index(ref.group(1).decode()),
                                   NOT_CALCULATED))
    return sorted(found, key=lambda cell: (cell.row, cell.col))


def _xlsx_merges(data: bytes) -> list[Merge]:
    return [Merge(int(r1) - 1, _column_index(c1.decode()), int(r2) - 1, _column_index(c2.decode()))
            for c1, r1, c2, r2 in _XLSX_MERGE.findall(data)]


def _column_index(letters: str) -> int:
    index = 0
    for letter in letters:
        index = index * 26 + ord(letter) - 64
    return index - 1


# -- .xlsb ----------------------------------------------------------------------------------------
def records(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(record type, payload start, payload size) of each BIFF12 record."""
    i, n = 0, len(data)
    while i < n:
        byte = data[i]
        i += 1
        rtype = byte & 0x7F
        if byte & 0x80 and i < n:
            byte = data[i]
            i += 1
            rtype |= (byte & 0x7F) << 7
        size, shift = 0, 0
        for _ in range(4):
            if i >= n:
                return
            byte = data[i]
            i += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        yield rtype, i, size
        i += size


def _xlsb_scan(data: bytes) -> SheetScan:
    found, merges, row = [], [], 0
    for rtype, start, size in records(data):
        if rtype == _BRT_ROW and size >= 4:
            (row,) = struct.unpack_from("<I", data, start)
        elif rtype in (_BRT_CELL_ERROR, _BRT_FMLA_ERROR) and size >= 9:
            (col,) = struct.unpack_from("<I", data, start)
            found.append(ErrorCell(row, col, ERROR_CODES.get(data[start + 8], "#ERROR")))
        elif rtype == _BRT_MERGE_CELL and size >= 16:
            first, last, left, right = struct.unpack_from("<IIII", data, start)
            merges.append(Merge(first, left, last, right))
    return SheetScan(tuple(found), tuple(merges))


def _may_hold_errors(data: bytes, marks: XlsbMarks) -> bool:
    """A cheap test that rules out error records in almost every sheet without parsing it.

    Looks at each place an error record could start (`marks`, found in one pass over `data`)
    and checks its layout: a column below 16,384, a known error code and, for formula errors,
    sizes that add up. Merged ranges come after the cells, behind one BrtBeginMergeCells
    record (type 177, size 4).
    """
    if marks.merges:
        return True
    for start in marks.cell_errors.tolist():  # "03 09": a payload of 9 bytes
        if _plausible_error(data, start + 2, 9) and _record_starts(data, start + 11):
            return True
    for start in marks.formula_errors.tolist():  # "0B" and a one-byte size
        size = data[start + 1]
        if _plausible_formula_error(data, start + 2, size) and \
                _record_starts(data, start + 2 + size):
            return True
    return False


# Cell records of fixed size (type -> payload size); the other cell and row records vary.
_FIXED_CELLS = {0x01: 8, 0x02: 12, 0x03: 9, 0x04: 9, 0x05: 16, 0x07: 12}
_VARIABLE = {0x00, 0x06, 0x08, 0x09, 0x0A, 0x0B}
_END_SHEET_DATA = b"\x92\x03"  # BrtEndSheetData, after the last cell


def _record_starts(data: bytes, position: int) -> bool:
    """Does a plausible record start at `position` (what must follow a real error record)?

    Ruling out candidates this way keeps the full parse for sheets that really have errors:
    bytes that merely look like an error record occur by chance in large sheets."""
    if position + 2 > len(data):
        return position == len(data)
    kind, size = data[position], data[position + 1]
    if data[position:position + 2] == _END_SHEET_DATA:
        return True
    if kind in _FIXED_CELLS:
        return size == _FIXED_CELLS[kind]
    return kind in _VARIABLE and size >= 8


def _plausible_error(data: bytes, start: int, size: int) -> bool:
    if start + size > len(data):
        return False
    (col,) = struct.unpack_from("<I", data, start)
    return col < 16384 and data[start + 8] in ERROR_CODES


def _plausible_formula_error(data: bytes, start: int, size: int) -> bool:
    if start + size > len(data) or not _plausible_error(data, start, size):
        return False
    (cce,) = struct.unpack_from("<I", data, start + 11)
    if 15 + cce + 4 > size:
        return False
    (cb,) = struct.unpack_from("<I", data, start + 15 + cce)
    return bool(19 + cce + cb == size)

"""Excel fixture writers: our own ``.xlsb`` (BIFF12) writer (its ``.xlsx`` twin is demo.xlsx).

Why our own writer: the plant exports monthly reports as ``.xlsb`` and the pipeline's tests need
fixtures in that format. ``pyxlsbwriter`` (the only PyPI writer) embeds opaque byte blobs,
stores whole numbers as RK integers (calamine then ignores the date format of such cells) and
leaves the sheet dimension at ``A1:A1``, which makes ``pyxlsb`` fail. BIFF12 is a plain
record stream ([MS-XLSB] 2.1.4), so the few records a valid one-sheet workbook needs are
written here, each one documented.

Value semantics, identical for :func:`write_xlsb` and :func:`write_xlsx`:

* ``None`` and float NaN -> no cell at all (an empty cell);
* ``str`` -> a shared-string cell, always text, even ``"10190"`` or ``"=1+1"``;
* ``bool`` -> a boolean cell; ``int``/``float`` -> an IEEE double cell, like Excel itself;
* ``datetime.date`` / ``datetime.datetime`` -> serial day number (1899-12-30 = 0) with the
  built-in number format 14 (date) or 22 (date and time), so readers type them as dates.
"""

from __future__ import annotations

import datetime as dt
import math
import struct
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ExcelError:
    """An Excel error value (#N/A, #DIV/0!, ...), written as a formula that failed (or, with
    `formula=False`, as a plain error cell): what a broken upstream workbook exports."""

    text: str = "#N/A"
    formula: bool = True


CellValue = str | int | float | bool | dt.date | dt.datetime | ExcelError | None
# A merged range, 0-based sheet coordinates (row 0 is the header): first row, first column,
# last row, last column. The writers keep the top-left cell's value and leave the rest empty.
Merge = tuple[int, int, int, int]

__all__ = ["CellValue", "ExcelError", "Merge", "check_value", "excel_serial", "write_xlsb"]
_ERROR_CODES = {"#NULL!": 0x00, "#DIV/0!": 0x07, "#VALUE!": 0x0F, "#REF!": 0x17, "#NAME?": 0x1D,
                "#NUM!": 0x24, "#N/A": 0x2A}
# The formula 1/0 as BIFF12 tokens: PtgInt 1, PtgInt 0, PtgDiv.
_RGCE_1_DIV_0 = bytes([0x1E, 1, 0, 0x1E, 0, 0, 0x06])

# Excel's day 0. Serials before 1900-03-01 are skewed by Excel's fictitious 1900-02-29.
_EPOCH = dt.datetime(1899, 12, 30)
_EPOCH_1904 = dt.datetime(1904, 1, 1)
_FIRST_DATE = dt.date(1900, 3, 1)
_MAX_TEXT = 32767  # Excel's limit on the length of a cell's text
_MAX_EXACT_INT = 2**53  # cells hold IEEE doubles: larger integers would silently change
_MAX_ROWS, _MAX_COLS = 1_048_576, 16_384
# Cell XF indexes in styles.bin: 0 General, 1 date (built-in format 14), 2 date-time (22).
_XF_GENERAL, _XF_DATE, _XF_DATETIME = 0, 1, 2
_FLUSH_RECORDS = 65_536  # ~1 MiB of cell records per write to the zip stream
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so identical content gives identical bytes

_CELL_REAL = struct.Struct("<BBIId")  # BrtCellReal: type 5, size 16, col, iStyleRef, Xnum
_CELL_ISST = struct.Struct("<BBIII")  # BrtCellIsst: type 7, size 12, col, iStyleRef, isst
_CELL_BOOL = struct.Struct("<BBIIB")  # BrtCellBool: type 4, size 9, col, iStyleRef, value


def check_value(value: object) -> CellValue:
    """Return ``value`` as a writable cell value (NaN -> ``None``) or raise a clear error.

    Both writers call this so a fixture can never silently differ between ``.xlsx`` and
    ``.xlsb``: infinities, integers beyond 2**53, tz-aware datetimes, too-long text and dates
    before 1900-03-01 are refused rather than stored differently from what was asked.
    """
    if isinstance(value, ExcelError):
        if value.text not in _ERROR_CODES:
            raise ValueError(f"unknown Excel error value {value.text!r}")
        return value
    if value is None or isinstance(value, str | bool | int):
        if isinstance(value, str) and len(value) > _MAX_TEXT:
            raise ValueError(f"text longer than {_MAX_TEXT} characters cannot be stored")
        if isinstance(value, int) and abs(value) > _MAX_EXACT_INT:
            raise ValueError(f"{value} would lose digits as an Excel number; write it as text")
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            raise ValueError("Excel cannot store an infinite number")
        return value
    if isinstance(value, dt.date):
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            raise ValueError(f"timezone-aware datetime {value!r}: convert to naive local time")
        if value < (dt.datetime(1900, 3, 1) if isinstance(value, dt.datetime) else _FIRST_DATE):
            raise ValueError(f"date {value!r} is before 1900-03-01 (ambiguous Excel serial)")
        return value
    raise TypeError(f"unsupported cell value type {type(value).__name__}: {value!r}")


def excel_serial(value: dt.date, *, date1904: bool = False) -> float:
    """Excel serial day number of a date or naive datetime (fractions are time of day), in the
    1900 date system or, with `date1904`, the 1904 one (day 0 = 1904-01-01)."""
    epoch = _EPOCH_1904 if date1904 else _EPOCH
    if isinstance(value, dt.datetime):
        delta = value - epoch
        return delta.days + (delta.seconds + delta.microseconds / 1e6) / 86400.0
    return float((value - epoch.date()).days)


def _varint(value: int) -> bytes:
    """7-bit little-endian encoding used for BIFF12 record types and sizes."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


def _rec(rtype: int, payload: bytes = b"") -> bytes:
    """One BIFF12 record: varint type, varint size, payload."""
    return _varint(rtype) + _varint(len(payload)) + payload


def _wide(text: str) -> bytes:
    """XLWideString: count of UTF-16 code units, then UTF-16LE text."""
    raw = text.encode("utf-16-le")
    return struct.pack("<I", len(raw) // 2) + raw


class _SharedStrings:
    """Shared-string table, filled while the sheet is written (Excel's own layout)."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.total = 0

    def get(self, text: str) -> int:
        self.total += 1
        idx = self.index.get(text)
        if idx is None:
            idx = self.index[text] = len(self.index)
        return idx

    def payload(self) -> bytes:
        # BrtBeginSst (cstTotal, cstUnique), BrtSSTItem per string (flags 0 = plain), BrtEndSst.
        parts = [_rec(0x9F, struct.pack("<II", self.total, len(self.index)))]
        parts.extend(_rec(0x13, b"\x00" + _wide(text)) for text in self.index)
        parts.append(_rec(0xA0))
        return b"".join(parts)


def _row_records(
    row_idx: int, row: Sequence[object], sst: _SharedStrings, parts: list[bytes],
    date1904: bool = False,
) -> None:
    """Append BrtRowHdr and one cell record per non-empty value of ``row``."""
    cells: list[bytes] = []
    first = last = -1
    for col, raw in enumerate(row):
        value = check_value(raw)
        if value is None:
            continue
        if isinstance(value, ExcelError):
            cells.append(_error_record(col, value))
        elif isinstance(value, str):
            cells.append(_CELL_ISST.pack(7, 12, col, _XF_GENERAL, sst.get(value)))
        elif isinstance(value, bool):
            cells.append(_CELL_BOOL.pack(4, 9, col, _XF_GENERAL, value))
        elif isinstance(value, int | float):
            cells.append(_CELL_REAL.pack(5, 16, col, _XF_GENERAL, float(value)))
        else:
            style = _XF_DATETIME if isinstance(value, dt.datetime) else _XF_DATE
            cells.append(_CELL_REAL.pack(5, 16, col, style, excel_serial(value, date1904=date1904)))
        first = col if first < 0 else first
        last = col
    if not cells:
        return  # an all-empty row needs no record; readers keep its place from the others
    # BrtRowHdr: rw, ixfe, miyRw=300 twips, 3 flag bytes, one BrtColSpan (first..last column).
    parts.append(_rec(0x00, struct.pack("<IIHBBBIII", row_idx, 0, 300, 0, 0, 0, 1, first, last)))
    parts.extend(cells)


def _error_record(col: int, value: ExcelError) -> bytes:
    code = _ERROR_CODES[value.text]
    if not value.formula:  # BrtCellError: col, iStyleRef, bErr
        return struct.pack("<BBIIB", 3, 9, col, _XF_GENERAL, code)
    # BrtFmlaError: col, iStyleRef, bErr, grbitFlags, cce, rgce, cb (no extra data)
    body = struct.pack("<IIBHI", col, _XF_GENERAL, code, 0, len(_RGCE_1_DIV_0))
    body += _RGCE_1_DIV_0 + struct.pack("<I", 0)
    return _rec(11, body)


def _sheet_head(n_rows: int, n_cols: int) -> bytes:
    # BrtWsProp: default flags, automatic tab colour, no sync cell, empty code name.
    ws_prop = bytes.fromhex("cb0402" "0040000000000000" "ffffffff" "ffffffff" "00000000")
    view = struct.pack("<HIIIBBHHHHHI", 0x03DC, 0, 0, 0, 0x40, 0, 0, 100, 0, 0, 0, 0)
    return b"".join(
        [
            _rec(0x81),  # BrtBeginSheet
            _rec(0x93, ws_prop),
            # BrtWsDim: the used range. pyxlsb sizes every row from it, so it must be exact.
            _rec(0x94, struct.pack("<IIII", 0, max(n_rows - 1, 0), 0, max(n_cols - 1, 0))),
            _rec(0x85),  # BrtBeginWsViews
            _rec(0x89, view),  # BrtBeginWsView: normal view, 100 %, first tab selected
            _rec(0x8A),
            _rec(0x86),
            _rec(0x1E5, struct.pack("<IHHHBB", 0xFFFFFFFF, 8, 300, 0, 0, 0)),  # BrtWsFmtInfo
            _rec(0x91),  # BrtBeginSheetData
        ]
    )


def _sheet_tail(merges: Sequence[Merge] = ()) -> bytes:
    margins = struct.pack("<6d", 0.7, 0.7, 0.75, 0.75, 0.3, 0.3)
    merged = b""
    if merges:  # BrtBeginMergeCells (count), a BrtMergeCell (RfX) per range, BrtEndMergeCells
        merged = _rec(0xB1, struct.pack("<I", len(merges))) + b"".join(
            _rec(0xB0, struct.pack("<IIII", r1, r2, c1, c2)) for r1, c1, r2, c2 in merges
        ) + _rec(0xB2)
    # EndSheetData, the merges, PageMargins, EndSheet
    return _rec(0x92) + merged + _rec(0x1DC, margins) + _rec(0x82)


def _workbook_bin(sheet: str, date1904: bool = False) -> bytes:
    if not sheet or len(sheet) > 31 or any(c in sheet for c in "[]:*?/\\"):
        raise ValueError(f"invalid Excel sheet name {sheet!r}")
    version = bytes(16) + _wide("xl") + _wide("7") + _wide("7") + _wide("27328")
    book_view = struct.pack("<iIIIIIIB", 0, 0, 0x69B4, 0x26E8, 600, 0, 0, 0x78)
    calc = struct.pack("<IIIdiH", 0x02EA35, 1, 100, 0.001, 1, 0x6A)
    return b"".join(
        [
            _rec(0x83),  # BrtBeginBook
            _rec(0x80, version),  # BrtFileVersion
            _rec(0x99, struct.pack("<II", int(date1904), 0) + _wide("")),  # BrtWbProp: bit 0 = 1904
            _rec(0x87),
            _rec(0x9E, book_view),  # BrtBookView
            _rec(0x88),
            _rec(0x8F),  # BrtBeginBundleShs
            _rec(0x9C, struct.pack("<II", 0, 1) + _wide("rId1") + _wide(sheet)),  # BrtBundleSh
            _rec(0x90),
            _rec(0x9D, calc),  # BrtCalcProp: automatic recalculation
            _rec(0x84),  # BrtEndBook
        ]
    )


def _xf(parent: int, fmt: int) -> bytes:
    """BrtXF: parent, number format, font/fill/border 0, bottom-aligned + locked."""
    applied = 0x0001 if fmt else 0  # xfGrbitAtr: the number format differs from the parent
    return _rec(0x2F, struct.pack("<HHHHHBBHH", parent, fmt, 0, 0, 0, 0, 0, 0x1010, applied))


def _styles_bin() -> bytes:
    theme_text = bytes([0x07, 0x01, 0, 0, 0, 0, 0, 0xFF])
    font = struct.pack("<HHHHBBBB", 220, 0, 400, 0, 0, 2, 0, 0) + theme_text + b"\x02"
    fill_none = struct.pack("<I", 0) + bytes([3, 0x40, 0, 0, 0, 0, 0, 0xFF])
    fill_none += bytes([3, 0x41, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]) + bytes(48)
    fill_gray = struct.pack("<I", 0x11) + fill_none[4:]
    border = b"\x00" + (b"\x00\x00" + bytes([1]) + bytes(7)) * 5
    return b"".join(
        [
            _rec(0x116),  # BrtBeginStyleSheet
            _rec(0x267, struct.pack("<I", 0)) + _rec(0x268),  # no custom formats needed
            _rec(0x263, struct.pack("<I", 1)) + _rec(0x2B, font + _wide("Calibri")),
            _rec(0x264),
            _rec(0x25B, struct.pack("<I", 2)) + _rec(0x2D, fill_none) + _rec(0x2D, fill_gray),
            _rec(0x25C),
            _rec(0x265, struct.pack("<I", 1)) + _rec(0x2E, border) + _rec(0x266),
            _rec(0x272, struct.pack("<I", 1)) + _xf(0xFFFF, 0) + _rec(0x273),
            _rec(0x269, struct.pack("<I", 3)),  # BrtBeginCellXFs: General, date, date-time
            _xf(0, 0) + _xf(0, 14) + _xf(0, 22),
            _rec(0x26A),
            _rec(0x26B, struct.pack("<I", 1)),
            _rec(0x30, struct.pack("<IHBB", 0, 1, 0, 0xFF) + _wide("Normal")),  # BrtStyle
            _rec(0x26C),
            _rec(0x1F9, struct.pack("<I", 0)) + _rec(0x1FA),  # no differential formats
            _rec(0x1FC, struct.pack("<I", 0) + _wide("TableStyleMedium2")
                 + _wide("PivotStyleLight16")),
            _rec(0x1FD),
            _rec(0x117),  # BrtEndStyleSheet
        ]
    )


_CONTENT_TYPES = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">\
<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>\
<Default Extension="xml" ContentType="application/xml"/>\
<Override PartName="/xl/workbook.bin" \
ContentType="application/vnd.ms-excel.sheet.binary.macroEnabled.main"/>\
<Override PartName="/xl/worksheets/sheet1.bin" ContentType="application/vnd.ms-excel.worksheet"/>\
<Override PartName="/xl/styles.bin" ContentType="application/vnd.ms-excel.styles"/>\
<Override PartName="/xl/sharedStrings.bin" ContentType="application/vnd.ms-excel.sharedStrings"/>\
</Types>"""
_REL = '<Relationship Id="{}" Type="http://schemas.openxmlformats.org/{}" Target="{}"/>'
_RELS_HEAD = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
)
_ROOT_RELS = (
    _RELS_HEAD
    + _REL.format("rId1", "officeDocument/2006/relationships/officeDocument", "xl/workbook.bin")
    + "</Relationships>"
)
_BOOK_RELS = (
    _RELS_HEAD
    + _REL.format("rId1", "officeDocument/2006/relationships/worksheet", "worksheets/sheet1.bin")
    + _REL.format("rId2", "officeDocument/2006/relationships/styles", "styles.bin")
    + _REL.format("rId3", "officeDocument/2006/relationships/sharedStrings", "sharedStrings.bin")
    + "</Relationships>"
)


def _zinfo(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def write_xlsb(
    path: Path, sheet: str, header: list[str], rows: Sequence[Sequence[object]], *,
    date1904: bool = False, merges: Sequence[Merge] = (),
) -> Path:
    """Write a one-sheet ``.xlsb``: ``header`` as row 1 (text), then ``rows``.

    The sheet part is streamed in ~1 MiB chunks, so a 200 000-row report does not need its
    whole binary image in memory. Same arguments give byte-identical files.
    """
    n_rows = len(rows) + 1
    n_cols = max([len(header), *(len(r) for r in rows)]) if rows else len(header)
    if n_rows > _MAX_ROWS or n_cols > _MAX_COLS:
        raise ValueError(f"{n_rows} rows x {n_cols} columns exceeds Excel's sheet size")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sst = _SharedStrings()
    book = _workbook_bin(sheet, date1904)
    with zipfile.ZipFile(path, "w", compresslevel=6) as zf:
        zf.writestr(_zinfo("[Content_Types].xml"), _CONTENT_TYPES)
        zf.writestr(_zinfo("_rels/.rels"), _ROOT_RELS)
        zf.writestr(_zinfo("xl/workbook.bin"), book)
        zf.writestr(_zinfo("xl/_rels/workbook.bin.rels"), _BOOK_RELS)
        zf.writestr(_zinfo("xl/styles.bin"), _styles_bin())
        big = n_rows * n_cols * 20 > (1 << 31)  # size unknown up front: allow ZIP64 if needed
        with zf.open(_zinfo("xl/worksheets/sheet1.bin"), "w", force_zip64=big) as out:
            parts: list[bytes] = [_sheet_head(n_rows, n_cols)]
            _row_records(0, header, sst, parts)
            for idx, row in enumerate(rows, start=1):
                _row_records(idx, row, sst, parts, date1904)
                if len(parts) >= _FLUSH_RECORDS:
                    out.write(b"".join(parts))
                    parts.clear()
            parts.append(_sheet_tail(merges))
            out.write(b"".join(parts))
        zf.writestr(_zinfo("xl/sharedStrings.bin"), sst.payload())
    return path

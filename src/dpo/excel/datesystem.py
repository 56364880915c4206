"""A workbook's date system (1900 or 1904), and what the reader made of it.

A workbook in the 1904 system (Mac templates) counts its serial numbers from 1904-01-01: they
are 1,462 days short of the 1900 system's. The reader converts cells formatted as dates itself,
and it does not always find the flag: calamine (under fastexcel 0.21) takes Excel 2013+'s
`<x15:workbookPr chartTrackingRefBase="1"/>` extension for the real `<workbookPr
date1904="1"/>` and resets the flag, so every date cell would come back 1,462 days early,
without a word. Which readers do so differs between versions, so dpo does not guess: it asks
the reader. A tiny workbook built around this file's own `xl/workbook.xml` (the part the
reader decides from), holding one date cell of a known serial, is read by the same reader;
the date it returns says which system the reader used. When that differs from the workbook's
own flag, reader.py turns the date cells back into serial numbers and dpo converts them
itself (`Origin.serial_shift`). Files of one template share the answer, known by the CRCs of
their workbook parts, so the probe runs once per template.
"""

from __future__ import annotations

import datetime as dt
import re
import zipfile
from collections.abc import Callable, Mapping
from io import BytesIO
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dpo.arrays import from_numpy, lit
from dpo.excel.errorcells import records

EPOCH_1900 = dt.datetime(1899, 12, 30)  # serial 0 as dates are computed (Excel's leap-year bug)
EPOCH_1904 = dt.datetime(1904, 1, 1)
_FIRST_OF_MARCH_1900 = 61.0  # days from 1899-12-30; Excel's serial 61 as well

_DATE1904_XML = re.compile(rb'<(?:\w+:)?workbookPr\b[^>]*\bdate1904="(?:1|true)"')
_BRT_WB_PROP = 0x99
_WORKBOOK_PARTS = frozenset({"xl/workbook.xml", "xl/workbook.bin"})


class DateSystem:
    """The workbook's own date system, and the one the reader converted its date cells by."""

    __slots__ = ("date1904", "reader1904")

    def __init__(self, date1904: bool, reader1904: bool) -> None:
        self.date1904 = date1904
        self.reader1904 = reader1904

    @property
    def reader_disagrees(self) -> bool:
        return self.date1904 != self.reader1904


_SYSTEMS: dict[tuple[object, ...], DateSystem] = {}
_NEITHER = DateSystem(False, False)


def date_system(archive: zipfile.ZipFile | None) -> DateSystem:
    """The date system of the workbook open in `archive` (a file that is no zip: 1900)."""
    if archive is None:
        return _NEITHER
    key = tuple((i.filename, i.CRC) for i in archive.infolist() if i.filename in _WORKBOOK_PARTS)
    known = _SYSTEMS.get(key)
    if known is None:
        if len(_SYSTEMS) > 256:  # reading threads share it: a dict's single operations are atomic
            _SYSTEMS.clear()
        known = _SYSTEMS[key] = _find(archive)
    return known


def _find(archive: zipfile.ZipFile) -> DateSystem:
    try:
        names = set(archive.namelist())
        if "xl/workbook.xml" in names:
            xml = archive.read("xl/workbook.xml")
            date1904 = _DATE1904_XML.search(xml) is not None
            return DateSystem(date1904, _reader_1904(xml, date1904))
        if "xl/workbook.bin" in names:
            data = archive.read("xl/workbook.bin")
            flags = [data[start] & 1 for rtype, start, size in records(data)
                     if rtype == _BRT_WB_PROP and size >= 4]
            # The reader, like Excel, takes the workbook's one BrtWbProp record.
            return DateSystem(bool(flags) and bool(flags[-1]), bool(flags) and bool(flags[-1]))
    except (zipfile.BadZipFile, OSError, KeyError, IndexError):
        return _NEITHER
    return _NEITHER


# -- asking the reader ---------------------------------------------------------------------------
_PROBE_SERIAL = 1000  # 1902-09-26 in the 1900 system, 1906-09-27 in the 1904 one
_SHEET_REL_ID = re.compile(rb'<(?:\w+:)?sheet\b[^>]*?\b\w+:id="([^"]+)"')
_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_RELS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/'
    'package/2006/content-types"><Default Extension="rels" ContentType="application/'
    'vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" '
    'ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType='
    '"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/></Types>')
_ROOT_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.'
    f'org/package/2006/relationships"><Relationship Id="rId1" Type="{_RELS}/officeDocument" '
    'Target="xl/workbook.xml"/></Relationships>')
_STYLES = (f'<?xml version="1.0" encoding="UTF-8"?><styleSheet xmlns="{_MAIN}"><cellXfs '
           'count="2"><xf numFmtId="0"/><xf numFmtId="14" applyNumberFormat="1"/></cellXfs>'
           '</styleSheet>')
_SHEET = (f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{_MAIN}"><sheetData>'
          f'<row r="1"><c r="A1" s="1"><v>{_PROBE_SERIAL}</v></c></row></sheetData></worksheet>')


def _reader_1904(workbook_xml: bytes, date1904: bool) -> bool:
    """The date system the reader converts this workbook's date cells by: it reads a workbook
    made of this `workbook.xml` (every sheet pointing at one probe sheet) and one date cell."""
    import fastexcel

    rel_ids = {m.decode("utf-8", "replace") for m in _SHEET_REL_ID.findall(workbook_xml)}
    rels = "".join(f'<Relationship Id="{rid}" Type="{_RELS}/worksheet" '
                   'Target="worksheets/probe.xml"/>' for rid in sorted(rel_ids))
    rels += f'<Relationship Id="dpoProbeStyles" Type="{_RELS}/styles" Target="styles.xml"/>'
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w") as probe:
        probe.writestr("[Content_Types].xml", _CONTENT_TYPES)
        probe.writestr("_rels/.rels", _ROOT_RELS)
        probe.writestr("xl/workbook.xml", workbook_xml)
        probe.writestr("xl/_rels/workbook.xml.rels", '<?xml version="1.0" encoding="UTF-8"?>'
                       '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/'
                       f'relationships">{rels}</Relationships>')
        probe.writestr("xl/styles.xml", _STYLES)
        probe.writestr("xl/worksheets/probe.xml", _SHEET)
    try:
        sheet = fastexcel.read_excel(buffer.getvalue()).load_sheet(0, header_row=None)
        value = sheet.to_arrow().column(0)[0].as_py()
    except (fastexcel.FastExcelError, IndexError, KeyError, ValueError):
        # The reader could not read the probe (a workbook.xml it cannot follow): it reads the
        # real file the same way and reports that itself; the flag as Excel has it stands.
        return date1904
    if value == EPOCH_1904 + dt.timedelta(days=_PROBE_SERIAL):
        return True
    if value == EPOCH_1900 + dt.timedelta(days=_PROBE_SERIAL):
        return False
    return date1904  # not a date cell to this reader: it converts none, nothing to correct


def serials(dates: pa.Array, reader1904: bool) -> pa.Array:
    """Date cells as the reader converted them (`reader1904`: from 1904-01-01), back to the
    workbook's serial numbers (float days; nulls stay null), for dpo to convert itself."""
    epoch = EPOCH_1904 if reader1904 else EPOCH_1900
    as_ms = dates.cast(pa.timestamp("ms")) if not pa.types.is_date(dates.type) else \
        dates.cast(pa.date32()).cast(pa.timestamp("ms"))
    raw = np.frombuffer(as_ms.buffers()[1], dtype=np.int64,
                        count=len(as_ms) + as_ms.offset)[as_ms.offset:]
    epoch_ms = int((epoch - dt.datetime(1970, 1, 1)).total_seconds() * 1000)
    days = (raw - epoch_ms).astype(np.float64) / 86_400_000.0
    if not reader1904:  # serials 1-59 are read as from 1899-12-31 (Excel's 29 Feb 1900)
        days = np.where(days < _FIRST_OF_MARCH_1900, days - 1.0, days)
    out = from_numpy(days)
    return pc.if_else(as_ms.is_valid(), out, lit(None)) if as_ms.null_count else out


Load = Callable[[set[str], Literal["float", "datetime"]], pa.RecordBatch]


def dates_as_serials(table: pa.Table, exact: dict[str, pa.Array], dates: Mapping[str, str],
                     load: Load, reader1904: bool) -> tuple[pa.Table, dict[str, pa.Array]]:
    """The date cells of the `dates` columns (canonical name -> header as written) as the
    workbook's own serial numbers, for a workbook whose date system the reader took wrong:
    the reader converted them from the wrong day 0, dpo converts the serials itself. A column
    read typed holds only dates; in one read as text, the date cells are those the reader
    (`load` reads the sheet's columns again, by header) gives as dates and not as numbers (a
    plain number is a serial already): their serials go to `exact`, as number cells' do."""
    as_text = []
    for column in sorted(dates):
        values = table.column(column)
        if pa.types.is_timestamp(values.type) or pa.types.is_date(values.type):
            table = table.set_column(table.schema.get_field_index(column), column,
                                     serials(values.combine_chunks(), reader1904))
        elif pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            as_text.append(column)
    if not as_text:
        return table, exact
    headers = {dates[c] for c in as_text}
    as_dates, as_floats = load(headers, "datetime"), load(headers, "float")
    exact = dict(exact)
    for column in as_text:
        cells = as_dates.column(dates[column])
        date_cells = pc.and_(pc.is_valid(cells), pc.is_null(as_floats.column(dates[column])))
        known = exact.get(column)
        exact[column] = pc.if_else(date_cells, serials(cells, reader1904),
                                   known if known is not None else lit(None))
    return table, exact

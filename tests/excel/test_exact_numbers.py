"""Number cells with more than 9 decimals in columns read as text (numbercells.py): the reader's
text would say "0" for 1.5e-10. A text column gets Excel's General spelling (15 significant
digits), an integer column the float (so it reports the fraction); text cells stay as written."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from dpo.demo.plant import write_xlsx
from dpo.demo.writers import write_xlsb
from dpo.excel.errorcells import scan_sheet
from dpo.excel.reader import read_sheet
from dpo.excel.xlsbmarks import xlsb_marks

WRITERS = {"xlsx": write_xlsx, "xlsb": write_xlsb}
COLUMNS = ("code", "qty", "weight")


def _read(path: Path):  # -> RawSheet
    return read_sheet(path, "S", COLUMNS, {}, numeric=frozenset({"weight"}),
                      text=frozenset({"code"}))


@pytest.mark.parametrize("ext", ["xlsx", "xlsb"])
def test_text_column_keeps_numbers_beyond_nine_decimals_and_text_as_written(
    tmp_path: Path, ext: str
) -> None:
    """Typed read (every number column holds numbers): `code` is read as text."""
    path = tmp_path / f"t.{ext}"
    codes = [1.5e-10, "0", 1 / 3, "1e3", 12.0000000001, -1e-10, 10190, "00123", 0.0, 1.25]
    WRITERS[ext](path, "S", list(COLUMNS), [[c, i, float(i)] for i, c in enumerate(codes)])
    raw = _read(path)
    assert raw.table.column("code").to_pylist() == [
        "1.5e-10", "0", "0.333333333333333", "1e3", "12.0000000001", "-1e-10", "10190", "00123",
        "0", "1.25"]
    assert raw.exact["code"].to_pylist() == [
        1.5e-10, None, 1 / 3, None, 12.0000000001, -1e-10, None, None, None, None]


@pytest.mark.parametrize("ext", ["xlsx", "xlsb"])
def test_sheet_read_as_text_keeps_integer_columns_exact(tmp_path: Path, ext: str) -> None:
    """`qty` mixes numbers and text, so the sheet is read as text: 1e-10 keeps its value (the
    integer column then reports it), "1e3" and "0" stay text."""
    path = tmp_path / f"t.{ext}"
    WRITERS[ext](path, "S", list(COLUMNS),
                 [["A", 1e-10, 1.0], ["B", "1e3", 2.0], ["C", "0", 3.0], ["D", 7, 4.0]])
    raw = _read(path)
    assert raw.table.column("qty").to_pylist() == ["1e-10", "1e3", "0", "7"]
    assert raw.exact["qty"].to_pylist() == [1e-10, None, None, None]
    assert raw.exact["weight"].to_pylist() == [1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize("ext", ["xlsx", "xlsb"])
def test_long_fractions_in_float_columns_only_change_nothing(tmp_path: Path, ext: str) -> None:
    """The common case of a long fraction: in a float column read typed, exact already. Its
    9-decimal text ("0.333333333") occurs in no text column: nothing is read again. The text
    "0" (1e-12's) does: that column is read again as floats, and its text "0" stays."""
    path = tmp_path / f"t.{ext}"
    WRITERS[ext](path, "S", list(COLUMNS), [["A", 1, 1 / 3], ["0", 2, 1e-12]])
    assert scan_sheet(str(path), "S").lossy == {"0.333333333", "0"}
    raw = _read(path)
    assert raw.table.column("code").to_pylist() == ["A", "0"]  # a text "0" stays "0"
    assert raw.exact == {}


def test_xlsb_number_records_are_all_looked_at() -> None:
    """BrtCellRk (an int30 or a truncated double, maybe / 100) and BrtFmlaNum, beside the
    BrtCellReal records the fixture writer makes."""
    tiny = 3 * 2.0**-20  # a double whose low 32 bits are zero: an RK can hold it
    rk_float = struct.unpack("<Q", struct.pack("<d", tiny))[0] >> 32
    records = b"".join([
        b"\x02\x0c" + struct.pack("<III", 1, 0, rk_float),  # RK double
        b"\x02\x0c" + struct.pack("<III", 2, 0, (12345 << 2) | 3),  # RK int / 100
        b"\x09\x1a" + struct.pack("<IIdH", 3, 0, 1 / 7, 0) + bytes(8),  # formula result
        b"\x05\x10" + struct.pack("<IId", 4, 0, 2.5),
    ])
    found = set(xlsb_marks(records).numbers.tolist())
    assert {tiny, 123.45, 1 / 7, 2.5} <= found

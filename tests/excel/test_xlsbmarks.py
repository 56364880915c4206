"""excel.xlsbmarks finds, in one numpy pass, what a byte-by-byte look at the block finds: the
number cell values numbercells checks and the error and merge marks errorcells tests."""

from __future__ import annotations

import struct

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dpo.excel.errorcells import _may_hold_errors
from dpo.excel.xlsbmarks import xlsb_marks

# Headers of the records of interest (and of lookalikes: sizes at and beside the limits),
# then a column (half of them real ones, below 16,384), four bytes and some more.
HEADERS = [b"\x05\x10", b"\x05\x11", b"\x02\x0c", b"\x09\x1a", b"\x09\x19", b"\x09\x7f",
           b"\x09\x80\x01", b"\x03\x09", b"\x0b\x13", b"\x0b\x12", b"\x0b\x7f", b"\x0b\x80",
           b"\xb1\x01\x04", b"\xb1\x01\x05"]
columns = st.sampled_from([0, 16_383, 16_384]) | st.integers(0, 2 * 16_384)
records = st.tuples(st.sampled_from(HEADERS), columns, st.integers(0, 2**32 - 1),
                    st.binary(max_size=12)).map(
    lambda r: r[0] + struct.pack("<II", r[1], r[2]) + r[3])
blocks = st.lists(st.one_of(records, st.binary(max_size=8)), max_size=40).map(b"".join)


def byte_by_byte(block: bytes) -> tuple[list[int], list[int], list[int], bool]:
    """The reference: each offset of the block looked at on its own."""
    data = block + bytes(32)

    def column_ok(payload: int) -> bool:
        return bool(struct.unpack_from("<I", data, payload)[0] < 16_384)

    values, cell_errors, formula_errors, merges = [], [], [], False
    for i in range(len(block)):
        kind, size = data[i], data[i + 1]
        payload = None
        if kind == 0x05 and size == 16:
            payload = i + 2
        elif kind == 0x09 and size >= 26:
            payload = i + 2 if size < 128 else i + 3
        if payload is not None and column_ok(payload):
            values.append(struct.unpack_from("<Q", data, payload + 8)[0])
        if kind == 0x02 and size == 12 and column_ok(i + 2):
            (rk,) = struct.unpack_from("<I", data, i + 10)
            value = (rk >> 2) - (1 << 30) * (rk >> 31) if rk & 2 else \
                struct.unpack("<d", struct.pack("<Q", (rk & 0xFFFFFFFC) << 32))[0]
            value = value / 100 if rk & 1 else float(value)
            values.append(struct.unpack("<Q", struct.pack("<d", value))[0])
        cell_errors += [i] if kind == 0x03 and size == 0x09 else []
        formula_errors += [i] if kind == 0x0B and 0x13 <= size <= 0x7F else []
        merges = merges or data[i:i + 3] == b"\xb1\x01\x04"
    return sorted(values), cell_errors, formula_errors, merges


@settings(max_examples=300, deadline=None)
@given(blocks)
def test_one_pass_finds_what_a_byte_by_byte_look_finds(block: bytes) -> None:
    marks = xlsb_marks(block)
    values, cell_errors, formula_errors, merges = byte_by_byte(block)
    assert sorted(marks.numbers.view(np.uint64).tolist()) == values
    assert marks.cell_errors.tolist() == cell_errors
    assert marks.formula_errors.tolist() == formula_errors
    assert marks.merges == merges


def test_an_error_record_between_cells_is_found_and_a_lookalike_is_not() -> None:
    real = struct.pack("<IId", 0, 0, 1.5)
    error = b"\x03\x09" + struct.pack("<IIB", 1, 0, 0x07)  # #DIV/0! in column B
    lookalike = b"\x03\x09" + struct.pack("<IIB", 1, 0, 0x55)  # no such error code
    for block, holds in [(b"\x05\x10" + real + error + b"\x05\x10" + real, True),
                         (b"\x05\x10" + real + lookalike + b"\x05\x10" + real, False),
                         (b"\x05\x10" + real + b"\xb1\x01\x04" + bytes(4), True)]:  # merges
        assert _may_hold_errors(block, xlsb_marks(block)) is holds

"""Where the .xlsb records the sheet scan looks at may start, in one numpy pass over a block
of the sheet's bytes: number cells (their values, for numbercells), error cells and the
merged-cells block (their offsets, for errorcells' cheap test).

A BIFF12 record is its type (1-2 bytes), its size (1-4 bytes), then its payload. Every byte
that could start a record of interest is found at once (six comparisons and one
`flatnonzero`, instead of a pass per record type and two regular-expression scans), then
sorted by kind on the few candidates: 1.8x less CPU than separate passes on the real sheets
(BENCHMARKS.md, #22). Bytes that only look like a record give a random value or offset: the
columns found in the reader's text (numbercells) and the record-layout checks (errorcells)
decide what counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_MAX_COLUMNS = 16_384
_PAD = 32  # zeros after the block: a record cut off at the end reads as junk, not past it
_CELL_REAL, _CELL_RK, _FMLA_NUM = 0x05, 0x02, 0x09
_CELL_ERROR, _FMLA_ERROR, _BEGIN_MERGE_CELLS = 0x03, 0x0B, 0xB1


@dataclass(frozen=True)
class XlsbMarks:
    numbers: np.ndarray  # values of what looks like a number cell (float64)
    cell_errors: np.ndarray  # offsets of "03 09": a BrtCellError header (type 3, size 9)?
    # offsets of "0B 13..7F": a BrtFmlaError header with a one-byte size of at least 19
    # (formula errors longer than 127 bytes are not expected in data exports)?
    formula_errors: np.ndarray
    merges: bool  # "B1 01 04": BrtBeginMergeCells, after the last cell


def xlsb_marks(block: bytes) -> XlsbMarks:
    n = len(block)
    data = np.frombuffer(block + bytes(_PAD), dtype=np.uint8)
    body = data[:n]
    first = np.flatnonzero((body == _CELL_REAL) | (body == _CELL_RK) | (body == _FMLA_NUM)
                           | (body == _CELL_ERROR) | (body == _FMLA_ERROR)
                           | (body == _BEGIN_MERGE_CELLS))
    kind, size = data[first], data[first + 1]
    # Every byte offset read as the start of a little-endian u32 or f64 (x86 and arm64 read
    # unaligned values): one gather per field instead of a (records x width) index.
    u4 = np.ndarray((n + _PAD - 8,), dtype="<u4", buffer=data, strides=(1,))
    f8 = np.ndarray((n + _PAD - 8,), dtype="<f8", buffer=data, strides=(1,))

    def cells(payload: np.ndarray) -> np.ndarray:  # records whose column is a real one
        kept: np.ndarray = payload[u4[payload] < _MAX_COLUMNS]
        return kept

    real = cells(first[(kind == _CELL_REAL) & (size == 16)] + 2)
    formula = (kind == _FMLA_NUM) & (size >= 26)  # a one- or two-byte size
    formulas = cells(np.where(size[formula] < 128, first[formula] + 2, first[formula] + 3))
    rk = u4[cells(first[(kind == _CELL_RK) & (size == 12)] + 2) + 8]
    merges = first[(kind == _BEGIN_MERGE_CELLS) & (size == 0x01)]
    return XlsbMarks(
        numbers=np.concatenate([f8[real + 8], f8[formulas + 8], _rk_values(rk)]),
        cell_errors=first[(kind == _CELL_ERROR) & (size == 0x09)],
        formula_errors=first[(kind == _FMLA_ERROR) & (size >= 0x13) & (size <= 0x7F)],
        merges=bool(merges.size and (data[merges + 2] == 0x04).any()))


def _rk_values(rk: np.ndarray) -> np.ndarray:
    """RkNumber ([MS-XLSB] 2.5.122): an int30 or the top 30 bits of a double, maybe / 100."""
    as_int = (rk.view("<i4") >> 2).astype(np.float64)
    as_float = ((rk & np.uint32(0xFFFFFFFC)).astype(np.uint64) << np.uint64(32)).view("<f8")
    values = np.where((rk & 2) != 0, as_int, as_float)
    scaled: np.ndarray = np.where((rk & 1) != 0, values / 100, values)
    return scaled

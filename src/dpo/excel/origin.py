"""Where raw rows came from: the sheet (and its date system) and the Excel row of each, so that
every error and warning can name the cell a person would open."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from dpo.arrays import from_numpy

DAYS_1900_TO_1904 = 1462.0  # serial 0 of the 1904 system (1904-01-01) is 1462 in the 1900 one


@dataclass(frozen=True)
class Source:
    """One sheet a raw table came from, so errors can point at the Excel cell."""

    file: str
    sheet: str
    first_row: int = 2  # Excel row number of the first data row
    date1904: bool = False  # the workbook's serial numbers count from 1904-01-01


@dataclass(frozen=True)
class Origin:
    """Where each raw row came from: files concatenated in order, `starts[i]` = first position."""

    sources: tuple[Source, ...]
    starts: tuple[int, ...]

    @staticmethod
    def single(source: Source) -> Origin:
        return Origin((source,), (0,))

    def serial_shift(self, rows: int) -> pa.Array | None:
        """Days to add to each row's serial numbers for the 1900 system (None: none to add)."""
        if not any(s.date1904 for s in self.sources):
            return None
        shift = np.zeros(rows, dtype=np.float64)
        ends = (*self.starts[1:], rows)
        for source, start, end in zip(self.sources, self.starts, ends, strict=True):
            if source.date1904:
                shift[start:end] = DAYS_1900_TO_1904
        return from_numpy(shift)

    def locate(self, position: int) -> tuple[Source, int]:
        """The sheet and Excel row number of raw row `position`."""
        index = bisect_right(self.starts, position) - 1
        source = self.sources[index]
        return source, position - self.starts[index] + source.first_row

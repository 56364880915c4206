"""The reading floor: a bare script that only reads every source file with fastexcel and
writes Parquet (no normalisation, no checks). dpo's times are reported as ratios to this."""

from __future__ import annotations

import sys
from pathlib import Path

import fastexcel
import pyarrow as pa
import pyarrow.parquet as pq


def main(root: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    files = sorted((root / "database").rglob("*.xls*"))
    for i, path in enumerate(files):
        table = pa.Table.from_batches([fastexcel.read_excel(path).load_sheet(0).to_arrow()])
        pq.write_table(table, out / f"{i:04d}.parquet")
    print(len(files))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))

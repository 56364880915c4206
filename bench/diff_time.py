"""What `dpo.store.changes.diff_tables` costs after a publish: the previous and the new version of a
productRecords-shaped table (the demo plant's monthly report, N rows), one cell edited and one
month appended. Run: .venv/bin/python bench/diff_time.py [ROWS]"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import fastexcel
import pyarrow as pa

from dpo.demo.plant import write_monthly_report
from dpo.store.changes import diff_tables


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        path = write_monthly_report(Path(tmp) / "m.xlsb", n_rows=rows)
        old = pa.table(fastexcel.read_excel(path).load_sheet(0, dtypes="string").to_arrow())
    edited = old.column("moldShot").to_pylist()
    edited[rows // 2] = "999999"
    new = pa.concat_tables([old.set_column(old.column_names.index("moldShot"), "moldShot",
                                           pa.array(edited, type=old.schema.field("moldShot").type)),
                            old.slice(0, rows // 10)])
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        diff = diff_tables(old, new)
        best = min(best, time.perf_counter() - started)
    print(f"{rows:,} rows x {old.num_columns} columns: +{len(diff.added):,} -{len(diff.removed):,}"
          f" {diff.columns_changed}: best of 3 {best * 1000:.0f} ms")


if __name__ == "__main__":
    main()

"""Where the CPU of reading a plant's source files goes, one thread, in this process:

    .venv/bin/python bench/read_parts.py [--plant bench/out/real120] [--repeat 5]
    PYTHONPATH=/tmp/before/src .venv/bin/python bench/read_parts.py   # another version of dpo

  fastexcel   fastexcel alone, as bench/floor.py reads (read_excel, load_sheet, to_arrow)
  dpo_read    dpo's whole read of each file (excel.reader.read_spec: the workbook's guards,
              types forced from the schema, headers matched, the sheet scan, lossy numbers,
              the date system)
  scan        of that, the sheet scan alone (excel.errorcells.scan_sheet: error cells,
              uncalculated formulas, merges, lossy numbers, from the sheet's own bytes)

over every dynamic table's files of the plant (bench/sitting.py's `real120`: the real
sample workbooks). CPU seconds (process_time, which moves little when the machine is shared),
median of --repeat after a first pass of each (imports, page cache), alternating. Nothing here
is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import fastexcel

from dpo.excel.errorcells import scan_sheet
from dpo.excel.reader import read_spec
from dpo.schema import load_schema


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plant", type=Path, default=Path(__file__).parent / "out" / "real120")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    schema = load_schema(args.plant / "database/databaseSchemas.json", args.plant)
    jobs = [(spec, sorted(p for p in (args.plant / "database/dynamicDatabase" / spec.path.name
                                      ).iterdir() if p.suffix.lower().startswith(".xls")))
            for spec in schema.dynamic]
    sheets = {path: fastexcel.read_excel(path).sheet_names[0] for _, files in jobs
              for path in files}

    def floor_like() -> None:
        for path in sheets:
            fastexcel.read_excel(path).load_sheet(0).to_arrow()

    def dpo_read() -> None:
        for spec, files in jobs:
            for path in files:
                read_spec(path, spec)

    def scan() -> None:
        for path, sheet in sheets.items():
            scan_sheet(str(path), sheet)

    parts: dict[str, Callable[[], None]] = {"fastexcel": floor_like, "dpo_read": dpo_read,
                                            "scan": scan}
    runs: dict[str, list[float]] = {name: [] for name in parts}
    for i in range(args.repeat + 1):
        for name, work in parts.items():
            started = time.process_time()
            work()
            if i:
                runs[name].append(time.process_time() - started)
    print(f"{len(sheets)} files of {args.plant}")
    for name, values in runs.items():  # ratios taken round by round: the VM's speed drifts
        ratio = statistics.median(v / b for v, b in zip(values, runs["fastexcel"], strict=True))
        print(f"{name:<10} {statistics.median(values):6.3f} CPU-s  {ratio:5.2f}x fastexcel "
              "alone (median of the rounds' ratios)")


if __name__ == "__main__":
    main()

"""Baseline for the 200,000-row report: fastexcel alone reads it into Arrow (nothing else)."""

from __future__ import annotations

import sys

import fastexcel

reader = fastexcel.read_excel(sys.argv[1])
batch = reader.load_sheet(0).to_arrow()
print(batch.num_rows)

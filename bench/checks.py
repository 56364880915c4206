"""What data checks cost (issue #21): whole runs with and without checks, and the checks alone
on a million rows.

    .venv/bin/python bench/checks.py [--repeat 5] [--out bench/out] [--only runs,million]

runs     bench/run.py's benchmark plant (120 monthly reports x 700 rows + 120 purchase orders
         + 6 master tables: 84,000 + 3,000 rows), with CHECKS below (one check of each kind on
         productRecords and purchaseOrders) and without (checks_path set to a file that does
         not exist). Per repeat, alternating which goes first: output wiped, a fresh run, then
         a no-change run; the same without checks. Printed: medians and with / without.
million  10 checks (two unique, references to a 10,000-row table, two rules, not_null twice,
         accepted_values, min/max twice) on a 1,000,000-row Arrow table, in this process, Arrow
         on one thread: seconds (median of --repeat) and peak memory: the table's Arrow size,
         and what the checks allocated on top of it at most (Arrow's pool, swapped for a fresh
         system pool while they run, plus numpy's allocations as tracemalloc sees them).
Nothing here is asserted; BENCHMARKS.md records the figures with the command that made them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

from run import HERE, PYTHON, make_plants, reset, timed  # bench/

CHECKS = """
[[check]]
table = "productRecords"
not_null = ["recordDate", "machineCode"]

[[check]]
table = "productRecords"
column = "moldNo"
references = "moldInfo.moldNo"

[[check]]
table = "productRecords"
column = "workingShift"
accepted_values = ["1", "2", "3", "HC"]

[[check]]
table = "productRecords"
column = "moldShot"
min = 0

[[check]]
table = "productRecords"
name = "good parts never exceed parts made"
rule = "itemGoodQuantity <= itemTotalQuantity"

[[check]]
table = "productRecords"
row_count_change = 0.5

[[check]]
table = "productRecords"
min_file_rows_ratio = 0.5

[[check]]
table = "purchaseOrders"
unique = ["poNo", "itemCode"]

[[check]]
table = "purchaseOrders"
column = "itemQuantity"
min = 1
"""


def cpu_timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds (user + system, the child's own), Phase 2's seconds (from
    the result) and stdout of one whole-process run. CPU time barely moves with the machine's
    load; wall time does."""
    import json

    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env={**os.environ, **env})
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) not in (0, 3):
        raise RuntimeError(f"benchmark command failed ({status}): {' '.join(cmd)}")
    loader = json.loads(out)["loader_result"].get("execution_seconds") or 0.0
    return wall, usage.ru_utime + usage.ru_stime, float(loader), out.decode()


def measure_runs(repeat: int, root: Path) -> dict[str, list[float]]:
    (root / "bench-checks.toml").write_text(CHECKS, encoding="utf-8")
    settings = {"with": {"DPO_CHECKS_PATH": "bench-checks.toml"},
                "without": {"DPO_CHECKS_PATH": "no-such-checks.toml"}}
    cmd = [PYTHON, "-m", "dpo.cli", "run", "--root", str(root), "--no-notify", "--json"]
    runs: dict[str, list[float]] = {}
    for i in range(repeat):
        for kind in ("with", "without") if i % 2 == 0 else ("without", "with"):
            reset(root)
            for figure in ("fresh", "nochange"):
                wall, cpu, loader, out = cpu_timed(cmd, settings[kind])
                runs.setdefault(f"{kind}_{figure}", []).append(wall)
                runs.setdefault(f"{kind}_{figure}_cpu", []).append(cpu)
                runs.setdefault(f"{kind}_{figure}_phase2", []).append(loader)
                if kind == "with" and i == 0 and figure == "fresh":
                    print(_check_statuses(out))
    return runs


def _check_statuses(out: str) -> str:
    import json

    checks = json.loads(out)["loader_result"]["checks"]
    return "checks on the plant: " + ", ".join(f"{c['name']}: {c['status']}" for c in checks)


def runs_report(runs: dict[str, list[float]]) -> str:
    median = {k: statistics.median(v) for k, v in runs.items()}
    lines = [f"{'figure':<18} {'with s':>8} {'without s':>10} {'with/without':>13}"]
    for figure in ("fresh", "fresh_cpu", "fresh_phase2", "nochange", "nochange_cpu"):
        a, b = median[f"with_{figure}"], median[f"without_{figure}"]
        lines.append(f"{figure:<18} {a:>8.3f} {b:>10.3f} {a / b:>13.3f}   "
                     f"(all with: {', '.join(f'{x:.2f}' for x in runs[f'with_{figure}'])}; "
                     f"without: {', '.join(f'{x:.2f}' for x in runs[f'without_{figure}'])})")
    return "\n".join(lines)


MILLION_CHECKS = """
[[check]]
table = "t"
unique = ["id"]
[[check]]
table = "t"
unique = ["code", "shift", "day"]
[[check]]
table = "t"
column = "code"
references = "ref.code"
[[check]]
table = "t"
rule = "good <= total"
[[check]]
table = "t"
rule = "total BETWEEN 0 AND 100000 OR shift = 'HC'"
[[check]]
table = "t"
not_null = ["code", "total"]
[[check]]
table = "t"
not_null = ["day"]
[[check]]
table = "t"
column = "shift"
accepted_values = ["1", "2", "3", "HC"]
[[check]]
table = "t"
column = "total"
min = 0
max = 100000
[[check]]
table = "t"
column = "good"
min = 0
"""


def million(repeat: int, out: Path) -> str:
    import json

    import numpy as np
    import pyarrow as pa

    from dpo.checks.rules import failing_rows
    from dpo.checks.spec import load_checks
    from dpo.schema import load_schema

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    folder = out / "million"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "databaseSchemas.json").write_text(json.dumps({"dynamicDB": {}, "staticDB": {
        "t": {"path": "t.xlsx", "dtypes": {"id": "Int64", "code": "string", "shift": "string",
                                           "day": "datetime64[ns]", "total": "Int64",
                                           "good": "Int64"}},
        "ref": {"path": "ref.xlsx", "dtypes": {"code": "string"}}}}), encoding="utf-8")
    (folder / "dataChecks.toml").write_text(MILLION_CHECKS, encoding="utf-8")
    schema = load_schema(folder / "databaseSchemas.json", folder)
    checks = load_checks(folder / "dataChecks.toml", schema).checks
    rng = np.random.default_rng(1)
    n = 1_000_000
    codes = np.array([f"ITEM-{i:05d}" for i in range(10_000)], dtype=object)
    total = rng.integers(0, 100_000, n)
    table = pa.table({
        "id": pa.array(np.arange(n)), "code": pa.array(codes[rng.integers(0, 10_000, n)],
                                                       pa.string()),
        "shift": pa.array(np.array(["1", "2", "3", "HC"], dtype=object)[rng.integers(0, 4, n)],
                          pa.string()),
        "day": pa.array(np.datetime64("2020-01-01") + rng.integers(0, 3650, n).astype(
            "timedelta64[D]")).cast(pa.timestamp("ns")),
        "total": pa.array(total), "good": pa.array(total - rng.integers(0, 50, n).clip(0, total))})
    ref = pa.table({"code": pa.array(codes, pa.string())})
    size = table.nbytes
    times, cpu, peaks, failing = [], [], [], 0
    for _ in range(repeat):
        pool = pa.system_memory_pool()
        before = pa.default_memory_pool()
        pa.set_memory_pool(pool)
        base = pool.bytes_allocated()
        tracemalloc.start()
        started, started_cpu = time.perf_counter(), time.process_time()
        failing = sum(len(failing_rows(c, table, ref if c.rule == "references" else None))
                      for c in checks)
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
        numpy_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        pa.set_memory_pool(before)
        peaks.append(pool.max_memory() - base + numpy_peak)
    top = max(peaks)
    return (f"1,000,000 rows x {len(checks)} checks, Arrow on 1 thread: median "
            f"{statistics.median(times):.3f} s wall (all: {', '.join(f'{t:.3f}' for t in times)}), "
            f"{statistics.median(cpu):.3f} s CPU (all: {', '.join(f'{t:.3f}' for t in cpu)}); "
            f"{failing} failing rows\n"
            f"table {size / 1e6:.1f} MB in Arrow; the checks allocated at most "
            f"{top / 1e6:.1f} MB more: peak {(size + top) / size:.2f}x the table")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "out")
    parser.add_argument("--only", default="runs,million")
    args = parser.parse_args()
    only = set(args.only.split(","))
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"load {os.getloadavg()[0]:.1f}")
    if "million" in only:
        print(million(args.repeat, args.out))
    if "runs" in only:
        timed([PYTHON, "-c", "pass"])  # start the spawner while this process is still small
        where = subprocess.run([PYTHON, "-c", "import dpo; print(dpo.__file__)"], check=True,
                               capture_output=True, text=True).stdout.strip()
        subprocess.run([PYTHON, "-m", "compileall", "-q", str(Path(where).parent)], check=True)
        plant, _ = make_plants(args.out)
        print(f"dpo from {where}; plant {plant}; {args.repeat} repeats")
        print(runs_report(measure_runs(args.repeat, plant)))
    print(f"load at the end {os.getloadavg()[0]:.1f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()

"""dpo benchmarks: whole-process medians on generated plants, as ratios to the reading floor.

    .venv/bin/python bench/run.py [--repeat 5] [--out bench/out]

Plants (made with dpo's own demo generator, deterministic):
  * `plant`: 120 monthly .xlsb reports x ~700 rows + 120 purchase-order .xlsx + 6 master tables
  * `big`:   one 200,000-row monthly report (+ one PO file and the master tables)
  * `real`:  the plant's own sample workbooks (../shared/samples beside the checkout), scaled:
             its monthly .xlsb copied under 60 months, its two PO files under 60 dates each

Figures, each the median of --repeat whole-process runs measured in this one session:
  floor        bench/floor.py: read every source file with fastexcel, write Parquet, nothing else
  fresh        `dpo run` with an empty output folder
  nochange     `dpo run` again with nothing changed
  onechanged   `dpo run` after one monthly report was rewritten with other values
  help         `dpo --help`
  files_1w/2w  the 120-file read alone (bench/readfiles.read_files) with 1 and 2 threads
  tasks_inline/processes/dask   the 120 files' per-file task (read + normalise + segment,
               bench/executors.py) with 1 worker in process and on 2 worker processes
  read_1w/2w   Phase 1 of a fresh run (its own execution_seconds) with 1 and 2 reader threads
  read_processes/dask   the same with `--executor processes|dask` and 2 workers
  cpu_ceiling  two CPU-bound processes vs one doing both: the most 2 workers can gain here
  big_fresh    `dpo run` on the 200,000-row report; big_fastexcel: fastexcel alone reading it
  real_floor / real_fresh / real_nochange   the same three on the `real` plant
Peak RSS is the child's ru_maxrss (os.wait4), the child started from a small forkserver
process: Linux carries ru_maxrss across exec, so a child forked from this (large) process would
report this process's size. dpo's modules are byte-compiled first, as an installed package
is. Nothing here is asserted: it prints and writes
bench/out/results.json; BENCHMARKS.md records a run with the command that made it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
DPO = [PYTHON, "-m", "dpo.cli"]


_SPAWNER: Any = None


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (bytes) and stdout of one whole-process run, started from a small
    process so that its ru_maxrss is its own."""
    global _SPAWNER
    if _SPAWNER is None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        _SPAWNER = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("forkserver"))
    result: tuple[float, int, str] = _SPAWNER.submit(_timed, cmd, env).result()
    return result


def _timed(cmd: list[str], env: dict[str, str] | None) -> tuple[float, int, str]:
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env={**os.environ, **(env or {})})
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) not in (0, 3):
        raise RuntimeError(f"benchmark command failed ({status}): {' '.join(cmd)}")
    return seconds, usage.ru_maxrss * 1024, out.decode()


def median_of(repeat: int, cmd: list[str], before: Any = None,
              env: dict[str, str] | None = None) -> dict[str, float]:
    runs = []
    for _ in range(repeat):
        if before is not None:
            before()
        runs.append(timed(cmd, env))
    return {"seconds": statistics.median(r[0] for r in runs),
            "min_seconds": min(r[0] for r in runs),
            "peak_rss_mb": max(r[1] for r in runs) / 1e6}


def _burn(n: int) -> float:
    started = time.perf_counter()
    total = 0
    for i in range(n):
        total += i * i
    return time.perf_counter() - started


def cpu_ceiling(n: int = 5_000_000) -> float:
    """How much faster two CPU-bound processes finish than one doing both: the most any
    2-worker reader can gain on this machine (2.0 on two real cores)."""
    import multiprocessing

    alone = _burn(n) + _burn(n)
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(2) as pool:
        pool.map(_burn, [n, n])
    return alone / (time.perf_counter() - started)


def read_seconds(repeat: int, root: Path, workers: int) -> float:
    """The 120-file read alone (bench/readfiles.read_files, every monthly report), in process."""
    from readfiles import read_files

    from dpo.schema import load_schema

    spec = load_schema(root / "database/databaseSchemas.json", root).table("productRecords")
    files = sorted((root / "database/dynamicDatabase/monthlyReports_history").glob("*.xlsb"))
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        read_files(files, spec, workers=workers, max_retries=0, retry_wait=0,
                   on_retry=print, on_done=lambda _n: None)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def tasks_seconds(repeat: int, root: Path, kind: str) -> dict[str, float]:
    """The 120 files' per-file task on an executor (bench/executors.py), in process."""
    from executors import executor_seconds  # bench/, beside this script

    return executor_seconds(repeat, root, kind)


def make_plants(out: Path) -> tuple[Path, Path]:
    from dpo.demo.plant import generate_plant, write_monthly_report

    plant, big = out / "plant", out / "big"
    if not (plant / "database").exists():
        generate_plant(plant, months=120, rows_per_month=700, po_files=120, seed=1)
    if not (big / "database").exists():
        generate_plant(big, months=1, rows_per_month=10, po_files=1, seed=2)
        report = next((big / "database/dynamicDatabase/monthlyReports_history").glob("*.xlsb"))
        write_monthly_report(report, month="2018-11", n_rows=200_000, seed=3)
    return plant, big


SAMPLES = HERE.parent.parent / "shared" / "samples"


def make_real_plant(out: Path) -> Path | None:
    """The sample plant scaled by copies of its real workbooks under many dates (the demo
    generator's files and the plant's exporters' differ: styles, shared strings, error cells)."""
    real = out / "real"
    if (real / "database").exists() or not SAMPLES.is_dir():
        return real if SAMPLES.is_dir() else None
    shutil.copytree(SAMPLES / "database", real / "database")
    dynamic = real / "database/dynamicDatabase"
    report = next((dynamic / "monthlyReports_history").glob("*.xlsb"))
    for month in range(60):
        name = f"monthlyReports_{2014 + month // 12}{month % 12 + 1:02d}.xlsb"
        if name != report.name:
            shutil.copy2(report, report.with_name(name))
    for order in sorted((dynamic / "purchaseOrders_history").glob("*.xlsx")):
        for day in range(60):
            stamp = dt.date(2016, 1, 1) + dt.timedelta(days=day * 7 + int(order.stem[-1]))
            target = order.with_name(f"purchaseOrder_{stamp:%y%m%d}.xlsx")
            if not target.exists():
                shutil.copy2(order, target)
    return real


def reset(root: Path) -> None:
    shutil.rmtree(root / "agents", ignore_errors=True)


def phase1_seconds(repeat: int, root: Path, workers: int, executor: str = "threads") -> float:
    """Phase 1's own time in a fresh, non-incremental run with `workers` reader threads (or
    worker processes: `executor`; its start-up, a pool or a LocalCluster, is inside)."""
    env = {"DPO_WORKERS": str(workers), "DPO_INCREMENTAL": "0", "DPO_EXECUTOR": executor}
    values = []
    for _ in range(repeat):
        reset(root)
        _, _, out = timed([*DPO, "run", "--root", str(root), "--no-notify", "--json"], env)
        values.append(json.loads(out)["collector_result"]["execution_seconds"])
    return statistics.median(values)


def measure(repeat: int, out: Path, only: set[str] | None = None) -> dict[str, Any]:
    """Every figure (or those named in `only`), each measured in this one session."""
    plant, big = make_plants(out)
    run = [*DPO, "run", "--root", str(plant), "--no-notify"]
    months = sorted((plant / "database/dynamicDatabase/monthlyReports_history").glob("*.xlsb"))
    counter = iter(range(10_000))

    def change_one() -> None:
        from dpo.demo.plant import write_monthly_report

        write_monthly_report(months[-1], month="2028-10", n_rows=700, seed=100 + next(counter))

    report = next((big / "database/dynamicDatabase/monthlyReports_history").glob("*.xlsb"))
    real = make_real_plant(out)
    real_run = [*DPO, "run", "--root", str(real), "--no-notify"]
    figures: dict[str, Callable[[], Any]] = {
        "floor": lambda: median_of(repeat, [PYTHON, str(HERE / "floor.py"), str(plant),
                                            str(out / "floor")]),
        "fresh": lambda: median_of(repeat, run, before=lambda: reset(plant)),
        "nochange": lambda: median_of(repeat, run),
        "onechanged": lambda: median_of(repeat, run, before=change_one),
        "help": lambda: median_of(repeat, [*DPO, "--help"]),
        "cpu_ceiling_2_processes": lambda: statistics.median(cpu_ceiling() for _ in range(3)),
        "files_1w": lambda: {"seconds": read_seconds(repeat, plant, 1)},
        "files_2w": lambda: {"seconds": read_seconds(repeat, plant, 2)},
        "tasks_inline": lambda: tasks_seconds(repeat, plant, "inline"),
        "tasks_processes": lambda: tasks_seconds(repeat, plant, "processes"),
        "tasks_dask": lambda: tasks_seconds(repeat, plant, "dask"),
        "read_1w": lambda: {"seconds": phase1_seconds(repeat, plant, 1)},
        "read_2w": lambda: {"seconds": phase1_seconds(repeat, plant, 2)},
        "read_processes": lambda: {"seconds": phase1_seconds(repeat, plant, 2, "processes")},
        "read_dask": lambda: {"seconds": phase1_seconds(repeat, plant, 2, "dask")},
        "big_fastexcel": lambda: median_of(repeat, [PYTHON, str(HERE / "read_one.py"),
                                                    str(report)]),
        "big_fresh": lambda: median_of(repeat, [*DPO, "run", "--root", str(big), "--no-notify"],
                                       before=lambda: reset(big)),
    }
    if real is not None:
        figures |= {
            "real_floor": lambda: median_of(repeat, [PYTHON, str(HERE / "floor.py"), str(real),
                                                     str(out / "real_floor")]),
            "real_fresh": lambda: median_of(repeat, real_run, before=lambda: reset(real)),
            "real_nochange": lambda: median_of(repeat, real_run),
        }
    if only is not None:  # what a figure needs: the run before it, what it is compared with
        only |= {"fresh"} if only & {"nochange", "onechanged"} else set()
        only |= {"floor"} if only & {"fresh", "nochange", "onechanged", "help"} else set()
        only |= {"big_fastexcel"} if "big_fresh" in only else set()
        only |= {"tasks_inline", "cpu_ceiling_2_processes"} if only & {
            "tasks_processes", "tasks_dask"} else set()
        only |= {"read_1w", "cpu_ceiling_2_processes"} if only & {
            "read_processes", "read_dask"} else set()
        only |= {"real_fresh"} if "real_nochange" in only else set()
        only |= {"real_floor"} if only & {"real_fresh", "real_nochange"} else set()
    return {name: measure_one() for name, measure_one in figures.items()
            if only is None or name in only}


def report(results: dict[str, Any]) -> str:
    floor = results.get("floor", {}).get("seconds")
    lines = [f"{'figure':<14} {'median s':>9} {'x floor':>8} {'peak RSS MB':>12}"]
    for name in ("floor", "fresh", "nochange", "onechanged", "help"):
        if name in results:
            r = results[name]
            ratio = f"{r['seconds'] / floor:>8.2f}" if floor else f"{'':>8}"
            lines.append(f"{name:<14} {r['seconds']:>9.3f} {ratio} {r['peak_rss_mb']:>12.0f}")
    real_floor = results.get("real_floor", {}).get("seconds")
    for name in ("real_floor", "real_fresh", "real_nochange"):
        if name in results:
            r = results[name]
            ratio = f"{r['seconds'] / real_floor:>8.2f}" if real_floor else f"{'':>8}"
            lines.append(f"{name:<14} {r['seconds']:>9.3f} {ratio} {r['peak_rss_mb']:>12.0f}")
    if "files_1w" in results and "files_2w" in results:
        r1, r2 = results["files_1w"]["seconds"], results["files_2w"]["seconds"]
        lines.append(f"{'120-file read':<18} 1 thread {r1:.3f} s; 2 threads {r2:.3f} s; "
                     f"speed-up {r1 / r2:.2f}x")
    one = results.get("tasks_inline", {}).get("seconds")
    for name in ("tasks_processes", "tasks_dask"):
        if one and name in results:
            r, ceiling = results[name], results.get("cpu_ceiling_2_processes", float("nan"))
            lines.append(f"{'120-file tasks':<18} 1 worker {one:.3f} s; {name[6:]} (2 workers) "
                         f"{r['seconds']:.3f} s, speed-up {one / r['seconds']:.2f}x (start "
                         f"{r['start']:.2f} s; machine's 2-process ceiling {ceiling:.2f}x)")
    if "read_1w" in results and "read_2w" in results:
        one, two = results["read_1w"]["seconds"], results["read_2w"]["seconds"]
        ceiling = results.get("cpu_ceiling_2_processes", float("nan"))
        lines.append(f"{'phase1 1 worker':<18} {one:.3f} s; 2 workers {two:.3f} s; "
                     f"speed-up {one / two:.2f}x (this machine's ceiling for 2 processes: "
                     f"{ceiling:.2f}x)")
    for name in ("read_processes", "read_dask"):
        if "read_1w" in results and name in results:
            one, r = results["read_1w"]["seconds"], results[name]["seconds"]
            lines.append(f"{'phase1 1 worker':<18} {one:.3f} s; {name[5:]} (2 workers) {r:.3f} s;"
                         f" speed-up {one / r:.2f}x")
    if "big_fresh" in results:
        big = results["big_fresh"]
        fe = results.get("big_fastexcel", {}).get("seconds", float("nan"))
        lines.append(f"200k rows: fastexcel alone {fe:.3f} s, dpo run {big['seconds']:.3f} s "
                     f"({big['seconds'] / fe:.2f}x), dpo peak RSS {big['peak_rss_mb']:.0f} MB")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "out")
    parser.add_argument("--only", help="comma-separated figures, e.g. fresh,big_fresh")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    timed([PYTHON, "-c", "pass"])  # start the spawner while this process is still small
    subprocess.run([PYTHON, "-m", "compileall", "-q", str(HERE.parent / "src")], check=True)
    results = measure(args.repeat, args.out, set(args.only.split(",")) if args.only else None)
    results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                          "load_avg_at_end": os.getloadavg()}
    (args.out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(report(results))


if __name__ == "__main__":
    main()

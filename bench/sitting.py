"""The figures of issue #22 in one sitting, on the scaled real plant, as ratios to the floor
measured in the same rounds.

    .venv/bin/python bench/sitting.py [--repeat 5] [--out bench/out]
                                      [--tree NAME=SRC ...] [--only fresh,nochange,...]

The plant (`real120`, made once by bench/run.make_real_plant): the samples' own monthly
`.xlsb` copied under 120 months, the two purchase-order `.xlsx` each also under 60 more dates
(122), and the samples' master tables (249 files). Each round measures, alternating the order of the trees (a
slower minute hits every tree), one whole process per figure:

  floor             bench/floor.py: fastexcel reads every file, pyarrow writes Parquet
  fresh             `dpo run` (the default executor), output folder wiped first
  fresh_threads     the same with DPO_EXECUTOR=threads
  fresh_processes   the same with DPO_EXECUTOR=processes
  api_fresh         the seed's API (`DataPipelineOrchestrator(root_dir=R).run_pipeline()`)
  nochange          `dpo run` again, nothing changed
  onechanged        `dpo run` after one monthly report was replaced (a demo report, 700 rows)

and three lower bounds, what any run of a command built on the project's libraries pays
before its first line of work, whatever dpo does:

  python_bare       `python -c pass`: the interpreter (and the venv's site)
  imports_cli       + loguru, typer, rich's console and table (the CLI's libraries)
  imports_data      + pyarrow (compute, parquet), numpy, fastexcel (any run that reads a file)

A tree is a source folder (`--tree before=/tmp/before/src`); its commands run with
PYTHONPATH=SRC, so two versions of dpo are compared in the same rounds (A/B under a machine
whose load changes minute to minute). Default: this checkout's src. Printed: per figure and
tree the median of the per-round ratios to that round's floor, and the median seconds; the
load average at the start and the end. Nothing here is asserted; results in OUT/sitting.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from run import HERE, PYTHON, make_real_plant, reset, timed  # bench/

FIGURES = ("fresh_threads", "fresh_processes", "api_fresh", "fresh", "nochange", "onechanged",
           "python_bare", "imports_cli", "imports_data")
CLI_LIBRARIES = "import loguru, typer, rich.console, rich.table"
DATA_LIBRARIES = "import pyarrow, pyarrow.compute, pyarrow.parquet, numpy, fastexcel"
API = ("from dpo import DataPipelineOrchestrator; DataPipelineOrchestrator(root_dir={root!r})"
       ".run_pipeline(enable_notifications=False)")


def commands(root: Path) -> dict[str, tuple[list[str], dict[str, str], bool]]:
    """Each figure's command, its environment, and whether the output is wiped first."""
    cli = [PYTHON, "-m", "dpo.cli", "run", "--root", str(root), "--no-notify"]
    return {
        "fresh_threads": (cli, {"DPO_EXECUTOR": "threads"}, True),
        "fresh_processes": (cli, {"DPO_EXECUTOR": "processes"}, True),
        "api_fresh": ([PYTHON, "-c", API.format(root=str(root))], {}, True),
        "fresh": (cli, {}, True),
        "nochange": (cli, {}, False),
        "onechanged": (cli, {}, False),
        "python_bare": ([PYTHON, "-c", "pass"], {}, False),
        "imports_cli": ([PYTHON, "-c", CLI_LIBRARIES], {}, False),
        "imports_data": ([PYTHON, "-c", f"{CLI_LIBRARIES}; {DATA_LIBRARIES}"], {}, False),
    }


def one_round(root: Path, trees: dict[str, Path], figures: list[str], order: list[str],
              change_one: Callable[[], None], floor_out: Path) -> dict[str, dict[str, float]]:
    """Seconds of the floor and of each tree's figures, in that order."""
    got: dict[str, dict[str, float]] = {"floor": {}}
    got["floor"]["-"] = timed([PYTHON, str(HERE / "floor.py"), str(root), str(floor_out)])[0]
    cmds = commands(root)
    for name in order:
        env_tree = {"PYTHONPATH": str(trees[name])}
        for figure in figures:
            cmd, env, wipe = cmds[figure]
            if wipe:
                reset(root)
            if figure == "onechanged":
                change_one()
            got.setdefault(figure, {})[name] = timed(cmd, {**env_tree, **env})[0]
    return got


def summary(rounds: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Per figure and tree: median seconds and the median of per-round ratios to the floor."""
    out: dict[str, dict[str, float]] = {}
    for figure in rounds[0]:
        for tree in rounds[0][figure]:
            seconds = [r[figure][tree] for r in rounds]
            ratios = [r[figure][tree] / r["floor"]["-"] for r in rounds]
            out[f"{figure} [{tree}]"] = {"seconds": statistics.median(seconds),
                                         "min": min(seconds), "ratio": statistics.median(ratios)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "out")
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=SRC")
    parser.add_argument("--only", help=f"comma-separated, of {','.join(FIGURES)}")
    args = parser.parse_args()
    trees = {n: Path(s).resolve() for n, s in (t.split("=", 1) for t in args.tree)} or {
        "this": HERE.parent / "src"}
    figures = [f for f in FIGURES if not args.only or f in args.only.split(",")]
    if {"nochange", "onechanged"} & set(figures) and "fresh" not in figures:
        figures.insert(0, "fresh")  # what they run after
    args.out.mkdir(parents=True, exist_ok=True)
    timed([PYTHON, "-c", "pass"])  # start the spawner while this process is still small
    for src in trees.values():  # byte-compiled first, as an installed package is
        subprocess.run([PYTHON, "-m", "compileall", "-q", str(src)], check=True)
    root = make_real_plant(args.out, months=120)
    if root is None:
        raise SystemExit("no sample plant (../shared/samples)")
    months = sorted((root / "database/dynamicDatabase/monthlyReports_history").glob("*.xlsb"))
    months[-1].chmod(0o644)  # copied from the read-only samples
    original = months[-1].read_bytes()
    counter = iter(range(10_000))

    def change_one() -> None:
        from dpo.demo.plant import write_monthly_report

        write_monthly_report(months[-1], month="2023-12", n_rows=700, seed=100 + next(counter))

    load = os.getloadavg()
    print(f"plant {root}; trees {trees}; {args.repeat} rounds; load {load[0]:.1f} "
          f"at {time.strftime('%H:%M:%S', time.gmtime())} UTC", flush=True)
    rounds = []
    names = list(trees)
    try:
        for i in range(args.repeat):
            order = names[i % len(names):] + names[:i % len(names)]
            rounds.append(one_round(root, trees, figures, order, change_one, args.out / "floor"))
            print(f"round {i + 1}: " + ", ".join(
                f"{fig}[{t}] {s:.3f}" for fig, by in rounds[-1].items() for t, s in by.items()),
                flush=True)
    finally:
        months[-1].write_bytes(original)  # the plant as made, for the next sitting
        reset(root)
    found = summary(rounds)
    end = os.getloadavg()
    for name, figure in found.items():
        print(f"{name:<28} {figure['seconds']:7.3f} s (min {figure['min']:.3f})  "
              f"{figure['ratio']:5.2f}x floor")
    print(f"load average at the start {load[0]:.1f}, at the end {end[0]:.1f} "
          f"({time.strftime('%H:%M:%S', time.gmtime())} UTC)")
    (args.out / "sitting.json").write_text(json.dumps(
        {"rounds": rounds, "summary": found, "load": [load[0], end[0]]}, indent=2),
        encoding="utf-8")


if __name__ == "__main__":
    main()

"""The seed's Python API vs the `dpo` command, each in a fresh interpreter, on the real plant.

    .venv/bin/python bench/api_vs_cli.py [--repeat 7] [--out bench/out] [--plant real|big]
                                         [--api-env NAME=VALUE ...]

The plant is bench/run.py's `real` plant (the samples' own workbooks copied under many dates,
made once in OUT/real), or with --plant big its `big` one (one 200,000-row demo report).
--api-env sets a variable for the API's runs only (ARROW_DEFAULT_MEMORY_POOL=mimalloc: the
API on the wheels' default pool). Per repeat, alternating so that a change of machine load
hits both:
  cli_fresh    `python -m dpo.cli run --root REAL --no-notify`, output folder wiped first
  api_fresh    `python -c "from dpo import DataPipelineOrchestrator;
               DataPipelineOrchestrator(root_dir=REAL).run_pipeline(enable_notifications=False)"`,
               output folder wiped first
  cli_nochange / api_nochange   the same again with nothing changed
Printed: the medians and API / CLI. The dpo that runs is the one the children import (set
PYTHONPATH=OTHER/src to time another tree, e.g. the base commit's); it is printed first.
Nothing here is asserted; BENCHMARKS.md records the figures with the command that made them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

from run import HERE, PYTHON, make_plants, make_real_plant, reset, timed  # bench/

API = ("from dpo import DataPipelineOrchestrator; DataPipelineOrchestrator(root_dir={root!r})"
       ".run_pipeline(enable_notifications=False)")


def commands(root: Path) -> dict[str, list[str]]:
    return {"cli": [PYTHON, "-m", "dpo.cli", "run", "--root", str(root), "--no-notify"],
            "api": [PYTHON, "-c", API.format(root=str(root))]}


def measure(repeat: int, root: Path, api_env: dict[str, str]) -> dict[str, list[float]]:
    """Wall seconds and peak RSS (MB) of each figure, `repeat` times, CLI and API alternating."""
    runs: dict[str, list[float]] = {}
    for i in range(repeat):
        # Alternate which goes first: a run that follows the other's leaves a warm page cache.
        for kind in ("cli", "api") if i % 2 == 0 else ("api", "cli"):
            cmd, env = commands(root)[kind], api_env if kind == "api" else {}
            reset(root)
            seconds, rss, _ = timed(cmd, env)
            runs.setdefault(f"{kind}_fresh", []).append(seconds)
            runs.setdefault(f"{kind}_fresh_rss", []).append(rss / 1e6)
            runs.setdefault(f"{kind}_nochange", []).append(timed(cmd, env)[0])
    return runs


def report(runs: dict[str, list[float]]) -> str:
    median = {name: statistics.median(values) for name, values in runs.items()}
    lines = [f"{'figure':<10} {'CLI s':>8} {'API s':>8} {'API/CLI':>8}   (min CLI / API)"]
    for figure in ("fresh", "nochange"):
        cli, api = median[f"cli_{figure}"], median[f"api_{figure}"]
        lines.append(f"{figure:<10} {cli:>8.3f} {api:>8.3f} {api / cli:>8.3f}   "
                     f"({min(runs[f'cli_{figure}']):.3f} / {min(runs[f'api_{figure}']):.3f})")
    lines.append(f"fresh peak RSS MB: CLI {max(runs['cli_fresh_rss']):.0f}, "
                 f"API {max(runs['api_fresh_rss']):.0f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--out", type=Path, default=HERE / "out")
    parser.add_argument("--plant", choices=("real", "big"), default="real")
    parser.add_argument("--api-env", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    api_env = dict(item.split("=", 1) for item in args.api_env)
    args.out.mkdir(parents=True, exist_ok=True)
    timed([PYTHON, "-c", "pass"])  # start the spawner while this process is still small
    where = subprocess.run([PYTHON, "-c", "import dpo; print(dpo.__file__)"], check=True,
                           capture_output=True, text=True).stdout.strip()
    # Byte-compiled first, as an installed package is.
    subprocess.run([PYTHON, "-m", "compileall", "-q", str(Path(where).parent)], check=True)
    root = make_real_plant(args.out) if args.plant == "real" else make_plants(args.out)[1]
    if root is None:
        sys.exit(f"no sample plant at {HERE.parent.parent / 'shared' / 'samples'}")
    print(f"dpo from {where}; plant {root}; {args.repeat} repeats; API env {api_env}; "
          f"load {os.getloadavg()[0]:.1f}")
    print(report(measure(args.repeat, root, api_env)))
    print(f"load at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

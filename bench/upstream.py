"""dpo against the seed-era system it replaces (OptiMoldIQ's DataPipelineOrchestrator: pandas
+ pyxlsb + openpyxl), on the same plant, measured together.

    .venv/bin/python bench/upstream.py --repo /work/.mirror/ThuyHaLE+OptiMoldIQ/repo \
        [--commit 6effa18] [--repeat 5] [--out bench/out]

The upstream code is not part of dpo and is never committed: it is taken from a local git
copy of the public repository ThuyHaLE/OptiMoldIQ (`--repo`; `git clone` it, or any mirror)
at `--commit` with `git archive` into build/optimoldiq, and run in its own virtualenv,
build/upstream-venv (made here if missing: pandas, pyxlsb, openpyxl, pyarrow, loguru,
tabulate, psutil, fastparquet from PyPI). It runs with its own defaults (`SharedSourceConfig()`:
paths relative to the working directory) in a copy of bench/sitting.py's `real120` plant
(OUT/real120-upstream/database), so neither system sees the other's output.

Each round, one whole process per figure: the floor (bench/floor.py), upstream fresh (its
`agents/` removed first) and its rerun (nothing changed), dpo fresh (`dpo run`, output
removed first) and dpo's no-change run. Printed: medians, and upstream / dpo for the fresh
run and the rerun. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from run import HERE, PYTHON, make_real_plant, reset, timed  # bench/

BUILD = HERE.parent / "build"
PACKAGES = ["pandas", "pyxlsb", "openpyxl", "pyarrow", "loguru", "tabulate", "psutil",
            "fastparquet"]
UPSTREAM = ("from configs.shared.shared_source_config import SharedSourceConfig\n"
            "from agents.dataPipelineOrchestrator.data_pipeline_orchestrator import "
            "DataPipelineOrchestrator\n"
            "result, _log = DataPipelineOrchestrator(SharedSourceConfig()).run_pipeline()\n"
            "print(result['overall_status'])\n")


def prepare(repo: Path, commit: str) -> tuple[Path, Path]:
    """The upstream source tree and its interpreter (both under build/)."""
    source, venv = BUILD / f"optimoldiq-{commit}", BUILD / "upstream-venv"
    if not source.exists():
        source.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(repo), "archive", commit, "agents", "configs"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([PYTHON, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PACKAGES], check=True)
    subprocess.run([str(python), "-m", "compileall", "-q", str(source)], check=True)
    return source, python


def their_schema(path: Path) -> None:
    """The schema as the seed-era loader reads it: a dynamic table's `path` is its Phase 1
    output (dpo's schema names the source folder there; the seed-era collector finds its
    folders by fixed names, and its loader reads that path as Parquet)."""
    schema = json.loads(path.read_text(encoding="utf-8"))
    for name, table in schema["dynamicDB"].items():
        table["path"] = f"{PHASE1}/{name}.parquet"
    path.chmod(0o644)
    path.write_text(json.dumps(schema, indent=2), encoding="utf-8")


PHASE1 = "agents/shared_db/DataPipelineOrchestrator/dynamicDatabase"


def upstream_run(plant: Path, source: Path, python: Path) -> float:
    """One upstream run in `plant` as its working directory (how it finds its folders)."""
    started = time.perf_counter()
    done = subprocess.run([str(python), "-c", UPSTREAM], cwd=plant, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(source)})
    seconds = time.perf_counter() - started
    status = done.stdout.strip().splitlines()[-1:] or ["?"]
    if done.returncode != 0 or status[0] not in ("success", "partial_success"):
        raise RuntimeError(f"upstream run failed ({done.returncode}, {status[0]}): "
                           f"{done.stderr.strip().splitlines()[-3:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--commit", default="6effa18")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "out")
    args = parser.parse_args()
    timed([PYTHON, "-c", "pass"])  # start the spawner while this process is still small
    source, python = prepare(args.repo, args.commit)
    subprocess.run([PYTHON, "-m", "compileall", "-q", str(HERE.parent / "src")], check=True)
    real = make_real_plant(args.out, months=120)
    if real is None:
        raise SystemExit("no sample plant (../shared/samples)")
    theirs = args.out / "real120-upstream"
    if not theirs.exists():
        shutil.copytree(real / "database", theirs / "database")
        their_schema(theirs / "database/databaseSchemas.json")
    run = [PYTHON, "-m", "dpo.cli", "run", "--root", str(real), "--no-notify"]
    print(f"load {os.getloadavg()[0]:.1f} at {time.strftime('%H:%M:%S', time.gmtime())} UTC",
          flush=True)
    rounds: dict[str, list[float]] = {}
    for i in range(args.repeat):
        got = {"floor": timed([PYTHON, str(HERE / "floor.py"), str(real), str(args.out / "floor")
                               ])[0]}
        shutil.rmtree(theirs / "agents", ignore_errors=True)
        got["upstream_fresh"] = upstream_run(theirs, source, python)
        got["upstream_rerun"] = upstream_run(theirs, source, python)
        reset(real)
        got["dpo_fresh"] = timed(run)[0]
        got["dpo_nochange"] = timed(run)[0]
        for name, seconds in got.items():
            rounds.setdefault(name, []).append(seconds)
        print(f"round {i + 1}: " + ", ".join(f"{k} {v:.3f}" for k, v in got.items()), flush=True)
    med = {name: statistics.median(values) for name, values in rounds.items()}
    for name, seconds in med.items():
        print(f"{name:<16} {seconds:8.3f} s  {seconds / med['floor']:6.2f}x floor")
    print(f"upstream / dpo: fresh {med['upstream_fresh'] / med['dpo_fresh']:.1f}x, "
          f"rerun {med['upstream_rerun'] / med['dpo_nochange']:.1f}x "
          f"(load at the end {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()

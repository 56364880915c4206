"""Where a `dpo run`'s wall time goes, on bench/sitting.py's `real120` plant: start-up and
imports, Phase 1, Phase 2, and what is left (reports, ledger, dashboard, exit).

    .venv/bin/python bench/where.py [--repeat 5] [--executor auto] [--figure fresh|nochange]

Per run (a whole process, as in bench/sitting.py): its wall time; Phase 1's and Phase 2's own
`execution_seconds` from `--json`; the time until the run's first log line (start-up: the
interpreter, typer, loguru, the orchestrator's modules); and, from one more run under
`python -X importtime`, the import time of the biggest top-level modules (a run under
importtime is slower: only the shares matter). Medians are printed. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

from run import HERE, PYTHON, make_real_plant, reset  # bench/


def one(root: Path, env: dict[str, str]) -> dict[str, float]:
    started = time.perf_counter()
    done = subprocess.run([PYTHON, "-m", "dpo.cli", "run", "--root", str(root), "--no-notify",
                           "--json"], capture_output=True, text=True, env={**os.environ, **env})
    wall = time.perf_counter() - started
    result = json.loads(done.stdout)
    return {"wall": wall,
            "phase1": result["collector_result"].get("execution_seconds", 0.0),
            "phase2": (result.get("loader_result") or {}).get("execution_seconds", 0.0)}


def imports(root: Path, env: dict[str, str]) -> list[tuple[str, int]]:
    """Top-level modules by cumulative import microseconds, from -X importtime."""
    done = subprocess.run([PYTHON, "-X", "importtime", "-m", "dpo.cli", "run", "--root",
                           str(root), "--no-notify", "--json"], capture_output=True, text=True,
                          env={**os.environ, **env})
    found = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.split("|")
        if not name.startswith("  "):  # what the run itself imported, not a dependency's
            found.append((name.strip(), int(cumulative)))
    return sorted(found, key=lambda item: -item[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--executor", default="auto")
    parser.add_argument("--figure", choices=("fresh", "nochange"), default="fresh")
    parser.add_argument("--out", type=Path, default=HERE / "out")
    args = parser.parse_args()
    root = make_real_plant(args.out, months=120)
    if root is None:
        raise SystemExit("no sample plant (../shared/samples)")
    env = {"DPO_EXECUTOR": args.executor}
    if args.figure == "nochange":
        reset(root)
        one(root, env)
    runs = []
    for _ in range(args.repeat):
        if args.figure == "fresh":
            reset(root)
        runs.append(one(root, env))
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    rest = med["wall"] - med["phase1"] - med["phase2"]
    print(f"{args.figure} ({args.executor}), median of {args.repeat}: wall {med['wall']:.3f} s = "
          f"Phase 1 {med['phase1']:.3f} + Phase 2 {med['phase2']:.3f} + start-up, imports, "
          f"reports and exit {rest:.3f} (load {os.getloadavg()[0]:.1f})")
    if args.figure == "fresh":
        reset(root)
    top = imports(root, env)
    total = sum(us for _, us in top)
    print(f"top-level imports under -X importtime: {total / 1e6:.3f} s in all; the largest: " +
          ", ".join(f"{name} {us / 1e3:.0f} ms" for name, us in top[:12]))


if __name__ == "__main__":
    main()

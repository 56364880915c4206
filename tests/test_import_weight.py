"""The no-change run and `dpo --help` load no data library (the splits by stage exist for
this: a cron job that finds nothing to do must cost a fraction of a second)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from dpo.demo.plant import generate_plant

HEAVY = ("pyarrow", "numpy", "pandas", "fastexcel", "python_calamine")
PROBE = """
import json, sys
from dpo.cli import main
sys.argv = ["dpo", *sys.argv[1:]]
try:
    main()
except SystemExit as done:
    code = done.code
print("\\n" + json.dumps({"code": code, "heavy": [m for m in HEAVY if m in sys.modules]}))
""".replace("HEAVY", repr(HEAVY))


def probe(*args: str | Path) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], capture_output=True,
                          text=True, timeout=120)
    found: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def test_help_imports_no_data_library() -> None:
    assert probe("--help") == {"code": 0, "heavy": []}


def test_the_no_change_run_imports_no_data_library(tmp_path: Path) -> None:
    plant = generate_plant(tmp_path / "plant", months=2, rows_per_month=30, po_files=2, seed=4)
    first = probe("run", "--root", plant.root, "--no-notify")
    assert first["code"] == 0 and "pyarrow" in first["heavy"]  # a real run does read data
    again = probe("run", "--root", plant.root, "--no-notify")
    assert again == {"code": 0, "heavy": []}

"""The no-change run and `dpo --help` load no data library (the splits by stage exist for
this: a cron job that finds nothing to do must cost a fraction of a second)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from dpo.demo.plant import generate_plant, write_monthly_report

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


# The seed's Python API on the real sample plant, in a fresh interpreter: pandas is not
# imported by the run (pyarrow is handed only Arrow and numpy objects), Arrow's pool is
# jemalloc during the run unless the process chose one, and put back after; pandas imported
# afterwards works with pyarrow as if dpo had never run (its pandas probes were not poisoned).
API_PROBE = """
import json, sys
from pathlib import Path
if sys.argv[2] == "pandas-first":
    import pandas
import pyarrow as pa
from loguru import logger
logger.remove()
from dpo import DataPipelineOrchestrator
default = pa.default_memory_pool().backend_name
pools = set()
result = DataPipelineOrchestrator(root_dir=sys.argv[1]).run_pipeline(
    enable_notifications=False,
    progress=lambda event, data: pools.add(pa.default_memory_pool().backend_name))
found = {"status": result["overall_status"], "pandas_in_run": "pandas" in sys.modules,
         "numpy_ma_in_run": "numpy.ma" in sys.modules,
         "created": result["loader_result"].get("tables_created"),
         "default": default, "pools": sorted(pools),
         "after": pa.default_memory_pool().backend_name,
         "jemalloc": "jemalloc" in pa.supported_memory_backends()}
import pandas as pd
found["nan_is_null"] = pa.array(pd.Series([1.0, float("nan")])).null_count == 1
found["date_offset"] = str(pa.array([pd.DateOffset(months=1)]).type)
stored = json.loads(Path(sys.argv[1], ANNOTATIONS).read_text())
found["dtypes"] = {t: sorted(set(pd.read_parquet(Path(sys.argv[1], p)).dtypes.astype(str)))
                   for t, p in stored.items()}
print(json.dumps(found))
""".replace("ANNOTATIONS", repr("agents/shared_db/DataLoaderAgent/newest/path_annotations.json"))


def api_run(root: Path, mode: str, **env: str) -> dict[str, Any]:
    clean = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    done = subprocess.run([sys.executable, "-c", API_PROBE, str(root), mode], capture_output=True,
                          text=True, timeout=180, env={**clean, **env})
    assert done.returncode == 0, done.stderr[-3000:]
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def published(root: Path) -> dict[str, pa.Table]:
    stored = json.loads((root / API_ANNOTATIONS).read_text())
    return {table: pq.read_table(root / path) for table, path in stored.items()}


API_ANNOTATIONS = Path("agents/shared_db/DataLoaderAgent/newest/path_annotations.json")


def test_the_api_run_imports_no_pandas_and_leaves_pyarrow_as_it_found_it(
        samples_root: Path, tmp_path: Path) -> None:
    other = tmp_path / "pandas-first"
    shutil.copytree(samples_root / "database", other / "database")
    alone = api_run(samples_root, "alone")
    assert alone["status"] == "success" and alone["pandas_in_run"] is False
    # nor numpy.ma (20 ms), which np.unique's first call imports: the real report holds
    # numbers the reader's text rounds, whose texts are put together without it
    assert alone["numpy_ma_in_run"] is False
    swapped = alone["default"] == "mimalloc" and alone["jemalloc"]
    assert alone["pools"] == (["jemalloc"] if swapped else [alone["default"]])
    assert alone["after"] == alone["default"]
    # pyarrow's pandas support, asked first after the run: NaN from pandas is null, and a
    # DateOffset is inferred (the probes dpo avoided were not answered "no pandas").
    assert alone["nan_is_null"] is True and alone["date_offset"] == "month_day_nano_interval"
    # The outputs still read back in pandas' nullable dtypes (no numpy object/float64 columns).
    dtypes = {d for kinds in alone["dtypes"].values() for d in kinds}
    assert dtypes and dtypes <= {"string", "Int64", "Float64", "boolean",
                                 "datetime64[ns]"}, dtypes
    # A user who imported pandas first gets the very same published values.
    first = api_run(other, "pandas-first")
    assert first["status"] == "success" and first["dtypes"] == alone["dtypes"]
    mine, theirs = published(samples_root), published(other)
    assert mine.keys() == theirs.keys() and all(mine[t].equals(theirs[t]) for t in mine)


def test_an_arrow_pool_the_process_chose_is_kept(samples_root: Path) -> None:
    chosen = api_run(samples_root, "alone", ARROW_DEFAULT_MEMORY_POOL="system")
    assert chosen["status"] == "success"
    assert chosen["default"] == "system" and chosen["pools"] == ["system"]
    assert chosen["after"] == "system"


def test_an_api_run_after_a_change_imports_no_pandas(tmp_path: Path) -> None:
    """The one-changed run: the cache, the merge and the per-publish diff of two versions."""
    plant = generate_plant(tmp_path / "plant", months=2, rows_per_month=40, po_files=2, seed=6)
    assert api_run(plant.root, "alone")["pandas_in_run"] is False
    write_monthly_report(plant.monthly_files[-1], month="2018-12", n_rows=40, seed=99)
    again = api_run(plant.root, "alone")
    assert again["status"] == "success" and again["created"] == 1
    assert again["pandas_in_run"] is False

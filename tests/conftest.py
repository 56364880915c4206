"""Shared fixture builders: small schemas, real Excel files, paths and collector runs.

Excel files are written with `dpo.demo.plant` (the project's own fixture writer), so every test
reads real `.xlsx`/`.xlsb` bytes through the production reader.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from dpo.collect.collector import DataCollector
from dpo.config import Paths, load_settings, resolve_paths
from dpo.results import CollectorResult

# `shared/` beside the checkout, as CI lays it out (and only there: a fallback elsewhere would
# hide a mislocated checkout). The plant's real sample exports and the seed document.
SHARED = Path(__file__).resolve().parents[2] / "shared"
SAMPLES = SHARED / "samples" / "database"


def skip_or_fail(reason: str) -> None:
    """Skip on a developer's machine that lacks something; under CI (`CI` set) the same lack is
    a failure, so a test can never pass by not running."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must have it")
    pytest.skip(reason)

# A focused dynamic table: one of each dtype the plant uses, including the special columns.
SMALL_REQUIRED = ("recordDate", "workingShift", "itemCode", "quantity", "weight", "plasticResine")
SMALL_DTYPES = {
    "recordDate": "datetime64[ns]",
    "workingShift": "string",
    "itemCode": "string",
    "quantity": "Int64",
    "weight": "Float64",
    "plasticResin": "string",
}
# The same columns as they come out (canonical names, required order).
SMALL_COLUMNS = ("recordDate", "workingShift", "itemCode", "quantity", "weight", "plasticResin")


def dynamic_entry(
    folder: str = "records_history",
    *,
    name_start: str = "records_",
    extension: str = ".xlsx",
    sheet_name: str = "Sheet1",
    required: Sequence[str] = SMALL_REQUIRED,
    dtypes: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "path": f"database/dynamicDatabase/{folder}",
        "name_start": name_start,
        "extension": extension,
        "sheet_name": sheet_name,
        "required_fields": list(required),
        "dtypes": dict(SMALL_DTYPES if dtypes is None else dtypes),
    }


def write_schema(
    root: Path,
    tables: Mapping[str, Mapping[str, Any]] | None = None,
    static: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """Write `<root>/database/databaseSchemas.json`; default: one dynamic table `records`."""
    body = {
        "dynamicDB": {"records": dynamic_entry()} if tables is None else dict(tables),
        "staticDB": dict(static or {}),
    }
    path = root / "database" / "databaseSchemas.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, indent=2), encoding="utf-8")
    return path


def source_dir(root: Path, folder: str = "records_history") -> Path:
    path = root / "database" / "dynamicDatabase" / folder
    path.mkdir(parents=True, exist_ok=True)
    return path


def make_paths(root: Path) -> Paths:
    return resolve_paths(load_settings(root_dir=str(root)))


def collect(root: Path, on_bad_rows: str = "fail", on_error_cells: str = "null"
            ) -> CollectorResult:
    collector = DataCollector(
        make_paths(root), on_bad_rows=on_bad_rows, on_error_cells=on_error_cells, max_retries=0,
        retry_wait=0.01,
    )
    return collector.process_all_data()


def output_path(root: Path, table: str) -> Path:
    return root / "agents" / "shared_db" / "dynamicDatabase" / f"{table}.parquet"


def table_result(result: CollectorResult, table: str):  # -> TableResult
    (found,) = [t for t in result.tables if t.table == table]
    return found


def age(path: Path, seconds: float = 60.0) -> None:
    """Make a file look settled (the reader treats very fresh unreadable files as transient)."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns - int(seconds * 1e9)))


@pytest.fixture
def samples_root(tmp_path: Path) -> Path:
    """A root holding a copy of the real sample inputs (in tmp_path, never in the repo)."""
    if not SAMPLES.is_dir():
        skip_or_fail(f"the sample plant is not at {SAMPLES}")
    import shutil

    shutil.copytree(SAMPLES, tmp_path / "database")
    return tmp_path


# Source header of the focused table: the resin column in the export's "Resine" spelling.
SOURCE_HEADER = ["recordDate", "workingShift", "itemCode", "quantity", "weight", "plasticResine"]


def good_row(i: int) -> list[object]:
    """A clean source row; `i` makes rows distinct."""
    import datetime as dt

    return [dt.datetime(2018, 11, 1) + dt.timedelta(days=i % 28), 1 + i % 3, f"CODE-{i:05d}",
            100 + i, 1.25 * i, "ABS-PA-758-T.NL"]


def write_source(
    root: Path,
    name: str,
    rows: Sequence[Sequence[object]],
    *,
    header: Sequence[str] = SOURCE_HEADER,
    sheet: str = "Sheet1",
    folder: str = "records_history",
) -> Path:
    """Write one real Excel source file (`.xlsx` or `.xlsb`, chosen by the name)."""
    from dpo.demo.plant import write_xlsb, write_xlsx

    path = source_dir(root, folder) / name
    writer = write_xlsb if name.endswith(".xlsb") else write_xlsx
    writer(path, sheet, list(header), [list(r) for r in rows])
    return path


@pytest.fixture
def records_root(tmp_path: Path) -> Path:
    """A root with the focused `records` schema (.xlsx) and no source files yet."""
    write_schema(tmp_path)
    return tmp_path


@pytest.fixture
def plant(tmp_path: Path):  # -> dpo.demo.plant.DemoPlant
    """A small generated plant: 2 monthly .xlsb reports of 60 rows, 3 purchase-order .xlsx."""
    from dpo.demo.plant import generate_plant

    return generate_plant(tmp_path, months=2, rows_per_month=60, po_files=3, seed=7)


# -- a real S3-compatible server (moto's) on 127.0.0.1, for the object-storage store ----------
@pytest.fixture(scope="session")
def s3_server() -> Any:  # -> the endpoint URL, http://127.0.0.1:PORT
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


S3_ENV = {"AWS_ACCESS_KEY_ID": "dpo-test-key", "AWS_SECRET_ACCESS_KEY": "dpo-test-secret",
          "AWS_REGION": "us-east-1"}


@pytest.fixture
def s3_url(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on the test server, as `s3://bucket/store`; the standard AWS_* variables
    point at the server (as a deployment would set them), for this process and its children."""
    import uuid

    import boto3

    for name, value in {**S3_ENV, "AWS_ENDPOINT_URL": s3_server}.items():
        monkeypatch.setenv(name, value)
    bucket = f"dpo-{uuid.uuid4().hex[:16]}"
    boto3.client("s3", endpoint_url=s3_server, **{
        "aws_access_key_id": S3_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": S3_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": S3_ENV["AWS_REGION"]}).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/store"

"""The seed's three "How to Run" snippets, run verbatim in a folder holding a real plant.

The snippet texts below are the seed's code blocks character for character; the last test
checks that against the seed document when it is available.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import SHARED, skip_or_fail
from pipelinetools import (
    ALL_TABLES,
    ANNOTATIONS,
    MONTHLY,
    NEWEST,
    ORCH,
    ORDERS,
    STATIC,
    assert_result_shape,
    make_plant,
    report_kinds,
    set_cell,
)

from dpo import DataPipelineOrchestrator, MockNotificationHandler

SEED = SHARED / "seed" / "DataPipelineOrchestrator.md"

BASIC_USAGE = """\
# Initialize with default configuration
orchestrator = DataPipelineOrchestrator()

# Run complete pipeline
result = orchestrator.run_pipeline()

# Check execution status
print(f"Pipeline status: {result['overall_status']}")
print(f"Completed at: {result['timestamp']}")
"""

CUSTOM_CONFIGURATION = """\
# Initialize with custom paths
orchestrator = DataPipelineOrchestrator(
    dynamic_db_source_dir="custom/source/path",
    databaseSchemas_path="custom/schemas.json",
    annotation_path="custom/annotations.json",
    default_dir="custom/output"
)

# Run with additional parameters
result = orchestrator.run_pipeline(
    max_retries=3,
    enable_notifications=True
)
"""

DEVELOPMENT_MODE = """\
# Debug mode with verbose logging
import logging
logging.getLogger("DataPipelineOrchestrator").setLevel(logging.DEBUG)

# Mock notifications for testing
orchestrator = DataPipelineOrchestrator()
orchestrator.notification_handler = MockNotificationHandler()

# Test run
result = orchestrator.run_pipeline()
"""


def execute(snippet: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"DataPipelineOrchestrator": DataPipelineOrchestrator,
                                 "MockNotificationHandler": MockNotificationHandler}
    exec(compile(snippet, "<seed snippet>", "exec"), namespace)
    assert_result_shape(namespace["result"])
    return namespace


@pytest.fixture
def in_plant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working directory is a plant in the seed's default layout."""
    make_plant(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(autouse=True)
def _restore_logging_level() -> Iterator[None]:
    named = logging.getLogger("DataPipelineOrchestrator")
    level = named.level
    yield
    named.setLevel(level)


def test_basic_usage(in_plant: Path, capsys: pytest.CaptureFixture[str]) -> None:
    namespace = execute(BASIC_USAGE)

    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Pipeline status: success"
    completed = re.fullmatch(r"Completed at: (\S+)", out[1])
    assert completed is not None
    assert datetime.fromisoformat(completed.group(1)) == datetime.fromisoformat(
        namespace["result"]["timestamp"])
    # Everything landed in the seed's default places, relative to the working directory.
    annotations = json.loads((in_plant / ANNOTATIONS).read_text(encoding="utf-8"))
    assert set(annotations) == set(ALL_TABLES)
    assert all((in_plant / p).is_file() for p in annotations.values())
    assert set(report_kinds(in_plant)) == {"DataCollector", "DataLoader",
                                           "DataPipelineOrchestrator"}


def test_custom_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plant = make_plant(tmp_path / "plant").root
    work = tmp_path / "work"
    source = work / "custom" / "source" / "path"
    shutil.copytree(plant / MONTHLY, source / "monthlyReports_history")
    shutil.copytree(plant / ORDERS, source / "purchaseOrders_history")
    shutil.copytree(plant / STATIC, work / "custom" / "static")
    schema = json.loads((plant / "database" / "databaseSchemas.json").read_text("utf-8"))
    for entry in schema["staticDB"].values():  # the master tables live in custom/ too
        entry["path"] = "custom/static/" + Path(entry["path"]).name
    (work / "custom" / "schemas.json").write_text(json.dumps(schema), encoding="utf-8")
    monkeypatch.chdir(work)

    result = execute(CUSTOM_CONFIGURATION)["result"]

    assert result["overall_status"] == "success"
    files = [f for d in result["collector_result"]["details"] for f in d["files"]]
    assert sorted(files) == sorted(p.name for p in [*(source / "monthlyReports_history")
                                                   .iterdir(), *(source / "purchaseOrders_history")
                                                   .iterdir()])
    annotations = json.loads((work / "custom" / "annotations.json").read_text("utf-8"))
    assert set(annotations) == set(ALL_TABLES)
    assert all(p.startswith("custom/output/DataLoaderAgent/newest/") and (work / p).is_file()
               for p in annotations.values())
    assert (work / "custom" / "output" / "dynamicDatabase" / "productRecords.parquet").is_file()
    newest = work / "custom" / "output" / "DataPipelineOrchestrator" / "newest"
    assert len(list(newest.glob("*_final_report.txt"))) == 1
    assert sorted(p.name for p in work.iterdir()) == ["custom"]  # no default paths used


def _good(root: Path) -> list[str]:
    return []


def _bad(root: Path) -> list[str]:
    set_cell(root / MONTHLY / "monthlyReports_201812.xlsb", 9, "itemTotalQuantity", "abc")
    return ["Manual Review Required: DataCollector", "Manual Review Required: DataLoaderAgent"]


@pytest.mark.parametrize("plant_state", [_good, _bad], ids=["clean-plant", "bad-cell"])
def test_development_testing_mode(in_plant: Path, plant_state: Any) -> None:
    expected = plant_state(in_plant)

    namespace = execute(DEVELOPMENT_MODE)

    mock = namespace["orchestrator"].notification_handler
    assert isinstance(mock, MockNotificationHandler)
    assert [note["subject"].split(" · ")[0] for note in mock.sent] == expected
    assert namespace["result"]["overall_status"] == ("failed" if expected else "success")
    assert logging.getLogger("DataPipelineOrchestrator").level == logging.DEBUG
    # The handler set after construction was the one used: the default one wrote nothing.
    assert not (in_plant / ORCH / "notifications").exists()
    if expected:
        assert report_kinds(in_plant)["DataCollector"] == "manual_review_notification"
        assert (in_plant / NEWEST).is_dir()


def test_snippets_are_the_seeds_own() -> None:
    if not SEED.is_file():
        skip_or_fail(f"the seed document is not at {SEED}")
    blocks = re.findall(r"```python\n(.*?)```", SEED.read_text(encoding="utf-8"), re.S)
    for snippet in (BASIC_USAGE, CUSTOM_CONFIGURATION, DEVELOPMENT_MODE):
        assert snippet in blocks

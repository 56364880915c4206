"""Issue #19, item 9: words a plant engineer reads — plurals, where notifications went, what a
notification file is about, what a second `make demo` writes.

Real plants (dpo.demo), real `dpo` subprocesses.
"""

from __future__ import annotations

import re
from pathlib import Path

from pipelinetools import (
    ANNOTATIONS,
    HISTORY,
    NEWEST,
    ORCH,
    ORDERS,
    REPORT_NAME,
    SHARED,
    dpo,
    make_plant,
    set_cell,
)

NOTIFICATIONS = ORCH / "notifications"
VERSIONS = SHARED / "DataLoaderAgent" / "newest"


def files_in(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_a_second_demo_publishes_nothing_and_writes_three_new_reports(tmp_path: Path) -> None:
    """What the README says of a second `make demo` (`dpo demo build/demo`)."""
    demo = tmp_path / "demo"
    first = dpo("demo", demo, "--months", "1", "--rows", "20")
    assert first.returncode == 0, first.stderr
    versions, reports = files_in(demo / VERSIONS), sorted(files_in(demo / NEWEST))

    again = dpo("demo", demo, "--months", "1", "--rows", "20")

    assert again.returncode == 0, again.stderr
    assert files_in(demo / VERSIONS) == versions  # no new version, the same annotations
    assert (demo / ANNOTATIONS).name in versions
    new_reports = sorted(files_in(demo / NEWEST))
    assert len(new_reports) == 3 and not set(new_reports) & set(reports)
    assert all(REPORT_NAME.match(name) for name in new_reports)
    assert sorted(files_in(demo / HISTORY)) == reports  # the first run's, moved aside
    assert "0 new versions" in again.stdout and "(s)" not in again.stdout
    assert re.search(r"· 2 files · [\d,]+ records ·", again.stdout), again.stdout


def test_notifications_written_to_files_are_said_so_and_named_by_table(tmp_path: Path) -> None:
    root = tmp_path / "plant"
    make_plant(root, months=1, rows_per_month=20)
    assert dpo("run", "--root", root).returncode == 0
    set_cell(root / ORDERS / "purchaseOrder_181101.xlsx", 3, "itemQuantity", "abc")

    done = dpo("run", "--root", root)  # no channel configured: notifications go to files

    assert done.returncode == 3, done.stderr[-2000:]  # partial_success
    (note,) = sorted(p.name for p in (root / NOTIFICATIONS).iterdir())
    assert re.fullmatch(r"\d{8}_\d{6}_\d{6}_DataCollector_failed_purchaseOrders\.txt", note), note
    history = dpo("history", "--root", root)
    assert history.returncode == 0, history.stderr
    rows = [line for line in history.stdout.splitlines() if "partial_success" in line]
    assert len(rows) == 1 and "1 written to …/notifications" in rows[0], history.stdout
    assert " sent" not in rows[0]

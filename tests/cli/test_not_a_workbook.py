"""Issue #19, item 3: a file that is not a workbook is said so at once, by its content, never
retried as a copy in progress; a retry line says `ok` only for a retry that worked.

Real plants (dpo.demo), real files dropped into the export folder, real `dpo` subprocesses.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from pipelinetools import ORDERS, dpo, make_plant

PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"
STRANGERS = {  # what lands in an export folder under a workbook's name -> what dpo calls it
    "pdf": (PDF, "it starts like a PDF"),
    "html": (b"\xef\xbb\xbf<!DOCTYPE html>\n<html><body><table><tr><td>poNo</td></tr></table>",
             "it starts like an HTML page"),
    "csv": ("poNo;itemCode;itemQuantity\r\nPO-1;A-1;10\r\nPO-2;Ä-2;12\r\n".encode(),
            "it starts like text, a CSV file?"),
    "empty": (b"", "the file is empty"),
}
STRANGER = ORDERS / "purchaseOrder_181231.xlsx"


@pytest.fixture
def plant(tmp_path: Path) -> Path:
    root = tmp_path / "plant"
    make_plant(root, months=1, rows_per_month=20)
    return root


def fresh(path: Path) -> None:
    """As a file that just changed, however long a loaded machine takes to start the run
    (dpo takes a file changed in the last seconds that fails to open for a copy in progress)."""
    soon = time.time() + 300
    os.utime(path, (soon, soon))


def settled(path: Path) -> None:
    """As an export that has been there for a while (a fresh unreadable file may be a copy)."""
    old = time.time() - 120
    os.utime(path, (old, old))


@pytest.mark.parametrize("kind", sorted(STRANGERS))
def test_validate_names_what_the_file_is(plant: Path, kind: str) -> None:
    content, looks = STRANGERS[kind]
    (plant / STRANGER).write_bytes(content)
    if kind == "empty":
        settled(plant / STRANGER)  # a fresh empty file is how a copy starts: retried (below)

    done = dpo("validate", "--root", plant)

    assert done.returncode == 1
    assert (f"ERROR purchaseOrders {STRANGER.name}: {STRANGER.name}: not an Excel workbook "
            f"({looks}); export it again as .xlsx or .xlsb") in done.stdout
    assert "retry" not in done.stdout + done.stderr and "Traceback" not in done.stderr


def test_a_pdf_just_copied_in_is_refused_at_once_and_never_retried(plant: Path) -> None:
    assert dpo("run", "--root", plant).returncode == 0
    (plant / STRANGER).write_bytes(PDF)
    fresh(plant / STRANGER)

    done = dpo("run", "--root", plant, "--max-retries", "3")

    assert done.returncode == 3, done.stderr[-2000:]  # partial_success: rolled back
    assert (f"{STRANGER.name}: not an Excel workbook (it starts like a PDF)") in done.stdout
    assert "still being copied" not in done.stdout + done.stderr
    assert "retry" not in done.stdout + done.stderr
    assert "rollback purchaseOrders: ok" in done.stdout


def test_a_retry_that_failed_is_not_said_ok(plant: Path) -> None:
    """A workbook still being copied (a fresh, truncated zip) that stays so: each retry fails,
    and the summary says FAILED for each, never `ok`."""
    assert dpo("run", "--root", plant).returncode == 0
    whole = (plant / ORDERS / "purchaseOrder_181101.xlsx").read_bytes()
    (plant / STRANGER).write_bytes(whole[: len(whole) // 3])
    fresh(plant / STRANGER)

    done = dpo("run", "--root", plant, "--max-retries", "2")

    assert done.returncode == 3, done.stderr[-2000:]
    retries = [line.strip() for line in done.stdout.splitlines()
               if line.strip().startswith("retry purchaseOrders")]
    assert [line.split(" — ")[0] for line in retries] == ["retry purchaseOrders: FAILED"] * 2
    assert [line.split(" — ")[1].split(" of ")[0] for line in retries] == ["retry 1/2",
                                                                          "retry 2/2"]


def test_a_fresh_empty_file_is_taken_for_a_copy_in_progress(plant: Path) -> None:
    (plant / STRANGER).write_bytes(b"")
    fresh(plant / STRANGER)

    done = dpo("run", "--root", plant, "--max-retries", "1")

    assert "empty right after it changed; still being copied?" in done.stdout
    assert "retry purchaseOrders: FAILED — retry 1/1" in done.stdout

"""Faults a plant will see, on real processes: SIGKILL at every durable step of a full run,
disk full, read-only output, sources deleted, replaced, still being written or unreadable, and
two runs at once.

The promise under test: whatever happens, the published store is the last good state (or,
after its commit point, the new one: never a mix), the user is told what went wrong (status,
error type, the file named, no traceback), no partial file is left, and the next run recovers
on its own. Every run here is a real separate process forked from a warm zygote
(reliabilitytools.Zygote), so it can be killed, limited, or run as user `nobody`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import skip_or_fail
from pipelinetools import dpo, read_book, set_cell
from reliabilitytools import (
    LOADER,
    NOBODY,
    ORCH,
    ORDERS,
    PHASE1,
    STATIC,
    Outcome,
    Zygote,
    assert_phase1_readable,
    chown_tree,
    errors_of,
    kill9,
    nobody_tree,
    pause_env,
    phase1_bytes,
    published_bytes,
    release,
    settle,
    temp_files,
    wait_for,
)
from storetools import assert_consistent, rename_value

from dpo.demo.plant import generate_plant, write_xlsx
from dpo.fsio import TMP_MARK
from dpo.observe.ledger import Ledger
from dpo.pipeline.orchestrator import DataPipelineOrchestrator
from dpo.tables.contenthash import content_hash
from dpo.tables.parquet import read_verified

KEEP = 1  # keep_history: small, so that a run also reaches the retention step
SETTINGS = {"keep_history": KEEP}
NEW_PO = ORDERS / "purchaseOrder_190101.xlsx"  # the month the pending state adds


@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zygote]:
    z = Zygote(tmp_path_factory.mktemp("zygote"))
    yield z
    z.close()


def run_here(root: Path, **settings: Any) -> dict[str, Any]:
    """A run in this process (the repair runs, and the clean runs results are compared with)."""
    result: dict[str, Any] = DataPipelineOrchestrator(
        root_dir=root, **{**SETTINGS, **settings}).run_pipeline(max_retries=0)
    return result


def hashes(root: Path) -> dict[str, str]:
    return assert_consistent(root, exact_newest=False)


def phase1_hashes(root: Path) -> dict[str, str]:
    return {t: content_hash(read_verified(root / PHASE1 / f"{t}.parquet"))
            for t in ("productRecords", "purchaseOrders")}


@dataclass(frozen=True)
class Scenario:
    root: Path  # the state a run starts from (copied per kill)
    points: list[str]  # every checkpoint a full run reaches, in order
    old: dict[str, str]  # published content before the run
    new: dict[str, str]  # published content after a run that was never killed
    phase1: dict[str, str]  # Phase 1 content after that run
    overall: str


def _published_good(base: Path) -> Path:
    """A plant published twice (itemInfo has a history), reports and ledger in place."""
    root = base / "good"
    generate_plant(root, months=2, rows_per_month=30, seed=5)
    run_here(root)
    rename_value(root, "itemInfo", "itemName", row=0, suffix=" v2")
    run_here(root)
    return root


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _published_good(tmp_path_factory.mktemp("good"))


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def scenario(zygote: Zygote, good: Path, base: Path, kind: str) -> Scenario:
    root = copy(good, base / kind)
    generate_plant(root, months=3, rows_per_month=30, seed=5)  # one more month of each
    rename_value(root, "itemInfo", "itemName", row=1, suffix=" v3")
    if kind == "failing":  # a bad value in the new orders, and Phase 1's copy of them gone:
        set_cell(root / NEW_PO, 2, "itemQuantity", "12 pcs")  # the rollback must restore it
        (root / PHASE1 / "purchaseOrders.parquet").unlink()
    clean = copy(root, base / f"{kind}-clean")
    result = run_here(clean)
    log = base / f"{kind}.points"
    outcome = zygote.run(copy(root, base / f"{kind}-enum"), env={"DPO_CRASH_POINTS": str(log)},
                         settings=SETTINGS)
    assert outcome.result and outcome.result["overall_status"] == result["overall_status"]
    return Scenario(root, log.read_text(encoding="utf-8").split(), hashes(good), hashes(clean),
                    phase1_hashes(clean), result["overall_status"])


@pytest.fixture(scope="module")
def scenarios(zygote: Zygote, good: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> dict[str, Scenario]:
    base = tmp_path_factory.mktemp("scenarios")
    return {kind: scenario(zygote, good, base, kind) for kind in ("pending", "failing")}


# Families of durable steps a full run must reach; a new step outside them fails the pin test
# below, so that it is looked at (and then killed at, like every other).
FAMILIES = ("ledger:", "cache:", "collect:", "rollback:phase1:", "publish:write:",
            "publish:annotations:", "publish:archive:", "publish:retention:", "publish:log",
            "loader:state:", "report:archive:", "report:", "notify:file:", "observe:")


def test_a_full_run_reaches_every_kind_of_durable_step(scenarios: dict[str, Scenario]) -> None:
    pending, failing = scenarios["pending"].points, scenarios["failing"].points
    for points in (pending, failing):
        assert all(p.startswith(FAMILIES) for p in points), points
        assert len(points) == len(set(points))
        first = [p for p in points if p.startswith("ledger:start")]
        assert first == ["ledger:start#1"] and points[0] == "ledger:start#1"
        assert points[-1].startswith("observe:")
    # The success path: the whole publish protocol, history bounded, reports, logs, ledger.
    for point in ("publish:annotations:renamed#1", "publish:archive:itemInfo:moved#1",
                  "publish:retention:itemInfo#1", "publish:log#1", "report:log#1",
                  "report:archive:moved#3", "report:DataPipelineOrchestrator_final_report:renamed#1",
                  "ledger:finish#1",
                  "loader:state:renamed#1"):
        assert point in pending, point
    # The failure path adds the Phase 1 rollback copy and the notification files.
    for point in ("rollback:phase1:purchaseOrders:renamed#1", "notify:file:written#1",
                  "notify:file:linked#1",
                  "report:DataCollector_manual_review_notification:renamed#1"):
        assert point in failing, point
    assert pending.index("publish:annotations:renamed#1") < pending.index("ledger:finish#1")


CHUNKS = 4


def _kill_all(zygote: Zygote, sc: Scenario, points: list[str], base: Path) -> dict[str, Path]:
    roots = {p: copy(sc.root, base / f"k{i}") for i, p in enumerate(points)}

    for i in range(0, len(points), 2):  # two children at a time: the machine has two cores
        jobs = [(p, zygote.spawn(roots[p], env={"DPO_CRASH_AT": p}, settings=SETTINGS))
                for p in points[i:i + 2]]
        for point, job in jobs:
            out = zygote.wait(job)
            assert out.code == -9, f"{point}: expected SIGKILL, got {out.code}\n{out.log[-2000:]}"
    return roots


def check_killed(sc: Scenario, root: Path, point: str) -> None:
    """What a reader sees right after the kill, then the repair by the next run."""
    committed = sc.points.index(point) >= sc.points.index("publish:annotations:renamed#1")
    # 1. The published store: parses, every pointer at a readable file whose data matches the
    #    hash recorded in it, and all-old or all-new.
    assert hashes(root) == (sc.new if committed else sc.old), point
    # 2. Phase 1 outputs (those that exist) are whole and verified.
    assert_phase1_readable(root)
    # 3. Every report or notification on disk is whole (written under a temp name, renamed).
    for folder in ("newest", "historical_db", "notifications"):
        for path in (root / ORCH / folder).glob("*.txt"):
            if not path.name.startswith(TMP_MARK):
                text = path.read_text(encoding="utf-8")
                if "MANUAL REVIEW NOTIFICATION" in text:  # starts with the errors (#12), so:
                    assert text.endswith("=" * 80 + "\n"), (point, path)  # its closing rule
                else:
                    assert text.startswith(("=", "To: ")) and text.endswith("\n"), (point, path)
    at = sc.points.index(point)
    interrupted = sc.points.index("ledger:start#1") <= at < sc.points.index("ledger:finish#1")
    # 4. The next run repairs and ends exactly where a run that was never killed ends.
    result = run_here(root)
    assert result["overall_status"] == sc.overall, (point, errors_of(result))
    assert hashes(root) == sc.new, point
    assert phase1_hashes(root) == sc.phase1, point
    assert temp_files(root) == [], point
    assert_consistent(root)  # newest/ holds exactly the referenced versions again
    reports = sorted(p.name for p in (root / ORCH / "newest").iterdir())
    assert len(reports) == 3 and len({n[:13] for n in reports}) == 1, (point, reports)
    # 5. The killed run is on record as interrupted; nothing is left "running".
    runs = Ledger(root / ORCH / "runs.sqlite").runs()
    states = [r["state"] for r in runs]
    assert "running" not in states, point
    assert states.count("interrupted") == (1 if interrupted else 0), (point, states)


@pytest.mark.parametrize("part", range(CHUNKS))
@pytest.mark.parametrize("kind", ["pending", "failing"])
def test_a_run_killed_at_any_durable_step_leaves_a_good_store_and_is_repaired(
    zygote: Zygote, scenarios: dict[str, Scenario], tmp_path: Path, kind: str, part: int
) -> None:
    sc = scenarios[kind]
    points = sc.points[part::CHUNKS]
    roots = _kill_all(zygote, sc, points, tmp_path)
    for point in points:
        check_killed(sc, roots[point], point)


# -- disk full ---------------------------------------------------------------------------------
@pytest.fixture
def pending(good: Path, tmp_path: Path) -> Path:
    """The good plant plus a new month of sources and a changed master table."""
    root = copy(good, tmp_path / "plant")
    generate_plant(root, months=3, rows_per_month=30, seed=5)
    rename_value(root, "itemInfo", "itemName", row=1, suffix=" v3")
    return root


def assert_told_and_safe(out: Outcome, root: Path, before: dict[str, bytes],
                         old_phase1: dict[str, bytes], words: tuple[str, ...]) -> None:
    """A failed run: told clearly (status, the cause in words), store and Phase 1 unchanged,
    no partial file, no traceback."""
    assert out.exception is None, out.exception
    assert out.result is not None
    assert out.result["overall_status"] in ("failed", "partial_success")
    messages = " | ".join(e["message"] for e in errors_of(out.result))
    assert any(w in messages for w in words), messages
    assert published_bytes(root) == before
    # Phase 1: a table that failed keeps (or is rolled back to) its last good output, byte
    # for byte; the others are whole, readable files.
    failed = {d["table"] for d in out.result["collector_result"].get("details") or []
              if d["status"] == "error"}
    now = phase1_bytes(root)
    for table in now:
        if table in failed and table in old_phase1:
            assert now[table] == old_phase1[table], table
        read_verified(root / PHASE1 / f"{table}.parquet")
    assert [t for t in temp_files(root) if TMP_MARK in t] == []
    assert "Traceback" not in out.log


FSIZE_LIMITS = (2048, 8192, 20_000, 40_000)


def test_disk_full_at_any_file_size_fails_cleanly_and_the_next_run_recovers(
    zygote: Zygote, pending: Path, tmp_path: Path
) -> None:
    """RLIMIT_FSIZE with SIGXFSZ ignored: every write beyond the limit fails with EFBIG."""
    clean = copy(pending, tmp_path / "clean")
    run_here(clean)
    roots = {limit: copy(pending, tmp_path / f"fs{limit}") for limit in FSIZE_LIMITS}
    before = published_bytes(pending)
    outcomes = {limit: zygote.run(roots[limit], fsize=limit, settings=SETTINGS)
                for limit in FSIZE_LIMITS}
    statuses = set()
    for limit, out in outcomes.items():
        root = roots[limit]
        assert out.code == 0, (limit, out.log[-3000:])
        statuses.add(told_disk_full(out, root, before, hashes(clean), "File too large"))
        assert_phase1_readable(root)
        assert [t for t in temp_files(root) if TMP_MARK in t] == [], limit
        assert no_crash(out.log), limit
        # Space again: the next run completes the work.
        result = run_here(root)
        assert result["overall_status"] == "success", (limit, errors_of(result))
        assert hashes(root) == hashes(clean), limit
        assert temp_files(root) == [], limit
    assert len(statuses) >= 2, statuses  # the limits hit different steps


def no_crash(log: str) -> bool:
    """No phase crashed with an unexpected exception. (With the disk full, the after-run
    metrics step logs its own warning with a traceback when the ledger cannot be read.)"""
    return "crashed" not in log and "UNEXPECTED_ERROR" not in log


def told_disk_full(out: Outcome, root: Path, before: dict[str, bytes], new: dict[str, str],
                   words: str) -> str:
    """A run that hit a full disk returns a result that names the failed write (when even the
    reports cannot be written, the result says so). The published state is the old one, or
    (past the commit) the complete new one."""
    assert out.exception is None, out.exception  # run_pipeline returns its result, always
    assert out.result is not None
    status = str(out.result["overall_status"])
    if status == "success":
        assert hashes(root) == new  # everything fitted
        return status
    assert any(words in e["message"] for e in errors_of(out.result)), errors_of(out.result)
    if status == "failed":
        assert published_bytes(root) == before
    else:  # partial_success: failed tables rolled back, Phase 2 published the others
        old, now = hashes_of(before, root), hashes(root)
        failed = {e["table"] for e in errors_of(out.result)}
        assert all(now[t] == old[t] for t in failed), (failed, now, old)
        assert all(now[t] in (old[t], new[t]) for t in now)
    return status


def hashes_of(snapshot: dict[str, bytes], root: Path) -> dict[str, str]:
    """The content hashes of a published_bytes() snapshot (as `hashes` gives them)."""
    notes = json.loads(snapshot["path_annotations.json"])
    scratch = Path(tempfile.mkdtemp())  # not beside `root`: that disk may be full
    found = {}
    for table in notes:
        path = scratch / f"{table}.parquet"
        path.write_bytes(snapshot[table])
        found[table] = content_hash(read_verified(path))
    shutil.rmtree(scratch)
    return found


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        skip_or_fail(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_really_full_disk_enospc_fails_cleanly_at_any_fill_level(
    zygote: Zygote, pending: Path, tmpfs: Path, tmp_path: Path
) -> None:
    """A 4 MiB tmpfs filled up to leave N KiB free: writes fail with ENOSPC wherever they hit."""
    clean = copy(pending, tmp_path / "clean")
    run_here(clean)
    before = published_bytes(pending)
    seen: set[str] = set()
    for free_kib in (0, 16, 48, 96):
        root = copy(pending, tmpfs / f"plant{free_kib}")
        filler = tmpfs / "filler"
        stat = os.statvfs(tmpfs)
        room = stat.f_bavail * stat.f_frsize - free_kib * 1024
        with open(filler, "wb") as handle:  # fill to the byte budget
            handle.truncate(0)
            handle.write(bytes(max(0, room)))
        out = zygote.run(root, settings=SETTINGS)
        assert out.code == 0, (free_kib, out.log[-3000:])
        seen.add(told_disk_full(out, root, before, hashes(clean), "No space left on device"))
        assert_phase1_readable(root)
        assert [t for t in temp_files(root) if TMP_MARK in t] == [], free_kib
        assert no_crash(out.log), free_kib
        filler.unlink()
        result = run_here(root)
        assert result["overall_status"] == "success", (free_kib, errors_of(result))
        assert hashes(root) == hashes(clean)
        shutil.rmtree(root)
    assert seen - {"success"}, seen


# -- read-only output, unreadable sources (as user nobody: root ignores permissions) -----------
@pytest.fixture
def nobody_plant(good: Path) -> Iterator[tuple[Path, Path]]:
    """(a copy of the good plant owned by nobody, with a new PO file; the tree's base)."""
    with nobody_tree() as base:
        root = copy(good, base / "plant")
        shutil.copy(root / ORDERS / "purchaseOrder_181201.xlsx", root / NEW_PO)
        set_cell(root / NEW_PO, 0, "poNo", "PO-NEW-1")
        chown_tree(root, *NOBODY)
        yield root, base


def lock_down(path: Path) -> None:
    """Owned by root, no write for anyone else (files: no read either)."""
    os.chown(path, 0, 0)
    os.chmod(path, 0o755 if path.is_dir() else 0o600)


@pytest.mark.parametrize("where, status, words", [
    (LOADER / "newest", "failed", ("Permission denied",)),
    (PHASE1, "partial_success", ("Permission denied",)),
])
def test_read_only_output_folder_fails_the_phase_and_publishes_nothing(
    zygote: Zygote, nobody_plant: tuple[Path, Path], where: Path, status: str,
    words: tuple[str, ...]
) -> None:
    root, _ = nobody_plant
    before, old_phase1 = published_bytes(root), phase1_bytes(root)
    lock_down(root / where)
    out = zygote.run(root, user=NOBODY, settings=SETTINGS)
    assert_told_and_safe(out, root, before, old_phase1, words)
    assert out.result is not None and out.result["overall_status"] == status
    assert {e["error_type"] for e in errors_of(out.result)} == {"WRITE_ERROR"}
    if status == "partial_success":  # Phase 1 could not write: its old output stays
        assert phase1_bytes(root) == old_phase1
        assert [h["success"] for h in out.result["collector_result"]["healing_actions"]] == [True]
    os.chown(root / where, *NOBODY)  # writable again: the next run recovers on its own
    healed = zygote.run(root, user=NOBODY, settings=SETTINGS)
    assert healed.result is not None and healed.result["overall_status"] == "success"
    assert published_bytes(root) != before and temp_files(root) == []


def test_read_only_output_root_refuses_to_start_with_a_clear_message(
    nobody_plant: tuple[Path, Path], zygote: Zygote
) -> None:
    root, _ = nobody_plant
    before, old_phase1 = published_bytes(root), phase1_bytes(root)
    chown_tree(root / "agents", 0, 0)
    out = zygote.run(root, user=NOBODY, settings=SETTINGS)
    assert out.exception is not None and out.exception["error_type"] == "WRITE_ERROR"
    assert "cannot take the run lock" in out.exception["message"]
    assert "Permission denied" in out.exception["message"]
    assert published_bytes(root) == before and phase1_bytes(root) == old_phase1
    assert "Traceback" not in out.log


def test_unreadable_sources_are_named_and_rolled_back(
    zygote: Zygote, nobody_plant: tuple[Path, Path]
) -> None:
    root, _ = nobody_plant
    before, old_phase1 = published_bytes(root), phase1_bytes(root)
    lock_down(root / NEW_PO)  # a new file this user may not read (still locked by Excel?)
    out = zygote.run(root, user=NOBODY, settings=SETTINGS, run={"max_retries": 1})
    assert_told_and_safe(out, root, before, old_phase1, ("permission denied",))
    assert out.result is not None and out.result["overall_status"] == "partial_success"
    (error,) = errors_of(out.result)
    assert error["error_type"] == "FILE_READ_ERROR" and error["file"] == NEW_PO.name
    retries = [h for h in out.result["collector_result"]["healing_actions"]
               if h["action"] == "retry"]
    # permission denied is worth a retry (docs/behaviour.md, section 6), then it fails
    assert len(retries) == 1
    assert phase1_bytes(root) == old_phase1


def test_unreadable_source_folder_and_master_file_are_named(
    zygote: Zygote, nobody_plant: tuple[Path, Path]
) -> None:
    root, _ = nobody_plant
    before, old_phase1 = published_bytes(root), phase1_bytes(root)
    lock_down(root / ORDERS)
    os.chmod(root / ORDERS, 0o700)
    out = zygote.run(root, user=NOBODY, settings=SETTINGS)
    assert_told_and_safe(out, root, before, old_phase1, ("cannot list source folder",))
    assert out.result is not None and out.result["overall_status"] == "partial_success"
    os.chown(root / ORDERS, *NOBODY)
    master = root / STATIC / "itemInfo.xlsx"
    rename_value(root, "itemInfo", "itemName", row=2, suffix=" changed")
    settle(master)
    lock_down(master)
    out = zygote.run(root, user=NOBODY, settings=SETTINGS)
    assert out.result is not None and out.result["overall_status"] == "failed"
    (error,) = errors_of(out.result)
    assert (error["error_type"], error["file"]) == ("FILE_READ_ERROR", "itemInfo.xlsx")
    assert "permission denied" in error["message"]
    assert published_bytes(root) == before  # a failed Phase 2 publishes nothing
    assert "Traceback" not in out.log


# -- sources changing under a run (DPO_PAUSE_AT stops the run between open and read) ----------
@pytest.fixture
def plant(good: Path, tmp_path: Path) -> Path:
    root = copy(good, tmp_path / "plant")
    shutil.copy(root / ORDERS / "purchaseOrder_181201.xlsx", root / NEW_PO)
    set_cell(root / NEW_PO, 0, "poNo", "PO-NEW-1")
    return root


def paused(zygote: Zygote, root: Path, point: str, tmp: Path, **kw: Any) -> tuple[Any, Path]:
    folder = tmp / "pause"
    job = zygote.spawn(root, env=pause_env(point, folder), settings=SETTINGS, **kw)
    wait_for(folder / "paused")
    return job, folder


def test_source_deleted_while_it_is_read(zygote: Zygote, plant: Path, tmp_path: Path) -> None:
    before, old_phase1 = published_bytes(plant), phase1_bytes(plant)
    job, folder = paused(zygote, plant, f"read:{NEW_PO.name}", tmp_path)
    (plant / NEW_PO).unlink()
    release(folder)
    out = zygote.wait(job)
    assert_told_and_safe(out, plant, before, old_phase1, ("file not found",))
    assert out.result is not None and out.result["overall_status"] == "partial_success"
    (error,) = errors_of(out.result)
    assert (error["error_type"], error["file"]) == ("FILE_NOT_FOUND", NEW_PO.name)
    assert phase1_bytes(plant) == old_phase1
    result = run_here(plant)  # the file is gone for good: the next run is simply clean
    assert result["overall_status"] == "success"
    assert published_bytes(plant) == before


@pytest.mark.parametrize("keep_mtime", [False, True])
def test_source_replaced_while_it_is_read_is_reread_whole(
    zygote: Zygote, plant: Path, tmp_path: Path, keep_mtime: bool
) -> None:
    """Replaced between the reader's passes (a copy with `cp -p` keeps even the mtime): the
    run must not mix the two files; it notices, retries, and reads the new one whole."""
    replacement = tmp_path / "replacement.xlsx"
    shutil.copy(plant / NEW_PO, replacement)
    set_cell(replacement, 3, "itemQuantity", 777_000)
    expected = copy(plant, tmp_path / "expected")
    shutil.copy(replacement, expected / NEW_PO)
    run_here(expected)
    old = plant / NEW_PO
    st = old.stat()
    job, folder = paused(zygote, plant, f"read:{NEW_PO.name}", tmp_path, run={"max_retries": 1})
    staged = old.with_name(".incoming")
    shutil.copy(replacement, staged)
    if keep_mtime:
        os.utime(staged, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(staged, old)
    release(folder)
    out = zygote.wait(job)
    assert out.result is not None and out.result["overall_status"] == "success", out.log[-3000:]
    retries = [h for h in out.result["collector_result"]["healing_actions"]
               if h["action"] == "retry"]
    assert len(retries) == 1 and "changed while it was read" in retries[0]["detail"]
    assert phase1_hashes(plant) == phase1_hashes(expected)
    assert hashes(plant) == hashes(expected)


def test_source_overwritten_in_place_while_read_is_retried_not_failed(
    zygote: Zygote, plant: Path, tmp_path: Path
) -> None:
    """A writer rewriting the file in place (growing it) under the reader's open handle."""
    grown = tmp_path / "grown.xlsx"
    shutil.copy(plant / NEW_PO, grown)
    sheet, header, rows = read_book(grown)
    write_xlsx(grown, sheet, header, [*rows, [*rows[0][:1], "PO-GROWN", *rows[0][2:]]])
    job, folder = paused(zygote, plant, f"read:{NEW_PO.name}", tmp_path, run={"max_retries": 2})
    with open(plant / NEW_PO, "r+b") as handle:  # in place: same inode, the reader's handle
        handle.write(grown.read_bytes())
    release(folder)
    out = zygote.wait(job)
    assert out.result is not None and out.result["overall_status"] == "success", out.log[-3000:]
    assert any(h["action"] == "retry" for h in out.result["collector_result"]["healing_actions"])
    orders = read_verified(plant / PHASE1 / "purchaseOrders.parquet").column("poNo").to_pylist()
    assert "PO-GROWN" in orders


def test_source_still_being_copied_is_read_once_complete(
    zygote: Zygote, plant: Path, tmp_path: Path
) -> None:
    """The file is a truncated prefix (fresh mtime) when the run starts; the copy completes
    while the run waits between retries: the run reads it whole and succeeds."""
    full = (plant / NEW_PO).read_bytes()
    (plant / NEW_PO).write_bytes(full[: len(full) // 2])
    job = zygote.spawn(plant, settings=SETTINGS, run={"max_retries": 3})
    deadline = time.monotonic() + 20
    while "retry 1/3" not in (job.log.read_text(encoding="utf-8") if job.log.exists() else ""):
        assert time.monotonic() < deadline, "the run never retried the half-copied file"
        time.sleep(0.01)
    (plant / NEW_PO).write_bytes(full)
    out = zygote.wait(job)
    assert out.result is not None and out.result["overall_status"] == "success", out.log[-3000:]
    orders = read_verified(plant / PHASE1 / "purchaseOrders.parquet").column("poNo").to_pylist()
    assert "PO-NEW-1" in orders
    # Only the retry that read the whole file worked; any before it failed (issue #19, 3).
    retried = [h["success"] for h in out.result["collector_result"]["healing_actions"]
               if h["action"] == "retry"]
    assert retried and retried[-1] and not any(retried[:-1])


def test_source_that_never_finishes_copying_fails_after_retries(
    zygote: Zygote, plant: Path
) -> None:
    before, old_phase1 = published_bytes(plant), phase1_bytes(plant)
    full = (plant / NEW_PO).read_bytes()
    (plant / NEW_PO).write_bytes(full[: len(full) // 3])  # fresh, truncated, and it stays so
    out = zygote.run(plant, settings=SETTINGS, run={"max_retries": 1})
    assert_told_and_safe(out, plant, before, old_phase1, ("still being copied",))
    assert out.result is not None and out.result["overall_status"] == "partial_success"
    (error,) = errors_of(out.result)
    assert (error["error_type"], error["file"]) == ("FILE_READ_ERROR", NEW_PO.name)
    assert phase1_bytes(plant) == old_phase1
    assert [(h["action"], h["success"]) for h in out.result["collector_result"]
            ["healing_actions"]] == [("retry", False), ("rollback", True)]


# -- two runs at once --------------------------------------------------------------------------
def holder_pid(folder: Path) -> int:
    return int(wait_for(folder / "paused").split()[0])


def test_second_run_exits_at_once_naming_the_holder(
    zygote: Zygote, plant: Path, tmp_path: Path
) -> None:
    job, folder = paused(zygote, plant, "ledger:start", tmp_path)
    pid = holder_pid(folder)
    second = dpo("run", "--root", plant, "--no-notify")
    assert second.returncode == 4, second.stderr
    assert (plant / ORCH / ".dpo.store.lock.json").exists()  # it returned while the holder runs on
    holder = json.loads((plant / ORCH / ".dpo.store.lock.json").read_text(encoding="utf-8"))
    assert f"pid {pid}, started {holder['started_at']}" in second.stderr
    assert "Traceback" not in second.stderr
    release(folder)
    out = zygote.wait(job)
    assert out.result is not None and out.result["overall_status"] == "success"


def test_second_run_with_wait_runs_after_the_first(
    zygote: Zygote, plant: Path, tmp_path: Path
) -> None:
    job, folder = paused(zygote, plant, "publish:annotations:written", tmp_path)
    with ThreadPoolExecutor(1) as pool:
        second = pool.submit(dpo, "run", "--root", plant, "--no-notify", "--wait", "30", "--json")
        time.sleep(1.5)
        assert not second.done()  # it waits for the lock
        release(folder)
        first = zygote.wait(job)
        done = second.result(timeout=60)
    assert first.result is not None and first.result["overall_status"] == "success"
    assert done.returncode == 0, done.stderr
    after = json.loads(done.stdout)
    assert after["loader_result"]["tables_created"] == 0  # the first run published already
    runs = Ledger(plant / ORCH / "runs.sqlite").runs()
    assert [r["state"] for r in runs[:2]] == ["finished", "finished"]


def test_a_lock_left_by_a_killed_run_never_blocks(
    zygote: Zygote, plant: Path, tmp_path: Path
) -> None:
    job, folder = paused(zygote, plant, "publish:write:purchaseOrders:written", tmp_path)
    pid = holder_pid(folder)
    kill9(pid)
    assert zygote.wait(job).code == -9
    assert (plant / ORCH / ".dpo.store.lock.json").exists()  # the dead holder's note is still there
    result = run_here(plant, lock_timeout=0)  # no wait: a stale lock must not make it fail
    assert result["overall_status"] == "success"
    assert temp_files(plant) == []
    runs = Ledger(plant / ORCH / "runs.sqlite").runs()
    assert [r["state"] for r in runs[:2]] == ["finished", "interrupted"]
    assert runs[1]["pid"] == pid
    published = assert_consistent(plant)  # newest/ holds exactly what the annotations name
    phase1 = phase1_hashes(plant)
    assert {t: published[t] for t in phase1} == phase1  # and it is this run's data


def test_source_replaced_after_it_was_read_is_read_again_by_the_next_run(
    zygote: Zygote, plant: Path, tmp_path: Path
) -> None:
    """Replaced after this run read it, before its cache entry is recorded: this run's data is
    the old file's (consistently); the next run must see the new file, not the cached rows."""
    set_cell(plant / NEW_PO, 3, "itemQuantity", 555_000)
    replacement = tmp_path / "replacement.xlsx"
    stored(plant / NEW_PO, plant / NEW_PO)  # uncompressed: a changed digit keeps the size
    stored(plant / NEW_PO, replacement, (b"<v>555000</v>", b"<v>555001</v>"))
    assert replacement.stat().st_size == (plant / NEW_PO).stat().st_size
    value = 555_001
    job, folder = paused(zygote, plant, "cache:rows:written", tmp_path)
    staged = (plant / NEW_PO).with_name(".incoming")
    shutil.copy(replacement, staged)
    os.replace(staged, plant / NEW_PO)
    release(folder)
    out = zygote.wait(job)
    assert out.result is not None and out.result["overall_status"] == "success"
    result = run_here(plant)
    assert result["overall_status"] == "success"
    quantities = read_verified(plant / PHASE1 / "purchaseOrders.parquet").column(
        "itemQuantity").to_pylist()
    assert value in quantities


def stored(src: Path, dst: Path, change: tuple[bytes, bytes] | None = None) -> None:
    """Rewrite a workbook uncompressed, optionally replacing bytes in its sheet once."""
    with zipfile.ZipFile(src) as archive:
        parts = {i.filename: archive.read(i) for i in archive.infolist()}
    if change is not None:
        sheet = parts["xl/worksheets/sheet1.xml"]
        assert sheet.count(change[0]) == 1
        parts["xl/worksheets/sheet1.xml"] = sheet.replace(*change)
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as archive:
        for name, data in parts.items():
            archive.writestr(zipfile.ZipInfo(name, (2000, 1, 1, 0, 0, 0)), data)

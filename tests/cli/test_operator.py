"""Issue #12, operator experience: what a plant engineer hits in the first hour (real `dpo`
subprocesses on real plants written by `dpo.demo.plant`)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from pipelinetools import (
    ANNOTATIONS,
    ORDERS,
    SHARED,
    Clock,
    dpo,
    every_file,
    http_receiver,
    make_plant,
    run,
    set_cell,
)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in every_file(folder)}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    make_plant(tmp_path / "plant")
    return tmp_path / "plant"


# -- 1. `dpo demo` never overwrites a real plant ----------------------------------------------

@pytest.mark.parametrize("where", ["target", "cwd-dot"])
def test_demo_refuses_a_folder_it_did_not_make_and_changes_nothing(root: Path,
                                                                   where: str) -> None:
    assert dpo("run", "--root", root, "--json").returncode == 0
    before = snapshot(root)

    done = (dpo("demo", root, "--months", "1", "--rows", "10") if where == "target"
            else dpo("demo", ".", "--months", "1", "--rows", "10", cwd=root))

    assert done.returncode == 2, done.stdout + done.stderr
    assert "not empty" in done.stderr and "nothing was written" in done.stderr
    assert "Traceback" not in done.stderr
    assert snapshot(root) == before


def test_demo_writes_into_a_new_or_empty_folder_and_again_into_its_own(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    first = dpo("demo", empty, "--months", "1", "--rows", "20")
    assert first.returncode == 0, first.stderr
    assert (empty / ".dpo-demo").is_file()
    again = dpo("demo", empty, "--months", "1", "--rows", "20")  # its own folder: allowed
    assert again.returncode == 0, again.stderr
    assert set(json.loads((empty / ANNOTATIONS).read_text(encoding="utf-8")))

    a_file = tmp_path / "file.txt"
    a_file.write_text("x", encoding="utf-8")
    assert dpo("demo", a_file).returncode == 2
    assert a_file.read_text(encoding="utf-8") == "x"


def test_demo_rejects_impossible_sizes_with_exit_2(tmp_path: Path) -> None:
    done = dpo("demo", tmp_path / "d", "--months", "0")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert not (tmp_path / "d").exists()


# -- 2. a manual rollback holds until the sources change or it is released --------------------

def _published_stamp(root: Path, table: str) -> str:
    stored = json.loads((root / ANNOTATIONS).read_text(encoding="utf-8"))[table]
    return Path(stored).name.split(f"_{table}")[0]


def _two_versions(root: Path) -> Path:
    """Publish purchaseOrders at 06:00 and, with one changed cell, at 06:05; the changed file."""
    clock = Clock(datetime(2024, 5, 2, 6, 0))
    run(root, clock=clock.at(6, 0))
    order = sorted((root / ORDERS).iterdir())[-1]
    set_cell(order, 2, "itemQuantity", 4242)
    run(root, clock=clock.at(6, 5))
    assert _published_stamp(root, "purchaseOrders") == "20240502_0605"
    return order


def _version_files(root: Path, table: str) -> list[str]:
    return sorted(p.name for p in (root / SHARED / "DataLoaderAgent").rglob(f"*_{table}.parquet"))


def test_a_rollback_holds_until_a_source_changes(root: Path) -> None:
    order = _two_versions(root)
    back = dpo("rollback", "purchaseOrders", "--to", "20240502_0600", "--root", root)
    assert back.returncode == 0, back.stderr
    assert "held until one of its sources changes" in back.stdout
    files = _version_files(root, "purchaseOrders")

    for _ in range(2):  # no source touched: the rollback holds, run after run, no new copy
        done = dpo("run", "--root", root, "--json")
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["loader_result"]["tables_created"] == 0
        assert _published_stamp(root, "purchaseOrders") == "20240502_0600"
        assert _version_files(root, "purchaseOrders") == files
    listed = json.loads(dpo("versions", "purchaseOrders", "--root", root, "--json").stdout)
    (current,) = [v for v in listed if v["current"]]
    assert current["version"] == "20240502_0600" and current["held_since"]
    health = json.loads(dpo("health", "--root", root, "--json").stdout)
    assert health["holds"]["purchaseOrders"]["version"] == "20240502_0600"
    assert "held: purchaseOrders at 20240502_0600 since" in dpo("health", "--root", root).stdout

    set_cell(order, 3, "itemQuantity", 777)  # a source changed: the hold ends, data published
    done = dpo("run", "--root", root, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["loader_result"]["tables_created"] == 1
    assert _published_stamp(root, "purchaseOrders") not in ("20240502_0600", "20240502_0605")
    assert json.loads(dpo("health", "--root", root, "--json").stdout)["holds"] == {}


def test_a_released_hold_lets_the_next_run_republish(root: Path) -> None:
    _two_versions(root)
    assert dpo("rollback", "purchaseOrders", "--to", "20240502_0600",
               "--root", root).returncode == 0
    assert dpo("run", "--root", root).returncode == 0
    assert _published_stamp(root, "purchaseOrders") == "20240502_0600"

    freed = dpo("rollback", "purchaseOrders", "--release", "--root", root)
    assert freed.returncode == 0, freed.stderr
    assert "released from 20240502_0600" in freed.stdout
    done = dpo("run", "--root", root, "--json")
    assert json.loads(done.stdout)["loader_result"]["tables_created"] == 1
    assert _published_stamp(root, "purchaseOrders") != "20240502_0600"
    again = dpo("run", "--root", root, "--json")  # and nothing more after that
    assert json.loads(again.stdout)["loader_result"]["tables_created"] == 0


# -- 7. unknown tables and versions are bad usage, and write nothing ---------------------------

def test_unknown_table_or_version_exits_2_naming_what_exists(root: Path) -> None:
    _two_versions(root)
    before = snapshot(root)

    wrong = dpo("versions", "purchaseOrder", "--root", root)
    assert wrong.returncode == 2
    assert "unknown table 'purchaseOrder' (did you mean 'purchaseOrders'?)" in wrong.stderr
    assert "tables: itemCompositionSummary, itemInfo" in wrong.stderr
    nope = dpo("rollback", "nope", "--to", "20240502_0600", "--root", root)
    assert nope.returncode == 2 and "unknown table 'nope'" in nope.stderr
    version = dpo("rollback", "purchaseOrders", "--to", "20240502_0601", "--root", root)
    assert version.returncode == 2
    assert ("no version 20240502_0601 of purchaseOrders; versions: 20240502_0600, "
            "20240502_0605") in version.stderr
    early = dpo("rollback", "--all", "--to", "20240101_0000", "--root", root)
    assert early.returncode == 2
    assert "no version at or before 20240101_0000" in early.stderr
    garbled = dpo("rollback", "--all", "--to", "yesterday", "--root", root)
    assert garbled.returncode == 2 and "version stamp" in garbled.stderr
    for done in (wrong, nope, version, early, garbled):
        assert "Traceback" not in done.stderr
    assert snapshot(root) == before  # not even a change-log block or a ledger row


# -- 3. <root>/dpo.toml is read; --config resolves against --root; no channel is said ---------

def _break_an_order(root: Path) -> None:
    set_cell(sorted((root / ORDERS).iterdir())[-1], 4, "itemQuantity", "lots")


@pytest.mark.parametrize("how", ["root-option", "cwd", "config-relative-to-root"])
def test_the_plants_dpo_toml_is_read_and_its_channel_fires(root: Path, tmp_path: Path,
                                                          how: str) -> None:
    assert dpo("run", "--root", root).returncode == 0
    _break_an_order(root)
    with http_receiver() as http:
        body = f'[dpo]\nnotify_urls = ["json://127.0.0.1:{http.port}/hooks/plant"]\n'
        if how == "config-relative-to-root":
            (root / "conf").mkdir()
            (root / "conf" / "alerts.toml").write_text(body, encoding="utf-8")
            done = dpo("run", "--root", root, "--config", "conf/alerts.toml", "-v",
                       cwd=tmp_path)
        else:
            (root / "dpo.toml").write_text(body, encoding="utf-8")
            done = (dpo("run", "--root", root, "-v", cwd=tmp_path) if how == "root-option"
                    else dpo("run", "-v", cwd=root))

    assert done.returncode == 3, done.stderr
    assert [r.path for r in http.requests] == ["/hooks/plant"]
    assert "itemQuantity" in http.requests[0].body["message"]
    assert "DEBUG" in done.stderr and "config file" in done.stderr
    assert "no notification channel is configured" not in done.stderr


def test_a_run_with_no_channel_says_once_where_notifications_went(root: Path) -> None:
    assert dpo("run", "--root", root).returncode == 0
    _break_an_order(root)

    done = dpo("run", "--root", root)

    assert done.returncode == 3
    warned = [line for line in done.stderr.splitlines()
              if "no notification channel is configured" in line]
    assert len(warned) == 1 and "WARNING" in warned[0]
    folder = root / SHARED / "DataPipelineOrchestrator" / "notifications"
    assert str(folder) in warned[0] and any(folder.iterdir())


# -- 6. read-only commands on a wrong --root: exit 2, nothing created --------------------------

@pytest.mark.parametrize("command", [["history"], ["metrics"], ["dashboard"],
                                     ["versions", "productRecords"], ["diff", "productRecords"]])
def test_commands_on_a_root_that_does_not_exist_exit_2_and_create_nothing(
        tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "no" / "plant"

    done = dpo(*command, "--root", missing)

    assert done.returncode == 2, done.stdout + done.stderr
    assert f"no plant at {missing}" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "no").exists()


def test_commands_on_a_folder_that_holds_no_plant_exit_2(tmp_path: Path) -> None:
    done = dpo("dashboard", "--root", tmp_path)
    assert done.returncode == 2 and "no plant at" in done.stderr
    assert list(tmp_path.iterdir()) == []


# -- 8. command-line values are checked as the config file's are -------------------------------

@pytest.mark.parametrize(("args", "says"), [
    (["--max-retries", "-1"], "max_retries must be 0..20, got -1"),
    (["--max-retries", "99"], "max_retries must be 0..20, got 99"),
    (["--wait", "-5"], "lock_timeout must not be negative"),
])
def test_out_of_range_command_line_values_exit_2_like_the_config_file(
        root: Path, args: list[str], says: str) -> None:
    done = dpo("run", "--root", root, *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr
    assert not (root / "agents").exists()

    (root / "dpo.toml").write_text("[dpo]\nmax_retries = 99\n", encoding="utf-8")
    from_file = dpo("run", "--root", root)
    assert from_file.returncode == 2 and "max_retries must be 0..20, got 99" in from_file.stderr


def test_the_api_checks_an_explicit_max_retries_too(root: Path) -> None:
    from dpo.errors import ConfigError
    from dpo.pipeline.orchestrator import DataPipelineOrchestrator

    with pytest.raises(ConfigError, match=r"max_retries must be 0\.\.20, got 21"):
        DataPipelineOrchestrator(root_dir=root).run_pipeline(max_retries=21)
    assert not (root / "agents").exists()


# -- 9. Ctrl-C: one line saying where the store is, and the ledger says interrupted ------------

@pytest.mark.parametrize("point", ["ledger:start", "read:purchaseOrder_181201.xlsx"])
def test_ctrl_c_says_where_the_store_is_and_records_the_run_interrupted(
        root: Path, tmp_path: Path, point: str) -> None:
    first = dpo("run", "--root", root, "--json")
    assert first.returncode == 0, first.stderr
    stamp = _published_stamp(root, "productRecords")
    before = (root / ANNOTATIONS).read_bytes()
    set_cell(sorted((root / ORDERS).iterdir())[-1], 2, "itemQuantity", 4242)  # work to do
    pause = tmp_path / "pause"
    env = {**os.environ, "NO_COLOR": "1", "DPO_PAUSE_AT": point, "DPO_PAUSE_DIR": str(pause),
           "DPO_PAUSE_TIMEOUT": "5"}
    env.pop("COLUMNS", None)
    proc = subprocess.Popen([sys.executable, "-m", "dpo.cli", "run", "--root", str(root)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (pause / "paused").exists() and proc.poll() is None:
            assert time.monotonic() < deadline, "the run never reached the pause point"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()

    assert proc.returncode == 130, out + err
    lines = [line for line in err.splitlines() if line.startswith("interrupted")]
    assert lines == [f"interrupted; the store is unchanged at {root / ANNOTATIONS} (newest "
                     f"version {stamp})"], err
    assert "Traceback" not in err
    assert (root / ANNOTATIONS).read_bytes() == before
    (last, *_) = json.loads(dpo("history", "--root", root, "--json").stdout)
    assert last["state"] == "interrupted" and last["overall_status"] == "interrupted"
    assert last["finished_at"]
    health = json.loads(dpo("health", "--root", root, "--json").stdout)
    assert health["service_status"] == "degraded"
    assert any("ended interrupted" in reason for reason in health["reasons"])
    after = dpo("run", "--root", root, "--json")  # and the next run goes through
    assert after.returncode == 0 and json.loads(after.stdout)["overall_status"] == "success"


# -- 10. manual rollbacks are recorded (history, ledger) and counted (metrics) -----------------

def test_manual_rollbacks_are_in_history_and_metrics(root: Path) -> None:
    _two_versions(root)  # two runs, no rollback in either
    assert dpo("rollback", "purchaseOrders", "--to", "20240502_0600",
               "--root", root).returncode == 0
    assert dpo("rollback", "purchaseOrders", "--release", "--root", root).returncode == 0

    records = json.loads(dpo("history", "--root", root, "--json").stdout)
    assert [r["kind"] for r in records] == ["manual_release", "manual_rollback", "run", "run"]
    back = records[1]
    assert (back["table"], back["from"], back["to"]) == (
        "purchaseOrders", "20240502_0605", "20240502_0600")
    assert back["command"] == "dpo rollback purchaseOrders --to 20240502_0600 --root " + str(root)
    assert back["user"]
    table = dpo("history", "--root", root).stdout
    assert "manual actions (dpo rollback)" in table
    (line,) = [ln for ln in table.splitlines() if "│ rollback " in ln]
    assert "purchaseOrders" in line and "20240502_0605" in line and "20240502_0600" in line

    metrics = json.loads(dpo("metrics", "--root", root, "--json").stdout)
    assert metrics["rollbacks"]["manual"] == 1 and metrics["rollbacks"]["total"] == 1
    assert metrics["rollback_frequency"] == pytest.approx(1 / 3)  # 2 runs + 1 manual rollback
    prom = dpo("metrics", "--root", root, "--prometheus").stdout
    assert 'dpo_rollbacks{outcome="manual"} 1' in prom
    change_log = (root / SHARED / "DataLoaderAgent" / "change_log.txt").read_text("utf-8")
    assert "rolled back purchaseOrders from 20240502_0605 to 20240502_0600 (dpo rollback" in change_log


# -- 5. when Phase 2 fails, the other tables say they were not published ----------------------

def _break_a_master_table(root: Path) -> bytes:
    path = root / "database" / "staticDatabase" / "moldInfo.xlsx"
    good = path.read_bytes()
    set_cell(path, 1, "moldCavityStandard", "abc")
    return good


def test_a_failed_phase_2_shows_the_other_tables_as_not_published(root: Path) -> None:
    good = _break_a_master_table(root)
    first = dpo("run", "--root", root, "--json")
    assert first.returncode == 1
    loader = json.loads(first.stdout)["loader_result"]
    others = [d for d in loader["details"] if d["table"] != "moldInfo"]
    assert others and all(d["status"] == "skipped" and not d["changed"] for d in others)
    assert all("not published: Phase 2 publishes every table or none, and moldInfo failed; it "
               "has never been published" in d["warnings"][0]["message"] for d in others)
    metrics = json.loads(dpo("metrics", "--root", root, "--json").stdout)
    assert all(t["rows"] is None for t in metrics["data_quality"]["tables"].values())
    page = (root / SHARED / "DataPipelineOrchestrator" / "dashboard.html").read_text("utf-8")
    assert "<b>productRecords</b> no rows" in page and "polyline" not in page

    (root / "database" / "staticDatabase" / "moldInfo.xlsx").write_bytes(good)
    assert dpo("run", "--root", root).returncode == 0
    current = Path(json.loads((root / ANNOTATIONS).read_text("utf-8"))["itemInfo"]).name
    _break_a_master_table(root)
    again = dpo("run", "--root", root)
    assert again.returncode == 1
    text = " ".join(again.stdout.split())
    assert "skipped" in text and f"the current version is still {current}" in text


# -- 14. the summary fits 80 columns; notes below it; short durations in seconds --------------

def test_the_run_summary_fits_80_columns_with_the_notes_below(root: Path) -> None:
    assert dpo("run", "--root", root).returncode == 0
    row = set_cell(sorted((root / ORDERS).iterdir())[-1], 4, "itemQuantity", "lots of them")

    done = dpo("run", "--root", root)  # a pipe: rich's default 80 columns, as in a cron mail

    assert done.returncode == 3
    lines = done.stdout.splitlines()
    table = [ln for ln in lines if ln[:1] in "┏┃┡│└"]
    assert table and all(len(ln) <= 80 for ln in table)
    for name, phases in (("productRecords", 2), ("purchaseOrders", 2),
                         ("moldSpecificationSummary", 1)):
        assert len([ln for ln in table if f" {name} " in ln]) == phases, name  # one line each
    after = lines[lines.index(table[-1]) + 1:]
    (note,) = [ln for ln in after if ln.startswith("collect purchaseOrders: ")]
    assert f"row {row}, column itemQuantity: 'lots of them'" in note
    (timing,) = [ln for ln in after if ln.startswith("collect ")
                 and " records · load " in ln]
    assert re.match(r"collect \d+\.\d s · \d+ files · [\d,]+ records · load \d+\.\d s · ", timing)
    assert "00:00:00" not in done.stdout


# -- 13. the subject names the plant and the failed tables; the body starts with the error ----

@pytest.mark.parametrize("plant_name", [None, "Plant B (Binh Duong)"])
def test_notification_subject_names_plant_and_tables_and_body_starts_with_the_error(
        root: Path, plant_name: str | None) -> None:
    assert dpo("run", "--root", root).returncode == 0
    row = set_cell(sorted((root / ORDERS).iterdir())[-1], 4, "itemQuantity", "lots")
    with http_receiver() as http:
        name = f'plant_name = "{plant_name}"\n' if plant_name else ""
        (root / "dpo.toml").write_text(
            f'[dpo]\n{name}notify_urls = ["json://127.0.0.1:{http.port}/hooks/x"]\n', "utf-8")
        assert dpo("run", "--root", root).returncode == 3

    (hook,) = http.requests
    assert hook.body["title"] == (f"Manual Review Required: DataCollector · "
                                  f"{plant_name or root} · failed: purchaseOrders")
    first = hook.body["message"].splitlines()[0]
    assert first.startswith("purchaseOrders: ") and "purchaseOrder_181201.xlsx [poList]" in first
    assert f"row {row}, column itemQuantity: 'lots'" in first


def test_a_rollback_on_a_plant_that_never_ran_creates_nothing(root: Path) -> None:
    done = dpo("rollback", "productRecords", "--to", "20240502_0600", "--root", root)
    assert done.returncode == 2 and "versions: none yet" in done.stderr
    assert not (root / "agents").exists()

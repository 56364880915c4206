"""The `dpo` command as a real subprocess: exit codes, JSON, one-line errors, the lock."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from pipelinetools import (
    ALL_TABLES,
    ANNOTATIONS,
    HISTORY,
    MONTHLY,
    NEWEST,
    ORCH,
    ORDERS,
    SHARED,
    Clock,
    dpo,
    every_file,
    free_port,
    http_receiver,
    make_plant,
    run,
    set_cell,
    smtp_receiver,
)

from dpo.store.local.lock import run_lock

BAD_MONTH = MONTHLY / "monthlyReports_201812.xlsb"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    make_plant(tmp_path / "plant")
    return tmp_path / "plant"


def error_line(stderr: str) -> str:
    """The single line a refused command prints; no traceback."""
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in every_file(folder)}


@pytest.mark.parametrize("command", [
    [sys.executable, "-m", "dpo.cli"], [str(Path(sys.executable).with_name("dpo"))],
], ids=["python-m", "script"])
def test_help_lists_commands_and_exit_codes(command: list[str]) -> None:
    if not Path(command[0]).exists():
        pytest.skip("no dpo script beside this python")
    done = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "NO_COLOR": "1"})

    assert done.returncode == 0, done.stderr
    for name in ("run", "validate", "health", "versions", "rollback", "demo"):
        assert re.search(rf"^\s+{name}\s", done.stdout, re.M), name
    text = " ".join(done.stdout.split())
    for code in ("0 success", "1 failed", "2 bad usage or configuration", "3 partial_success",
                 "4 another run holds the lock"):
        assert code in text


def test_run_exit_codes_follow_the_overall_status(root: Path) -> None:
    monthly = root / BAD_MONTH
    good = monthly.read_bytes()
    set_cell(monthly, 9, "itemTotalQuantity", "abc")
    failed = dpo("run", "--root", root, "--json")
    assert failed.returncode == 1, failed.stderr
    assert json.loads(failed.stdout)["overall_status"] == "failed"
    assert "Traceback" not in failed.stderr

    monthly.write_bytes(good)
    ok = dpo("run", "--root", root, "--json")
    assert ok.returncode == 0, ok.stderr
    result = json.loads(ok.stdout)
    assert result["overall_status"] == "success"
    assert result["loader_result"]["tables_created"] == len(ALL_TABLES)
    assert re.fullmatch(r"\d{2}:\d{2}:\d{2}", result["collector_result"]["execution_time"])

    set_cell(monthly, 9, "itemTotalQuantity", "abc")
    partial = dpo("run", "--root", root, "--json", "--no-notify")
    assert partial.returncode == 3, partial.stderr
    result = json.loads(partial.stdout)
    assert result["overall_status"] == "partial_success"
    assert [n["channel"] for n in result["notifications"]] == ["disabled"]

    table = dpo("run", "--root", root)  # the human summary names the status and the cell
    assert table.returncode == 3
    assert "partial_success" in table.stdout and "itemTotalQuantity" in table.stdout


@pytest.mark.parametrize(("args", "names"), [
    (["--schema", "database/nope.json"], ["nope.json", "not found"]),
    (["--default-dir", "../elsewhere"], ["default_dir", "escapes"]),
    (["--schema", "/etc/passwd"], ["databaseSchemas_path"]),
], ids=["missing-schema", "output-escapes-root", "schema-outside-root"])
def test_bad_configuration_exits_2_with_one_clear_line(root: Path, args: list[str],
                                                       names: list[str]) -> None:
    done = dpo("run", "--root", root, "--json", *args)

    assert done.returncode == 2
    line = error_line(done.stderr)
    for name in names:
        assert name in line
    assert done.stdout == ""
    assert not (root / "agents").exists() and not (root.parent / "elsewhere").exists()


def test_invalid_schema_content_exits_2_naming_each_problem(root: Path) -> None:
    schema = root / "database" / "databaseSchemas.json"
    body = json.loads(schema.read_text(encoding="utf-8"))
    body["dynamicDB"]["productRecords"]["dtypes"]["moldShot"] = "Int99"
    del body["staticDB"]["itemInfo"]["path"]
    schema.write_text(json.dumps(body), encoding="utf-8")

    done = dpo("run", "--root", root)

    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "productRecords" in done.stderr and "Int99" in done.stderr
    assert "itemInfo" in done.stderr and "path" in done.stderr
    assert not (root / "agents").exists()


def test_validate_reports_bad_cells_with_file_row_column_and_writes_nothing(root: Path) -> None:
    clean = dpo("validate", "--root", root)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert " error " not in clean.stdout

    row = set_cell(root / BAD_MONTH, 9, "itemTotalQuantity", "abc")
    order = sorted((root / ORDERS).iterdir())[-1]
    order_row = set_cell(order, 4, "itemQuantity", "lots")
    before = snapshot(root)

    done = dpo("validate", "--root", root)

    assert done.returncode == 1
    out = " ".join(done.stdout.split())
    assert (f"monthlyReports_201812.xlsb [Sheet1] row {row}, column itemTotalQuantity: 'abc'"
            in out)
    assert f"{order.name} [poList] row {order_row}, column itemQuantity: 'lots'" in out
    assert "Traceback" not in done.stderr
    assert snapshot(root) == before and not (root / "agents").exists()


def test_health_json_before_and_after_a_run(root: Path) -> None:
    before = dpo("health", "--root", root, "--json")
    report = json.loads(before.stdout)
    assert before.returncode == 1  # degraded: nothing published yet
    assert report["service_status"] == "degraded" and report["last_run"] is None
    assert report["disk_space"]["enough_for_run"] is True

    assert dpo("run", "--root", root, "--json").returncode == 0
    after = dpo("health", "--root", root, "--json")
    report = json.loads(after.stdout)
    assert after.returncode == 0, report
    assert report["service_status"] == "healthy" and report["paths_accessible"] is True
    assert report["last_run"]["status"] == "success"
    assert report["write_permission"] is True
    datetime.fromisoformat(report["last_run"]["started_at"])


def test_versions_and_rollback(root: Path) -> None:
    clock = Clock(datetime(2024, 5, 2, 6, 0))
    run(root, clock=clock.at(6, 0))
    set_cell(root / BAD_MONTH, 3, "itemTotalQuantity", 424_242)  # a valid change
    run(root, clock=clock.at(6, 5))

    listed = dpo("versions", "productRecords", "--root", root, "--json")
    assert listed.returncode == 0, listed.stderr
    versions = json.loads(listed.stdout)
    assert [(v["version"], v["current"]) for v in versions] == [
        ("20240502_0600", False), ("20240502_0605", True)]
    assert all(v["rows"] == 120 for v in versions)

    back = dpo("rollback", "productRecords", "--root", root, "--to", "20240502_0600")
    assert back.returncode == 0, back.stderr
    assert "productRecords: now at 20240502_0600" in back.stdout

    versions = json.loads(dpo("versions", "productRecords", "--root", root, "--json").stdout)
    assert [(v["version"], v["current"]) for v in versions] == [
        ("20240502_0600", True), ("20240502_0605", False)]
    annotations = json.loads((root / ANNOTATIONS).read_text(encoding="utf-8"))
    assert annotations["productRecords"].endswith("newest/20240502_0600_productRecords.parquet")
    assert (root / SHARED / "DataLoaderAgent" / "historical_db"
            / "20240502_0605_productRecords.parquet").is_file()

    missing = dpo("rollback", "productRecords", "--root", root, "--to", "19990101_0000")
    assert missing.returncode == 2  # bad usage (#12 item 7): the versions are listed
    assert ("no version 19990101_0000 of productRecords; versions: 20240502_0600, "
            "20240502_0605" in error_line(missing.stderr))
    unknown = dpo("versions", "noSuchTable", "--root", root, "--json")
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert "unknown table 'noSuchTable'" in error_line(unknown.stderr)


def test_demo_builds_a_plant_runs_it_and_prints_a_summary(tmp_path: Path) -> None:
    target = tmp_path / "demo"
    done = dpo("demo", target, "--months", "2", "--rows", "60")

    assert done.returncode == 0, done.stderr
    assert re.search(r"demo plant: 2 monthly reports, \d+ purchase-order files, 6 master tables",
                     done.stdout)
    assert "dpo run: success" in done.stdout and "productRecords" in done.stdout
    annotations = json.loads((target / ANNOTATIONS).read_text(encoding="utf-8"))
    assert set(annotations) == set(ALL_TABLES)


def test_a_second_run_while_the_lock_is_held_exits_4_naming_the_holder(root: Path) -> None:
    with run_lock(root / ORCH):
        done = dpo("run", "--root", root, "--json")

    assert done.returncode == 4
    line = error_line(done.stderr)
    assert f"pid {os.getpid()}" in line and "--wait" in line
    assert done.stdout == ""
    assert not (root / NEWEST).exists() and not (root / ANNOTATIONS).exists()
    # Released: the next run goes through.
    assert dpo("run", "--root", root, "--json").returncode == 0


SMTP_PASSWORD = "cli-Sm7p-S3CRET"
WEBHOOK_TOKEN = "cli-h00k-T0KEN"
DEAD_TOKEN = "cli-d3ad-T0KEN"


def test_run_with_real_channels_from_a_config_file_leaks_no_secret(root: Path,
                                                                   tmp_path: Path) -> None:
    assert dpo("run", "--root", root, "--json").returncode == 0
    row = set_cell(root / BAD_MONTH, 9, "itemTotalQuantity", "abc")
    dead = free_port()
    with smtp_receiver("dpo", SMTP_PASSWORD) as smtp, http_receiver() as http:
        urls = [f"mailto://dpo:{SMTP_PASSWORD}@127.0.0.1:{smtp.port}"
                "?from=dpo@plant.example&to=ops@plant.example&mode=insecure",
                f"json://127.0.0.1:{http.port}/hooks/{WEBHOOK_TOKEN}",
                f"json://127.0.0.1:{dead}/hooks/{DEAD_TOKEN}"]
        config = tmp_path / "dpo.toml"  # outside the root: it holds the secrets
        config.write_text("[dpo]\nnotify_urls = [" + ", ".join(json.dumps(u) for u in urls)
                          + "]\n", encoding="utf-8")
        done = dpo("run", "--root", root, "--config", config, "--json")

    assert done.returncode == 3, done.stderr  # partial_success, dead channel or not
    result = json.loads(done.stdout)
    (outcome,) = result["notifications"]
    assert outcome["sent"] is False and f"127.0.0.1:{dead}/***" in outcome["error"]
    (mail,) = smtp.messages
    assert mail["Subject"] == f"Manual Review Required: DataCollector · {root} · failed: productRecords"
    assert f"{row}" in mail.get_body(preferencelist=("plain",)).get_content()
    (hook,) = http.requests
    assert hook.path == f"/hooks/{WEBHOOK_TOKEN}" and "itemTotalQuantity" in hook.body["message"]
    assert "📧" in done.stderr and "❌" in done.stderr  # the logs were really captured

    for secret in (SMTP_PASSWORD, WEBHOOK_TOKEN, DEAD_TOKEN):
        assert secret not in done.stdout and secret not in done.stderr
        for path in every_file(root):
            assert secret.encode() not in path.read_bytes(), f"{secret} in {path}"
    assert (root / ORCH / "runs.sqlite").is_file()
    assert len(list((root / HISTORY).iterdir())) == 3

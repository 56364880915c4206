"""Security properties: paths that escape the root, symlinks out of the source folders,
decompression bombs, file modes of what a run writes, and secrets that must never be written.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pipelinetools import dpo as dpo_cli
from pipelinetools import free_port, http_receiver, set_cell
from reliabilitytools import (
    LOADER,
    MONTHLY,
    ORDERS,
    STATIC,
    Zygote,
    bomb_xlsx,
    errors_of,
    phase1_bytes,
    published_bytes,
    settle,
)
from storetools import annotations as read_annotations
from storetools import rename_value

from dpo.demo.plant import SCHEMA, generate_plant
from dpo.errors import ConfigError
from dpo.excel import files as excel
from dpo.notify.channels import MockNotificationHandler
from dpo.pipeline.health import pipeline_health_check
from dpo.pipeline.orchestrator import DataPipelineOrchestrator

PO = ORDERS / "purchaseOrder_181201.xlsx"


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("good") / "plant"
    generate_plant(root, months=2, rows_per_month=20, seed=13)
    assert run(root)["overall_status"] == "success"
    return root


@pytest.fixture
def plant(good: Path, tmp_path: Path) -> Path:
    root = tmp_path / "plant"
    shutil.copytree(good, root, symlinks=True)
    return root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the root, with a workbook and a schema the plant must never touch."""
    folder = tmp_path / "outside"
    folder.mkdir()
    return folder


def run(root: Path, **settings: Any) -> dict[str, Any]:
    result: dict[str, Any] = DataPipelineOrchestrator(
        root_dir=root, notification_handler=MockNotificationHandler(), **settings
    ).run_pipeline(max_retries=0)
    return result


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


# -- paths that escape the root -----------------------------------------------------------------
@pytest.mark.parametrize("setting, value", [
    ("databaseSchemas_path", "../outside/databaseSchemas.json"),
    ("databaseSchemas_path", "{outside}/databaseSchemas.json"),
    ("dynamic_db_source_dir", "../outside"),
    ("dynamic_db_source_dir", "database/../../outside"),
    ("default_dir", "{outside}"),
    ("default_dir", "agents/../../outside/out"),
    ("annotation_path", "../outside/path_annotations.json"),
    ("default_dir", "escape-link/out"),  # a symlink inside the root that leads out of it
])
def test_configured_paths_escaping_the_root_are_refused(
    plant: Path, outside: Path, setting: str, value: str
) -> None:
    (outside / "databaseSchemas.json").write_text(json.dumps(SCHEMA), encoding="utf-8")
    (plant / "escape-link").symlink_to(outside, target_is_directory=True)
    before, seen = published_bytes(plant), snapshot(outside)
    with pytest.raises(ConfigError) as caught:
        run(plant, **{setting: value.format(outside=outside)})
    assert setting in caught.value.message and "escapes the root directory" in caught.value.message
    assert published_bytes(plant) == before and snapshot(outside) == seen


@pytest.mark.parametrize("how", ["config file", "environment"])
def test_escaping_paths_from_config_file_or_environment_are_refused(
    plant: Path, outside: Path, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = plant / "dpo.toml"
    if how == "config file":
        config.write_text(f'[dpo]\ndefault_dir = "{outside}/agents"\n', encoding="utf-8")
    else:
        config.write_text("[dpo]\n", encoding="utf-8")
        monkeypatch.setenv("DPO_DEFAULT_DIR", "../outside/agents")
    result = dpo_cli("run", "--root", plant, "--config", config, "--no-notify")
    assert result.returncode == 2, result.stderr
    assert "default_dir" in result.stderr and "escapes the root directory" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("section, table, value", [
    ("dynamicDB", "purchaseOrders", "../outside"),
    ("dynamicDB", "productRecords", "/etc"),
    ("staticDB", "itemInfo", "/etc/passwd"),
    ("staticDB", "resinInfo", "database/staticDatabase/../../../outside/resineInfo.xlsx"),
    ("staticDB", "machineInfo", "database/staticDatabase/link-out.xlsx"),  # symlink out
])
def test_schema_paths_escaping_the_root_are_refused_before_anything_is_read(
    plant: Path, outside: Path, section: str, table: str, value: str
) -> None:
    shutil.copy(plant / STATIC / "machineInfo.xlsx", outside / "machineInfo.xlsx")
    (plant / STATIC / "link-out.xlsx").symlink_to(outside / "machineInfo.xlsx")
    schema_path = plant / "database" / "databaseSchemas.json"
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    schema[section][table]["path"] = value
    schema_path.write_text(json.dumps(schema), encoding="utf-8")
    before = published_bytes(plant), phase1_bytes(plant)
    result = run(plant)  # a schema edited between two runs: a recorded failure, not a raise
    assert result["overall_status"] == "failed"
    (error,) = result["collector_result"]["errors"]
    assert error["error_type"] == "CONFIG_ERROR" and error["table"] == table
    assert f"{section}.{table}.path" in error["message"] and "escapes the root" in error["message"]
    assert (published_bytes(plant), phase1_bytes(plant)) == before  # no data touched
    assert pipeline_health_check(root_dir=str(plant))["last_run"]["status"] == "failed"


def test_annotations_pointing_outside_the_root_are_never_moved_or_deleted(
    plant: Path, outside: Path
) -> None:
    """A hand-edited annotations file may point anywhere; the store only ever archives files
    that are in its own newest/ folder."""
    notes = read_annotations(plant)
    victim = outside / "itemInfo.parquet"
    shutil.copy(plant / notes["itemInfo"], victim)
    kept = victim.read_bytes()
    notes["itemInfo"] = str(victim)
    (plant / LOADER / "newest" / "path_annotations.json").write_text(json.dumps(notes),
                                                                      encoding="utf-8")
    rename_value(plant, "itemInfo", "itemName", row=0, suffix=" changed")
    result = run(plant)
    assert result["overall_status"] == "success"
    assert victim.read_bytes() == kept  # neither moved, nor deleted, nor rewritten
    assert read_annotations(plant)["itemInfo"].startswith("agents/")  # a new version, inside


# -- symlinks in source folders ------------------------------------------------------------------
@pytest.mark.parametrize("target", ["outside the root", "inside the root, outside the folder"])
def test_symlinked_source_pointing_out_of_its_folder_is_refused(
    plant: Path, outside: Path, target: str
) -> None:
    if target == "outside the root":
        aim = outside / "orders.xlsx"
        shutil.copy(plant / PO, aim)
        set_cell(aim, 0, "poNo", "PO-FROM-OUTSIDE")
    else:
        aim = plant / STATIC / "itemInfo.xlsx"
    link = plant / ORDERS / "purchaseOrder_190101.xlsx"
    link.symlink_to(aim)
    before, before_phase1 = published_bytes(plant), phase1_bytes(plant)
    result = run(plant)
    assert result["overall_status"] == "partial_success"
    (error,) = errors_of(result)
    assert (error["error_type"], error["file"]) == ("FILE_READ_ERROR", link.name)
    assert "symlink points outside the source folder; refused" in error["message"]
    assert published_bytes(plant) == before and phase1_bytes(plant) == before_phase1


def test_symlink_within_the_source_folder_is_read(plant: Path) -> None:
    alias = plant / ORDERS / "purchaseOrder_190101.xlsx"
    alias.symlink_to(plant / PO)  # the same rows again: removed as exact duplicates
    result = run(plant)
    assert result["overall_status"] == "success"
    (orders,) = [t for t in result["collector_result"]["details"]
                 if t["table"] == "purchaseOrders"]
    assert alias.name in orders["files"] and orders["duplicates_removed"] > 0


def test_symlinked_source_folder_leading_out_of_the_root_is_refused(
    plant: Path, outside: Path
) -> None:
    shutil.move(plant / MONTHLY, outside / "reports")
    (plant / MONTHLY).symlink_to(outside / "reports", target_is_directory=True)
    result = run(plant)
    assert result["overall_status"] == "failed"
    (error,) = result["collector_result"]["errors"]
    assert "dynamicDB.productRecords.path" in error["message"]


# -- decompression bombs -------------------------------------------------------------------------
@pytest.mark.parametrize("where", [PO, MONTHLY / "monthlyReports_201812.xlsb",
                                   STATIC / "itemInfo.xlsx"])
def test_decompression_bomb_is_refused_fast_without_inflating(plant: Path, where: Path) -> None:
    """3 GiB of zeros in a ~3 MB file, in a dynamic .xlsx, a .xlsb and a master table: refused
    from the zip directory, in well under a second of work and without the memory to hold it."""
    target = plant / where
    bomb_xlsx(target.with_name("bomb.tmp"), target, 3 << 30)
    os.replace(target.with_name("bomb.tmp"), target)
    settle(target)
    before = published_bytes(plant)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = run(plant)  # refused from the zip directory: memory shows nothing was inflated
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mib < 300, f"memory grew by {grown_mib:.0f} MiB"
    (error,) = errors_of(result)
    assert error["error_type"] == "FILE_READ_ERROR" and error["file"] == where.name
    assert "decompression bomb" in error["message"] and "unpacks to 3,221," in error["message"]
    assert result["overall_status"] == ("failed" if where.parent == STATIC else "partial_success")
    assert published_bytes(plant) == before


def test_decompression_bomb_ratio_limit(plant: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The ratio rule on its own: 32 MiB of zeros (size well within bounds) at a lowered limit,
    and the same file accepted at the default one (where its ~500:1 ratio is plausible)."""
    target, template = plant / PO, tmp_path / "template.xlsx"
    shutil.copy(target, template)
    bomb_xlsx(target, template, 32 << 20)
    settle(target)
    assert run(plant)["overall_status"] == "success"  # an odd but harmless extra part
    monkeypatch.setattr(excel, "MAX_PACK_RATIO", 100)
    bomb_xlsx(target, template, 48 << 20)  # another file: it must be read again
    settle(target)
    result = run(plant)
    (error,) = errors_of(result)
    assert "decompression bomb" in error["message"] and "ratio" in error["message"]


# -- file modes --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zygote]:
    z = Zygote(tmp_path_factory.mktemp("zygote"))
    yield z
    z.close()


def modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.lstat().st_mode)
            for p in sorted((root / "agents").rglob("*"))}


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_outputs_and_notifications_get_sensible_modes(
    zygote: Zygote, plant: Path, umask: int
) -> None:
    """Whatever the umask: nothing a run writes is world-writable, data files are never
    writable by others, and notifications (they quote plant data) are private (0600)."""
    set_cell(plant / PO, 1, "itemQuantity", "abc")  # a failure: notifications are written
    out = zygote.run(plant, umask=umask)  # default handler: notification files
    assert out.result is not None and out.result["overall_status"] == "partial_success"
    found = modes(plant)
    notes = [p for p in found if "/notifications/" in p and p.endswith(".txt")]
    assert notes, "no notification file written"
    for path, mode in found.items():
        assert not mode & stat.S_IWOTH, (path, oct(mode))
        if path.endswith((".parquet", ".txt", ".json", ".prom", ".html", ".sqlite")):
            assert not mode & (stat.S_IWGRP | stat.S_IWOTH), (path, oct(mode))
    for path in notes:
        assert found[path] == 0o600, (path, oct(found[path]))
    for path in (p for p in found if p.endswith(".parquet")):
        assert found[path] & 0o600 == 0o600  # the owner reads and rewrites them


# -- secrets -----------------------------------------------------------------------------------
PASSWORD = "Pw-7Hq2xZr9LkUe"
TOKEN = "tok-b81f0d3c9e"
QUERY_KEY = "qk-44a1c9f0e2"
ENCODED = "s%40fe-Ky8%2Fw"  # the password as it appears %-encoded in a URL: "s@fe-Ky8/w"
DEAD_PASSWORD = "Dead-Pw-30d9a1"
SECRETS = (PASSWORD, TOKEN, QUERY_KEY, "s@fe-Ky8/w", ENCODED, DEAD_PASSWORD)


def test_no_file_a_run_writes_and_no_log_line_holds_a_planted_secret(
    plant: Path, tmp_path: Path
) -> None:
    """Channel URLs with secrets (password, token in the path, key in the query, a %-encoded
    password, a dead channel's password) come from the config file and the environment; a real
    CLI run fails (so it notifies), one channel delivers, one is dead. Then every byte the run
    wrote, its stdout and its stderr are searched for every secret."""
    set_cell(plant / PO, 2, "itemQuantity", "abc")
    dead = free_port()
    config = tmp_path / "dpo.toml"  # outside the root: the only file that may hold them
    with http_receiver() as http:
        config.write_text(
            "[dpo]\nnotify_urls = [\n"
            f'  "json://dpo:{PASSWORD}@127.0.0.1:{http.port}/hooks/{TOKEN}?apikey={QUERY_KEY}",\n'
            f'  "json://ops:{DEAD_PASSWORD}@127.0.0.1:{dead}/hooks/x",\n]\n', encoding="utf-8")
        env = {"DPO_RECIPIENT": "plant-data-team"}
        first = dpo_cli("run", "--root", plant, "--config", config, "--json", env=env)
        env["DPO_NOTIFY_URLS"] = f"json://svc:{ENCODED}@127.0.0.1:{http.port}/hooks/{TOKEN}"
        second = dpo_cli("run", "--root", plant, "--config", config, "-v", env=env)
    assert first.returncode == 3 and second.returncode == 3, (first.stderr, second.stderr)
    assert len(http.requests) == 2  # delivered, both times
    assert http.requests[0].path.startswith(f"/hooks/{TOKEN}")
    result = json.loads(first.stdout)
    (outcome,) = result["notifications"]
    assert outcome["sent"] is False and "***" in outcome["error"]  # the dead channel, redacted
    written = [p for p in plant.rglob("*") if p.is_file() and "database" not in p.parts]
    assert len(written) > 20 and any(p.suffix == ".sqlite" for p in written)
    for path in written:
        data = path.read_bytes()
        for secret in SECRETS:
            assert secret.encode() not in data, f"{secret} in {path}"
    for stream in (first.stdout, first.stderr, second.stdout, second.stderr):
        for secret in SECRETS:
            assert secret not in stream, secret
    assert "127.0.0.1" in second.stderr  # the channels are named, only their secrets hidden

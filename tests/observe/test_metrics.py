"""`dpo metrics` and the after-run `.prom` file, from real runs that succeed, roll back and fail."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from promrules import naming_problems
from test_ledger import OUTPUT, STATES, cli, ledger_path, make_history, run

from dpo.config import load_settings, resolve_paths
from dpo.demo.plant import generate_plant
from dpo.observe.dashboard import publish_observability
from dpo.observe.ledger import Ledger
from dpo.observe.metrics import compute, parse_duration, prometheus_text

HEAVY = ("pandas", "pyarrow", "numpy", "prometheus_client", "jinja2")


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """failed, success, partial_success (rolled back), success."""
    root = tmp_path_factory.mktemp("metrics")
    return root, make_history(root, STATES)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition, parsed by prometheus_client's own parser."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(0.95 * len(ordered)) - 1]


def test_metrics_json_are_exactly_those_runs(history: tuple[Path, list[Any]]) -> None:
    root, results = history
    m = json.loads(cli("metrics", "--root", str(root), "--json").stdout)
    assert m["window"]["runs"] == 4
    assert m["runs_by_status"] == {"success": 2, "partial_success": 1, "failed": 1,
                                   "interrupted": 0}
    assert m["pipeline_success_rate"] == 0.5
    # Phase 1 failed twice in 4 runs; Phase 2 ran 3 times (skipped after the failed rollback).
    assert m["phase_success_rates"] == {"collector": 0.5, "loader": 1.0}
    assert m["phase_runs"]["loader"] == {"ran": 3, "succeeded": 3, "skipped": 1}
    assert m["rollback_frequency"] == 0.5
    assert m["rollbacks"] == {"runs_with_rollback": 2, "manual": 0, "total": 2, "failed": 1,
                              "succeeded": 1}
    sent = sum(n["sent"] for r in results for n in r["notifications"])
    assert sent == 3  # failed run: Phase 1 + skipped Phase 2; rolled-back run: Phase 1
    assert m["notification_triggers"] | {"by_component": None} == {
        "runs_with_notifications": 2, "rate": 0.5, "total": 3, "sent": 3, "failed": 0,
        "disabled": 0, "by_component": None}
    assert m["notification_triggers"]["by_component"]["DataCollector"]["sent"] == 2

    durations = [r["duration_seconds"] for r in results]
    total = m["processing_time"]["total"]
    assert total["count"] == 4 and total["latest"] == results[-1]["duration_seconds"]
    assert total["median"] == pytest.approx(statistics.median(durations))
    assert total["p95"] == p95(durations)
    loader = [r["loader_result"]["execution_seconds"] for r in results
              if r["loader_result"]["status"] != "skipped"]
    assert m["processing_time"]["loader"]["count"] == 3
    assert m["processing_time"]["loader"]["median"] == pytest.approx(statistics.median(loader))

    quality = m["data_quality"]
    published = {d["table"]: d["rows"] for d in results[-1]["loader_result"]["details"]}
    assert {t: v["rows"] for t, v in quality["tables"].items()} == published
    products = quality["tables"]["productRecords"]
    assert (products["failed_runs"], products["runs"]) == (2, 4)
    assert products["duplicates_removed"] == sum(
        d["duplicates_removed"] for r in results for key in ("collector_result", "loader_result")
        for d in r[key]["details"] if d["table"] == "productRecords")
    assert all(t["rows_rejected"] == 0 for t in quality["tables"].values())
    assert quality["errors_by_type"] == {"DATA_PROCESSING_ERROR": 2}
    assert quality["records_latest"] == results[-1]["collector_result"]["records_count"]
    assert m["last_run"]["overall_status"] == "success"


def test_prometheus_output_parses(history: tuple[Path, list[Any]]) -> None:
    root, _ = history
    text = cli("metrics", "--root", str(root), "--prometheus").stdout
    found = samples(text)
    assert found[("dpo_pipeline_success_ratio", ())] == 0.5
    assert found[("dpo_rollback_frequency_ratio", ())] == 0.5
    assert found[("dpo_runs", (("status", "failed"),))] == 1
    assert found[("dpo_runs", (("status", "partial_success"),))] == 1
    assert found[("dpo_phase_success_ratio", (("phase", "collector"),))] == 0.5
    assert found[("dpo_rollbacks", (("outcome", "failed"),))] == 1
    assert found[("dpo_run_duration_seconds_count", (("phase", "total"),))] == 4
    assert ("dpo_run_duration_seconds", (("phase", "total"), ("quantile", "0.95"))) in found
    assert found[("dpo_last_run_status", (("status", "success"),))] == 1
    assert found[("dpo_last_run_status", (("status", "failed"),))] == 0
    assert found[("dpo_table_rows", (("table", "productRecords"),))] == 80
    assert found[("dpo_errors", (("error_type", "DATA_PROCESSING_ERROR"),))] == 2
    assert found[("dpo_notifications", (("outcome", "sent"),))] == 3
    types = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert types["dpo_run_duration_seconds"] == "summary"


def test_every_family_is_named_as_prometheus_says(history: tuple[Path, list[Any]]) -> None:
    """Issue #19, item 8: `_total` only on counters, base units in names, a 0-1 fraction is
    a `_ratio`, summaries alone carry `_count`/`_sum` (the rules of `promtool check metrics`)."""
    root, _ = history
    text = cli("metrics", "--root", str(root), "--prometheus").stdout
    assert len(list(text_string_to_metric_families(text))) >= 15
    assert naming_problems(text) == []


def test_prom_file_is_written_after_each_run(history: tuple[Path, list[Any]]) -> None:
    root, _ = history
    prom = root / OUTPUT / "dpo.prom"
    cli_text = cli("metrics", "--root", str(root), "--prometheus").stdout
    file_values, cli_values = samples(prom.read_text()), samples(cli_text)
    assert file_values == cli_values  # the file covers the newest 200 runs: here, all of them
    assert not list(prom.parent.glob("*.tmp")) and not list(prom.parent.glob(".dpo-tmp-*"))


def test_prometheus_path_setting(tmp_path: Path) -> None:
    generate_plant(tmp_path, months=1, rows_per_month=20)
    run(tmp_path, prometheus_path="textfile/dpo.prom")
    values = samples((tmp_path / "textfile" / "dpo.prom").read_text())
    assert values[("dpo_runs", (("status", "success"),))] == 1
    assert not (tmp_path / OUTPUT / "dpo.prom").exists()


def test_since_window(tmp_path: Path) -> None:
    generate_plant(tmp_path, months=1, rows_per_month=20)
    run(tmp_path, clock=lambda: datetime.now() - timedelta(days=10))
    run(tmp_path)
    everything = json.loads(cli("metrics", "--root", str(tmp_path), "--json").stdout)
    week = json.loads(cli("metrics", "--root", str(tmp_path), "--json", "--since", "7d").stdout)
    assert everything["window"]["runs"] == 2 and week["window"]["runs"] == 1
    assert week["processing_time"]["total"]["count"] == 1
    assert json.loads(cli("metrics", "--root", str(tmp_path), "--json", "--since", "30m")
                      .stdout)["window"]["runs"] == 1
    assert "bad" in cli("metrics", "--root", str(tmp_path), "--since", "bad", expect=2).stderr
    cli("metrics", "--root", str(tmp_path), "--json", "--prometheus", expect=2)
    assert "pipeline success rate" in cli("metrics", "--root", str(tmp_path)).stdout


def test_parse_duration() -> None:
    assert [parse_duration(t) for t in ("30m", "24h", "7d", "90s", "2w", "1.5h")] == [
        1800, 86400, 604800, 90, 1209600, 5400]
    for bad in ("", "7", "d", "-1d", "0h", "7y", "7 days"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_metrics_of_an_empty_ledger(tmp_path: Path) -> None:
    (tmp_path / "database").mkdir()  # a plant that never ran
    (tmp_path / "database" / "databaseSchemas.json").write_text("{}", encoding="utf-8")
    m = json.loads(cli("metrics", "--root", str(tmp_path), "--json").stdout)
    assert m["window"]["runs"] == 0 and m["pipeline_success_rate"] is None
    assert m["processing_time"]["total"]["median"] is None and m["last_run"] is None
    found = samples(cli("metrics", "--root", str(tmp_path), "--prometheus").stdout)
    assert found[("dpo_runs", (("status", "success"),))] == 0
    assert ("dpo_pipeline_success_ratio", ()) not in found


def test_label_values_are_escaped() -> None:
    from dpo.observe.ledger import Snapshot

    m = compute(Snapshot(runs=[]))
    m["data_quality"]["tables"] = {'we"ird\\name\n': {
        "rows": 1, "duplicates_removed": 0, "rows_rejected": 0, "changed_runs": 0,
        "failed_runs": 0, "runs": 1}}
    found = samples(prometheus_text(m))
    assert found[("dpo_table_rows", (("table", 'we"ird\\name\n'),))] == 1


def _big_ledger(path: Path, result: dict[str, Any], runs: int) -> None:
    """`runs` finished runs, written through the ledger's own code (one connection: fast)."""
    ledger = Ledger(path)
    ledger.start("seed", datetime.now() - timedelta(days=400))
    start = datetime.now() - timedelta(minutes=15 * runs)
    for i in range(runs):
        began = start + timedelta(minutes=15 * i)
        ledger._start(f"run{i:04d}", began)
        ledger._finish(f"run{i:04d}", {**result, "started_at": began.isoformat()})
    ledger.close()


def test_after_run_work_is_cheap_with_1000_runs(history: tuple[Path, list[Any]],
                                                tmp_path: Path) -> None:
    """The ledger, .prom and dashboard after a run read a bounded window, fast, stdlib only."""
    _, results = history
    paths = resolve_paths(load_settings(root_dir=str(tmp_path)))
    _big_ledger(ledger_path(tmp_path), results[2], 1000)
    snap = Ledger(ledger_path(tmp_path)).snapshot(limit=200)
    assert len(snap.runs) == 200 and len(snap.table_stats) == 200
    publish_observability(paths, load_settings(root_dir=str(tmp_path)))  # its cost: bench/
    values = samples((paths.output_dir / "dpo.prom").read_text())
    assert values[("dpo_runs", (("status", "partial_success"),))] == 200
    assert (paths.output_dir / "dashboard.html").stat().st_size > 10_000


def test_after_run_work_imports_nothing_heavy(history: tuple[Path, list[Any]],
                                              tmp_path: Path) -> None:
    """Ledger writes, .prom and dashboard, in a fresh process: no pandas, pyarrow, numpy..."""
    _, results = history
    code = f"""
import json, sys
from datetime import datetime
from pathlib import Path
import dpo.cli.observe
from dpo.config import load_settings, resolve_paths
from dpo.observe.dashboard import publish_observability
from dpo.observe.ledger import Ledger
settings = load_settings(root_dir=sys.argv[1])
paths = resolve_paths(settings)
ledger = Ledger(paths.output_dir / "runs.sqlite")
ledger.start("one", datetime.now())
ledger.finish("one", json.loads(Path(sys.argv[2]).read_text()))
publish_observability(paths, settings, ledger)
assert (paths.output_dir / "dpo.prom").exists() and (paths.output_dir / "dashboard.html").exists()
print([m for m in {HEAVY!r} if m in sys.modules])
"""
    result = tmp_path / "result.json"
    result.write_text(json.dumps(results[2]))
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "root"), str(result)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"

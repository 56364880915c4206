"""`dpo serve` as a real process: real files written into the watched folders, real HTTP on
127.0.0.1, real signals. No wall-time asserts: every wait polls the service's state until a
deadline (tests/servetools.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from pipelinetools import (
    MONTHLY,
    NEWEST,
    ORCH,
    HttpSink,
    dpo,
    every_file,
    free_port,
    http_receiver,
    make_plant,
    set_cell,
)
from servetools import Served, copy_slowly, sample, serve
from storetools import assert_consistent, published_hashes

from dpo.demo.plant import write_monthly_report
from dpo.store.local.lock import run_lock

BAD_MONTH = MONTHLY / "monthlyReports_201812.xlsb"
TOKEN = "serve-T0ken-s3cret"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    make_plant(tmp_path / "plant")
    return tmp_path / "plant"


def new_report(tmp_path: Path, month: str, seed: int) -> Path:
    """A real monthly report written outside the watched folders (60 rows)."""
    staging = tmp_path / "staging"
    staging.mkdir(exist_ok=True)
    path = staging / f"monthlyReports_{month.replace('-', '')}.xlsb"
    write_monthly_report(path, month=month, n_rows=60, seed=seed)
    return path


def loader_rows(run: dict, table: str = "productRecords") -> int | None:
    found = [t["rows"] for t in run["tables"] if t["table"] == table and t["phase"] == "loader"]
    return found[0] if found else None


def versions(root: Path, table: str = "productRecords") -> list[dict]:
    done = dpo("versions", table, "--root", root, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_slowly_copied_report_makes_one_run_and_one_new_version(root: Path,
                                                                  tmp_path: Path) -> None:
    report = new_report(tmp_path, "2019-01", seed=11)
    with serve(root, settle=2.0) as served:
        state = served.idle_after(1)
        health = served.request("/health")
        assert health.status == 200, health.body
        body = health.json()
        assert body["service_status"] == "healthy" and body["last_run"]["status"] == "success"
        assert state["last_run"]["trigger"] == ["start"] and state["uptime_s"] > 0
        assert state["watch"]["folders"] == [str(root / "database")]
        assert state["next_run"] == {"follow_up_pending": False, "scheduled_at": None,
                                     "schedule": None}

        last_write = copy_slowly(report, root / MONTHLY / report.name)
        state = served.idle_after(2)

        runs = served.runs()
        assert [r["overall_status"] for r in runs] == ["success", "success"]
        assert [r["warnings_by_kind"] for r in runs] == [{}, {}]  # JSON objects, not text
        assert runs[0]["started_epoch"] >= last_write  # read only once it was complete
        assert state["last_run"]["trigger"] == [f"watch: {report.name}"]
        assert loader_rows(runs[0]) == 180
        assert [v["rows"] for v in versions(root)] == [120, 180]

        metrics = served.metrics()
        assert sample(metrics, "dpo_service_runs_total", outcome="success") == 2
        assert sample(metrics, "dpo_service_runs_total", outcome="failed") == 0
        assert sample(metrics, "dpo_service_run_requests_total", source="watch") == 1
        assert sample(metrics, "dpo_runs", status="success") == 2  # dpo metrics' families
        assert sample(metrics, "dpo_table_rows", table="productRecords") == 180
        assert sample(metrics, "dpo_run_duration_seconds_count", phase="total") == 2
        assert sample(metrics, "dpo_service_run_in_progress") == 0
        assert (sample(metrics, "process_resident_memory_bytes") or 0) > 0

        page = served.request("/")
        assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
        assert b"DataPipelineOrchestrator runs" in page.body and runs[0]["run_id"].encode() \
            in page.body
        (newest,) = served.runs(limit=1)
        assert newest["run_id"] == runs[0]["run_id"] and newest["tables"]
        for bad in ("0", "abc", "100000"):
            assert served.request(f"/runs?limit={bad}").status == 400
        assert served.request("/nope").status == 404
        assert served.request("/run", method="POST").status == 404  # no token: no endpoint

        assert served.stop(signal.SIGINT) == 0
    assert "dpo serve stopped" in served.log()
    # The log names what a run published (issue #19, 9): the first run all 8 tables.
    assert "published 1 new version (productRecords) as " in served.log()


def test_a_burst_of_five_reports_makes_one_or_two_runs(root: Path, tmp_path: Path) -> None:
    reports = [new_report(tmp_path, f"2019-0{i}", seed=20 + i) for i in range(1, 6)]
    with serve(root, settle=1.5) as served:
        served.idle_after(1)
        for report in reports:
            shutil.copyfile(report, root / MONTHLY / report.name)

        def all_in() -> list[dict] | None:
            runs = served.runs()
            return runs if loader_rows(runs[0]) == 120 + 5 * 60 else None

        runs = served.wait_for(all_in, "the five reports published")
        state = served.idle_after(len(runs))
        runs = served.runs()

    new_runs = runs[:-1]
    assert 1 <= len(new_runs) <= 2, [r["run_id"] for r in runs]
    assert all(r["overall_status"] == "success" for r in runs)
    assert state["runs_by_outcome"] == {"success": len(runs)}
    assert state["triggers"]["watch"] == len(new_runs)


def test_changes_during_a_run_make_exactly_one_follow_up_run(root: Path, tmp_path: Path) -> None:
    pause = tmp_path / "pause"
    reports = [new_report(tmp_path, f"2019-0{i}", seed=40 + i) for i in range(1, 4)]
    env = {"DPO_PAUSE_AT": "collect:productRecords:written", "DPO_PAUSE_DIR": str(pause)}
    with serve(root, env=env) as served:
        wait_paused(served, pause)  # the start run is in progress
        for report in reports:
            shutil.copyfile(report, root / MONTHLY / report.name)
        served.wait_for(lambda: (s := served.service())["next_run"]["follow_up_pending"]
                        and not s["watch"]["waiting_for"], "the follow-up to be asked for")
        (pause / "release").touch()
        state = served.idle_after(2)
        runs = served.runs()
        assert served.stop() == 0

    assert state["runs_completed"] == 2 and state["triggers"] == {"start": 1, "watch": 1}
    assert [loader_rows(r) for r in runs] == [120 + 3 * 60, 120]  # nothing lost
    assert all(r["overall_status"] == "success" for r in runs)


def test_post_run_needs_the_right_bearer_token(root: Path) -> None:
    journal = {"DPO_SERVE_TOKEN": TOKEN, "JOURNAL_STREAM": "8:4242"}  # as systemd sets it
    with serve(root, "--no-watch", "-v", env=journal) as served:
        served.idle_after(1)
        # Four failures: the fifth from one address would be throttled (test_hostile.py).
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                        {"Authorization": f"Bearer {TOKEN}x"}):
            refused = served.request("/run", method="POST", headers=headers)
            assert refused.status == 401, headers
            assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert served.service()["runs_completed"] == 1
        assert served.request("/run", method="GET").status == 404

        # The scheme in any case (RFC 7235): the token is what must match.
        accepted = served.request("/run", method="POST",
                                  headers={"Authorization": f"bearer {TOKEN}"})
        assert accepted.status == 202 and accepted.json()["accepted"] is True
        state = served.idle_after(2)
        assert state["triggers"] == {"start": 1, "http": 1}
        assert [r["overall_status"] for r in served.runs()] == ["success", "success"]
        assert served.stop() == 0

    log = served.log()
    assert "POST /run 401" in log and "POST /run 202" in log  # requests were logged (-v)...
    assert TOKEN not in log  # ...and the token never was
    # One plain line per event, no time stamp (the journal adds its own), no colour codes.
    assert all(line.split()[0] in ("DEBUG", "INFO", "WARNING", "ERROR")
               for line in log.splitlines() if line.strip()), log
    assert "\x1b[" not in log
    for path in every_file(root):
        assert TOKEN.encode() not in path.read_bytes(), path


@pytest.mark.parametrize(("args", "names"), [
    (["--listen", "0.0.0.0:{port}"], ["0.0.0.0", "serve_token", "DPO_SERVE_TOKEN"]),
    (["--listen", "127.0.0.1"], ["--listen", "HOST:PORT"]),
    (["--schedule", "61 * * * *"], ["--schedule", "'61 * * * *'", "cron"]),
    (["--settle", "-1"], ["--settle"]),
], ids=["non-loopback-without-token", "no-port", "bad-cron", "negative-settle"])
def test_bad_serve_options_exit_2_before_listening(root: Path, args: list[str],
                                                   names: list[str]) -> None:
    port = free_port()
    done = dpo("serve", "--root", root, *[a.format(port=port) for a in args], timeout=60)

    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    for name in names:
        assert name in done.stderr
    assert not (root / "agents").exists()  # no run happened


def test_serve_is_a_listed_command_with_its_options() -> None:
    listed = dpo("--help")
    assert listed.returncode == 0 and re.search(r"^\s+serve\s", listed.stdout, re.M)
    done = dpo("serve", "--help")
    assert done.returncode == 0, done.stderr
    for option in ("--listen", "--schedule", "--no-watch", "--settle", "--stop-timeout"):
        assert option in done.stdout


def test_a_short_token_is_refused(root: Path) -> None:
    done = dpo("serve", "--root", root, "--listen", f"127.0.0.1:{free_port()}",
               env={"DPO_SERVE_TOKEN": "guessable"}, timeout=60)

    assert done.returncode == 2, done.stderr
    assert "serve_token must be at least 16 characters" in done.stderr
    assert "guessable" not in done.stderr


def test_a_schedule_runs_without_file_events(root: Path) -> None:
    with serve(root, "--no-watch", "--schedule", "*/2 * * * * *") as served:
        state = served.wait_for(lambda: (s := served.service())["runs_completed"] >= 3 and s,
                                "the start run and two scheduled runs")
        health = served.health()
        assert served.stop() == 0

    assert state["watch"] is None and state["triggers"]["schedule"] >= 2
    assert set(state["runs_by_outcome"]) == {"success"}
    assert state["last_run"]["trigger"] == ["schedule: */2 * * * * *"]
    nxt = health["service"]["next_run"]
    assert nxt["schedule"] == "*/2 * * * * *"
    assert datetime.fromisoformat(nxt["scheduled_at"]).second % 2 == 0


def wait_paused(served: Served, pause: Path) -> str:
    return served.wait_for(lambda: (pause / "paused").is_file()
                           and (pause / "paused").read_text(encoding="utf-8"), "the pause point")


def test_a_cli_run_and_the_service_never_overlap(root: Path, tmp_path: Path) -> None:
    pause = tmp_path / "pause"
    env = {"DPO_PAUSE_AT": "collect:productRecords:written", "DPO_PAUSE_DIR": str(pause),
           "DPO_SERVE_TOKEN": TOKEN}
    with serve(root, "--no-watch", env=env) as served:
        assert wait_paused(served, pause).startswith(f"{served.proc.pid} ")
        refused = dpo("run", "--root", root, "--json")
        assert refused.returncode == 4, refused.stderr
        assert f"pid {served.proc.pid}" in refused.stderr and refused.stdout == ""

        waiter_log = tmp_path / "waiter.log"
        with waiter_log.open("wb") as log:
            waiter = subprocess.Popen([sys.executable, "-m", "dpo.cli", "run", "--root",
                                       str(root), "--json", "--wait", "120", "-v"],
                                      stdout=subprocess.PIPE, stderr=log, text=True)
        served.wait_for(lambda: "the run lock of" in waiter_log.read_text(encoding="utf-8"),
                        "the CLI run to find the lock held and wait")  # the path under test
        (pause / "release").touch()
        out, _ = waiter.communicate(timeout=120)
        err = waiter_log.read_text(encoding="utf-8")
        assert waiter.returncode == 0, err
        assert f"pid {served.proc.pid}" in err and "waiting up to 120 s" in err
        assert json.loads(out)["overall_status"] == "success"
        cli_run, service_run = served.runs()
        assert service_run["pid"] == served.proc.pid and cli_run["pid"] == waiter.pid
        assert (datetime.fromisoformat(service_run["finished_at"])
                <= datetime.fromisoformat(cli_run["started_at"]))

        # The other way round: the service waits for a CLI run's lock instead of failing.
        with run_lock(root / ORCH):
            served.request("/run", method="POST", headers={"Authorization": f"Bearer {TOKEN}"})
            waiting = served.wait_for(lambda: served.service()["waiting_for_lock"],
                                      "the service to wait for the lock")
            assert f"pid {os.getpid()}" in waiting
            assert sample(served.metrics(), "dpo_service_waiting_for_lock") == 1
        state = served.idle_after(2)
        assert state["runs_by_outcome"] == {"success": 2} and state["waiting_for_lock"] is None
        assert served.stop() == 0


def test_sigterm_abandons_a_run_that_does_not_finish_and_the_store_stays_consistent(
        root: Path, tmp_path: Path) -> None:
    pause = tmp_path / "pause"
    env = {"DPO_PAUSE_AT": "publish:write:productRecords:written#2",
           "DPO_PAUSE_DIR": str(pause), "DPO_PAUSE_TIMEOUT": "120", "DPO_SERVE_TOKEN": TOKEN}
    with serve(root, "--no-watch", "--stop-timeout", "1", env=env) as served:
        served.idle_after(1)
        before = published_hashes(root)
        set_cell(root / BAD_MONTH, 3, "itemTotalQuantity", 424_242)  # a valid change
        served.request("/run", method="POST", headers={"Authorization": f"Bearer {TOKEN}"})
        wait_paused(served, pause)  # mid-publish: the new version written, not yet published
        assert served.stop() == 0

    log = served.log()
    assert "abandoned" in log and "recorded interrupted" in log
    assert published_hashes(root) == before  # all old: the abandoned run published nothing
    assert_consistent(root, exact_newest=False)
    history = json.loads(dpo("history", "--root", root, "--json").stdout)
    assert [r["state"] for r in history] == ["interrupted", "finished"]

    repaired = dpo("run", "--root", root, "--json")
    assert repaired.returncode == 0, repaired.stderr
    assert_consistent(root)
    assert published_hashes(root)["productRecords"] != before["productRecords"]
    assert [r["state"] for r in json.loads(dpo("history", "--root", root, "--json").stdout)] \
        == ["finished", "interrupted", "finished"]


def test_sigterm_lets_a_run_in_progress_finish(root: Path, tmp_path: Path) -> None:
    pause = tmp_path / "pause"
    env = {"DPO_PAUSE_AT": "collect:productRecords:written", "DPO_PAUSE_DIR": str(pause)}
    with serve(root, "--no-watch", env=env) as served:
        wait_paused(served, pause)
        served.proc.send_signal(signal.SIGTERM)
        served.wait_for(lambda: "SIGTERM received" in served.log(), "the signal to be seen")
        (pause / "release").touch()
        assert served.proc.wait(timeout=30) == 0

    assert "abandoned" not in served.log()
    history = json.loads(dpo("history", "--root", root, "--json").stdout)
    assert [(r["state"], r["overall_status"]) for r in history] == [("finished", "success")]
    assert_consistent(root)


def test_a_poisoned_file_fails_its_run_and_the_service_keeps_serving(root: Path,
                                                                     tmp_path: Path) -> None:
    good_month = (root / BAD_MONTH).read_bytes()
    config = tmp_path / "dpo.toml"
    with http_receiver() as hook:
        good_config = f'[dpo]\nnotify_urls = ["json://127.0.0.1:{hook.port}/hooks"]\n'
        config.write_text(good_config, encoding="utf-8")
        with serve(root, "--config", config, env={"DPO_SERVE_TOKEN": TOKEN}) as served:
            served.idle_after(1)
            row = set_cell(root / BAD_MONTH, 9, "itemTotalQuantity", "abc")
            state = served.idle_after(2)
            poisoned_run(served, root, state, row, hook)

            config.write_text(good_config + "max_retries = 99\n", encoding="utf-8")
            run_that_cannot_start(served)

            config.write_text(good_config, encoding="utf-8")
            (root / BAD_MONTH).write_bytes(good_month)
            served.wait_for(lambda: served.service()["last_run"]["outcome"] == "success",
                            "a good run once the file is fixed")
            served.idle_after(4)
            assert served.request("/health").status == 200
            assert served.stop() == 0
    assert_consistent(root)


def poisoned_run(served: Served, root: Path, state: dict, row: int, hook: HttpSink) -> None:
    """The run failed for the poisoned file as `dpo run` would, notified and reported."""
    assert state["last_run"]["outcome"] == "partial_success"  # rolled back, Phase 2 ran
    health = served.request("/health")
    assert health.status == 503
    assert any("ended partial_success" in r for r in health.json()["reasons"])
    assert sample(served.metrics(), "dpo_service_runs_total", outcome="partial_success") == 1
    notes = [p.read_text(encoding="utf-8") for p in (root / NEWEST).iterdir()
             if "manual_review" in p.name]
    assert any(f"row {row}" in n and "itemTotalQuantity" in n for n in notes)
    (sent,) = hook.requests  # notified from the service's run, through apprise
    assert "itemTotalQuantity" in sent.body["message"]


def run_that_cannot_start(served: Served) -> None:
    """The config file (read again for every run) edited into nonsense: the run raises."""
    served.request("/run", method="POST", headers={"Authorization": f"Bearer {TOKEN}"})
    state = served.idle_after(3)
    assert state["last_run"]["outcome"] == "error"
    assert "max_retries must be 0..20" in state["last_run"]["error"]
    health = served.request("/health")
    assert health.status == 503
    assert any("did not start" in r and "max_retries" in r for r in health.json()["reasons"])
    assert sample(served.metrics(), "dpo_service_runs_total", outcome="error") == 1


def test_warnings_are_counted_once_per_published_version(root: Path, tmp_path: Path) -> None:
    """Issue #19, item 8: a master table with a #REF! cell is published once with its warning;
    a later run that publishes only a new monthly report says the warning again (the gauge of
    the newest run) but the counter of warnings on published versions does not grow."""
    from dpo.demo.writers import ExcelError

    set_cell(root / "database" / "staticDatabase" / "moldInfo.xlsx", 2, "itemsWeight",
             ExcelError("#REF!"))
    report = new_report(tmp_path, "2019-02", seed=31)
    with serve(root, settle=1.0) as served:
        served.idle_after(1)
        first = served.metrics()
        shutil.copyfile(report, root / MONTHLY / report.name)
        served.idle_after(2)
        second = served.metrics()
        runs = served.runs()
    assert [r["warnings_by_kind"] for r in runs] == [{"error_cell": 1}, {"error_cell": 1}]
    counter = "dpo_service_published_data_quality_warnings_total"
    assert sample(first, counter, kind="error_cell") == 1
    assert sample(second, counter, kind="error_cell") == 1  # moldInfo was not published again
    assert sample(second, "dpo_data_quality_warnings", kind="error_cell") == 1  # newest run

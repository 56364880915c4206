"""The pieces of `dpo serve` that decide when to run, on real files with explicit times:
the settle logic, run-request coalescing, cron schedules, the listen address."""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from dpo.errors import ConfigError
from dpo.serve.endpoints import is_loopback, parse_listen
from dpo.serve.watch import Schedule, SettleTracker, Triggers, _outermost

SETTLE = 5.0


def grow(path: Path, data: bytes) -> None:
    with path.open("ab") as out:
        out.write(data)


def test_a_file_counts_only_once_unchanged_for_the_settle_time(tmp_path: Path) -> None:
    tracker = SettleTracker(SETTLE, max_wait=600)
    export = tmp_path / "monthlyReports_201901.xlsb"
    grow(export, b"first chunk")
    tracker.observe([export], now=0)
    assert tracker.due(1) == []
    grow(export, b", second chunk")  # still being written at t=4: its clock starts again
    assert tracker.due(4) == []
    assert tracker.due(8.9) == []  # 4.9 s unchanged
    assert tracker.waiting() == [export.name]
    assert tracker.due(9) == [export]
    assert tracker.due(20) == [] and tracker.waiting() == []


def test_a_run_waits_until_every_changed_file_has_settled(tmp_path: Path) -> None:
    tracker = SettleTracker(SETTLE, max_wait=600)
    first, second = tmp_path / "a.xlsx", tmp_path / "b.xlsx"
    grow(first, b"a")
    tracker.observe([first], now=0)
    grow(second, b"b")
    tracker.observe([second], now=3)
    assert tracker.due(6) == []  # the first has settled, the second not yet
    assert tracker.due(8) == [first, second]  # one run for both


def test_a_removed_file_counts_and_folders_are_not_files(tmp_path: Path) -> None:
    tracker = SettleTracker(SETTLE, max_wait=600)
    gone = tmp_path / "old.xlsx"
    folder = tmp_path / "sub"
    folder.mkdir()
    tracker.observe([gone, folder], now=0)
    assert tracker.waiting() == ["old.xlsx"]
    assert tracker.due(5) == [gone]


def test_a_file_that_never_settles_holds_runs_back_at_most_max_wait(tmp_path: Path) -> None:
    tracker = SettleTracker(SETTLE, max_wait=60)
    busy, done = tmp_path / "busy.xlsx", tmp_path / "done.xlsx"
    grow(done, b"d")
    tracker.observe([busy, done], now=0)
    grow(busy, b"0")
    for t in range(1, 60):
        grow(busy, b"x")  # changes every second
        assert tracker.due(t) == [], t
    grow(busy, b"x")
    assert tracker.due(60) == [busy, done]  # run anyway, for both
    assert tracker.waiting() == [busy.name]  # the busy one is still watched
    assert tracker.due(61) == []


def test_nested_folders_are_watched_once(tmp_path: Path) -> None:
    database = tmp_path / "database"
    assert _outermost([database / "dynamicDatabase", database, database / "staticDatabase",
                       tmp_path / "other", database]) == [database, tmp_path / "other"]


def test_requests_during_a_run_become_one_follow_up() -> None:
    triggers = Triggers()
    triggers.request("start")
    assert triggers.take() == ["start"]  # the runner takes it and runs
    for reason in ("watch: a.xlsb", "watch: b.xlsb", "http: 127.0.0.1", "watch: a.xlsb"):
        triggers.request(reason)  # while the run goes on
    assert triggers.pending
    assert triggers.take() == ["watch: a.xlsb", "watch: b.xlsb", "http: 127.0.0.1"]
    assert not triggers.pending

    taken: list[list[str] | None] = []
    waiter = threading.Thread(target=lambda: taken.append(triggers.take()))
    waiter.start()
    triggers.close()  # a stopping service wakes its runner with nothing to do
    waiter.join(timeout=30)
    assert taken == [None]


def test_schedule_follows_the_cron_expression_in_local_time() -> None:
    night = Schedule("30 2 * * *")
    assert night.next_after(datetime(2026, 3, 1, 12, 0)) == datetime(2026, 3, 2, 2, 30)
    every_2s = Schedule("*/2 * * * * *")  # six fields: seconds first
    assert every_2s.next_after(datetime(2026, 3, 1, 12, 0, 5)) == datetime(2026, 3, 1, 12, 0, 6)
    # Just after a run it fired (microseconds later), the next is the next one, not again.
    fired = datetime(2026, 3, 1, 12, 0, 6, 3000)
    assert every_2s.next_after(fired) == datetime(2026, 3, 1, 12, 0, 8)
    berlin = ZoneInfo("Europe/Berlin")  # 02:30 does not exist on 2026-03-29: cron runs it at 03:00
    assert night.next_after(datetime(2026, 3, 28, 12, 0, tzinfo=berlin)) == datetime(
        2026, 3, 29, 3, 0, tzinfo=berlin)
    for bad in ("61 * * * *", "* * *", "every night"):
        with pytest.raises(ConfigError, match="not a cron expression"):
            Schedule(bad)


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:8765") == ("127.0.0.1", 8765)
    assert parse_listen("[::1]:9000") == ("::1", 9000)
    assert parse_listen("localhost:80") == ("localhost", 80)
    for bad in ("127.0.0.1", ":8765", "host:http", "127.0.0.1:70000"):
        with pytest.raises(ConfigError, match="HOST:PORT"):
            parse_listen(bad)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("127.8.9.10")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("::")

"""What asks `dpo serve` for a run: changed source files once complete, a cron schedule; and
how requests become runs (Triggers).

Plants copy their exports onto the share while the ERP job still writes them, so an event
means "something is happening to this file", not "this file is ready". A file counts once it
is *settled*: its size and mtime unchanged for `settle` seconds, and it can be opened and read
(a removed file: gone for `settle` seconds, as a replace is often a delete and a new copy).
A run is asked for only when every changed file has settled,
so a burst of exports becomes one run, not one per file; a file that never settles (a copy
that keeps growing, a file nobody may read) holds the others back at most `max_wait` seconds.

Events come from watchfiles (inotify on Linux; `WATCHFILES_FORCE_POLLING=1` for network
shares that send no events). The settle logic is plain code over `os.stat`, so it is tested
with real files and explicit times.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from loguru import logger

from dpo.errors import ConfigError

Signature = tuple[int, int] | None  # (size, mtime_ns); None: the file is gone

# Office's owner files (`~$report.xlsx`) and editors' temp files are not exports.
IGNORED_NAME_PATTERNS = (r"^~\$", r"^\.~lock\.", r"\.tmp$", r"\.part$", r"\.crdownload$")
RESTART_WAIT = 5.0  # seconds between attempts to (re)start a watcher that failed


def signature(path: Path) -> Signature:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


def readable(path: Path) -> bool:
    """The file can be opened and read (a share may list a file it does not let us read yet)."""
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError:
        return False
    return True


@dataclass
class _Pending:
    signature: Signature
    since: float  # when `signature` was first seen (monotonic seconds)
    first: float  # when the first event for this file came


class SettleTracker:
    """Changed files, until each is complete. Times are given by the caller (monotonic s)."""

    def __init__(self, settle: float, max_wait: float) -> None:
        self.settle = settle
        self.max_wait = max(max_wait, settle)
        self._pending: dict[Path, _Pending] = {}

    def observe(self, paths: Iterable[Path], now: float) -> None:
        """Files an event named: (re)start their settle clock."""
        for path in paths:
            if path.is_dir():  # a folder's own events say nothing about its files' state
                continue
            known = self._pending.get(path)
            self._pending[path] = _Pending(signature(path), now, known.first if known else now)

    def _settled(self, path: Path, entry: _Pending, now: float) -> bool:
        current = signature(path)
        if current != entry.signature:
            entry.signature, entry.since = current, now
        if now - entry.since < self.settle:
            return False
        return current is None or readable(path)

    def due(self, now: float) -> list[Path]:
        """The files to run for, forgotten once returned: all of them when every one has
        settled; also when the oldest has waited `max_wait` (the unsettled ones are kept)."""
        if not self._pending:
            return []
        settled = {p for p, e in list(self._pending.items()) if self._settled(p, e, now)}
        if len(settled) < len(self._pending):
            oldest = min(e.first for e in self._pending.values())
            if now - oldest < self.max_wait:
                return []
            stuck = sorted(p for p in self._pending if p not in settled)
            logger.warning("⚠️ {} still changing or unreadable after {:.0f} s; running without "
                           "waiting for {}", ", ".join(p.name for p in stuck), self.max_wait,
                           "it" if len(stuck) == 1 else "them")
            for path in settled:
                del self._pending[path]
            for entry in self._pending.values():
                entry.first = now  # the next forced run is another max_wait away
            return sorted([*settled, *stuck])
        self._pending.clear()
        return sorted(settled)

    def waiting(self) -> list[str]:
        return sorted(p.name for p in self._pending)


class SourceWatcher:
    """A thread that watches `folders` and calls `on_due(files)` when changed files settle."""

    def __init__(self, folders: list[Path], *, ignore: list[Path], settle: float, max_wait: float,
                 on_due: Callable[[list[Path]], None], stop: threading.Event,
                 tick: float = 0.5) -> None:
        self.folders = _outermost(folders)
        self.ignore = ignore
        self.tracker = SettleTracker(settle, max_wait)
        self.on_due = on_due
        self.stop = stop
        self.tick = tick
        self.events = 0
        self.error: str | None = None
        self._lock = threading.Lock()  # guards the tracker: the HTTP threads read its state
        self.thread = threading.Thread(target=self._loop, name="dpo-watch", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def status(self) -> dict[str, Any]:
        with self._lock:
            waiting = self.tracker.waiting()
        return {"folders": [str(f) for f in self.folders], "alive": self.thread.is_alive(),
                "events": self.events, "waiting_for": waiting, "error": self.error}

    def quiet(self) -> bool:
        with self._lock:
            return not self.tracker.waiting()

    def wait_quiet(self, timeout: float) -> bool:
        """Wait (at most `timeout` s) until no changed file is still settling, so that a run
        asked for by the schedule or over HTTP does not read a half-copied export."""
        deadline = time.monotonic() + timeout
        while not self.quiet():
            if self.stop.wait(min(0.1, max(0.0, deadline - time.monotonic()))):
                return False
            if time.monotonic() >= deadline:
                return False
        return True

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                self._watch()
            except (OSError, RuntimeError) as exc:  # a folder gone or a share unmounted
                self.error = f"{type(exc).__name__}: {exc}"
                logger.error("❌ watching {} failed: {}; retrying in {:.0f} s",
                             ", ".join(map(str, self.folders)), self.error, RESTART_WAIT)
                self.stop.wait(RESTART_WAIT)

    def _watch(self) -> None:
        from watchfiles import DefaultFilter, watch

        folders = [f for f in self.folders if f.is_dir()]
        if not folders:
            raise FileNotFoundError(f"none of {', '.join(map(str, self.folders))} exists")
        patterns = (*DefaultFilter.ignore_entity_patterns, *IGNORED_NAME_PATTERNS)
        flt = DefaultFilter(ignore_entity_patterns=patterns, ignore_paths=self.ignore)
        logger.info("👀 watching {}", ", ".join(map(str, folders)))
        for changes in watch(*folders, watch_filter=flt, debounce=200, step=50,
                             stop_event=self.stop, rust_timeout=int(self.tick * 1000),
                             yield_on_timeout=True, raise_interrupt=False):
            self.error = None
            now = time.monotonic()
            with self._lock:
                if changes:
                    self.events += len(changes)
                    self.tracker.observe((Path(p) for _, p in changes), now)
                due = self.tracker.due(now)
            if due:
                self.on_due(due)


def _outermost(folders: list[Path]) -> list[Path]:
    """Each folder once, none inside another (watching is recursive)."""
    unique = sorted({Path(os.path.abspath(f)) for f in folders}, key=lambda p: (len(p.parts), p))
    kept: list[Path] = []
    for folder in unique:
        if not any(folder.is_relative_to(k) for k in kept):
            kept.append(folder)
    return kept


class Schedule:
    """A cron expression (5 fields, or 6 with seconds first), in local time."""

    def __init__(self, expression: str) -> None:
        from cronsim import CronSimError

        self.expression = expression
        try:
            self.next_after(datetime.now().astimezone())
        except (CronSimError, StopIteration) as exc:
            raise ConfigError(f"--schedule {expression!r} is not a cron expression: {exc}") from exc

    def next_after(self, when: datetime) -> datetime:
        from cronsim import CronSim

        return next(CronSim(self.expression, when))


class Triggers:
    """Run requests. However many come while a run goes on, they make one follow-up run."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._reasons: dict[str, None] = {}  # ordered, each reason once
        self._closed = False

    def request(self, reason: str) -> None:
        with self._cond:
            if len(self._reasons) < 20:
                self._reasons[reason] = None
            self._cond.notify_all()

    def take(self) -> list[str] | None:
        """Wait for requests and take them all; None once closed."""
        with self._cond:
            self._cond.wait_for(lambda: bool(self._reasons) or self._closed)
            return None if self._closed else self.drain()

    def drain(self) -> list[str]:
        with self._cond:
            reasons = list(self._reasons)
            self._reasons.clear()
            return reasons

    @property
    def pending(self) -> bool:
        with self._cond:
            return bool(self._reasons)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

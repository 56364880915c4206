"""`dpo serve`: run the pipeline when the exports land; answer health and metrics over HTTP.

One process, four threads besides the main one:

* the **runner** takes run requests and runs the pipeline in-process (the data stack stays
  imported: no start-up cost per run). Requests that arrive while a run is going on become
  one follow-up run, never lost and never queued up one per event. It takes the same run
  lock as `dpo run`, waiting for it rather than failing; a run that fails or raises is
  recorded, notified and reported as any run is, and the service carries on.
* the **watcher** (dpo.serve.watch) asks for a run when changed source files have settled;
* the **scheduler** asks for a run at the times of a cron expression (cronsim);
* the **HTTP server** (dpo.serve.endpoints) answers /health, /metrics, /, /runs and POST /run.

The main thread waits for SIGTERM/SIGINT, then stops everything: a run in progress gets
`stop_timeout` seconds to finish; one that does not is abandoned (the process exits, as if
killed: the store's publish protocol keeps it consistent, and the next run repairs what the
run left half-done), after its ledger row is marked `interrupted`. Exit code 0.
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import sqlite3
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

from loguru import logger

from dpo.errors import ConfigError, DpoError
from dpo.serve.endpoints import is_loopback, parse_listen
from dpo.serve.watch import Schedule, Triggers

LOCK_POLL = 1.0  # seconds per attempt at the run lock: the wait is checked against a stop
MIN_TOKEN = 16  # characters of serve_token: a guessable token is no protection
MIN_MAX_WAIT = 60.0  # a file that never settles holds runs back at most this (or 12 settles)


@dataclass(frozen=True)
class ServeOptions:
    """What `dpo serve` was told; `settings` are the orchestrator's (as for `dpo run`)."""

    root: Path | None = None
    config: Path | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    listen: str = "127.0.0.1:8765"
    schedule: str | None = None
    watch: bool = True
    settle: float = 5.0
    stop_timeout: float = 8.0  # within the 10 s a supervisor waits before SIGKILL
    notify: bool = True
    max_retries: int | None = None
    on_bad_rows: str | None = None


def _now() -> datetime:
    return datetime.now().astimezone()


def published_warnings(result: dict[str, Any] | None) -> Counter[str]:
    """The warnings by kind of the tables a run published a new version of (Phase 2 publishes
    all or nothing: a failed Phase 2 published none)."""
    found: Counter[str] = Counter()
    loader = (result or {}).get("loader_result") or {}
    if loader.get("status") not in ("success", "warning"):
        return found
    for table in loader.get("details") or []:
        if table.get("changed"):
            found.update(table.get("warnings_by_kind") or {})
    return found


class ServiceState:
    """What the service has done, for /health and /metrics (read from the HTTP threads)."""

    def __init__(self) -> None:
        self.started_at = _now()
        self.started_mono = time.monotonic()
        self.lock = threading.Lock()
        self.outcomes: Counter[str] = Counter()  # overall status, error or abandoned
        self.triggers: Counter[str] = Counter()  # start | watch | schedule | http
        # Data-quality warnings on the versions this service's runs published, by kind: a
        # counter (a table left unchanged says its warnings again but publishes nothing).
        self.published_warnings: Counter[str] = Counter()
        self.current: dict[str, Any] | None = None
        self.last: dict[str, Any] | None = None
        self.waiting_for_lock: str | None = None
        self.next_scheduled: datetime | None = None

    def begin(self, reasons: list[str]) -> None:
        with self.lock:
            self.current = {"trigger": reasons, "started_at": _now().isoformat()}

    def end(self, outcome: str, error: str | None,
            result: dict[str, Any] | None = None) -> None:
        with self.lock:
            run = self.current or {}
            self.outcomes[outcome] += 1
            self.published_warnings.update(published_warnings(result))
            self.last = {**run, "finished_at": _now().isoformat(), "outcome": outcome,
                         "error": error}
            self.current, self.waiting_for_lock = None, None

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"started_at": self.started_at.isoformat(),
                    "uptime_s": round(time.monotonic() - self.started_mono, 3),
                    "runs_completed": sum(self.outcomes.values()),
                    "runs_by_outcome": dict(self.outcomes), "triggers": dict(self.triggers),
                    "published_warnings": dict(self.published_warnings),
                    "run_in_progress": self.current is not None, "current_run": self.current,
                    "waiting_for_lock": self.waiting_for_lock, "last_run": self.last}


class Service:
    def __init__(self, options: ServeOptions) -> None:
        from dpo.schema import load_schema

        self.options = options
        orch = self._orchestrator()  # refuses bad settings and paths now (exit 2)
        self.settings, self.paths = orch.settings, orch.paths
        from dpo.inputs.plant import mirror_schema

        mirror_schema(self.paths, self.settings)  # a schema on object storage: fetched first
        self.schema = load_schema(self.paths.schema_path, self.paths.root)
        self.host, self.port = parse_listen(options.listen)
        self.token: str | None = self.settings.serve_token or None
        if self.token is not None and len(self.token) < MIN_TOKEN:
            raise ConfigError(f"serve_token must be at least {MIN_TOKEN} characters (e.g. "
                              "`openssl rand -hex 32`)")
        if self.token is None and not is_loopback(self.host):
            raise ConfigError(f"refusing to listen on {self.host} (not a loopback address) "
                              "without a token: set serve_token (DPO_SERVE_TOKEN), or listen "
                              "on 127.0.0.1")
        if options.settle < 0 or options.stop_timeout < 0:
            raise ConfigError("--settle and --stop-timeout must not be negative")
        self.schedule = Schedule(options.schedule) if options.schedule else None
        self.stop = threading.Event()
        self.hurry = threading.Event()  # a second signal: do not wait for the run
        self.signal_name = ""
        self.triggers = Triggers()
        self.state = ServiceState()
        self.watcher = self._watcher() if options.watch else None
        self.runner = threading.Thread(target=self._run_loop, name="dpo-runner", daemon=True)

    def _orchestrator(self) -> Any:
        from dpo.pipeline.orchestrator import DataPipelineOrchestrator

        return DataPipelineOrchestrator(root_dir=self.options.root,
                                        config_file=self.options.config,
                                        **{**self.options.settings, "lock_timeout": LOCK_POLL})

    def _watcher(self) -> Any:
        from dpo.serve.watch import SourceWatcher

        # Local folders only: a bucket sends no file events (an object store's notifications
        # need a queue dpo does not run). Remote inputs are seen by --schedule runs.
        folders = [*([] if self.paths.source_url else [self.paths.source_dir]),
                   *([] if self.paths.schema_url else [self.paths.schema_path.parent]),
                   *(spec.path.parent for spec in self.schema.static if spec.url is None)]
        if len(folders) < 2 + len(self.schema.static):
            logger.info("👀 inputs on object storage are not watched (a bucket sends no file "
                        "events): --schedule runs pick up their changes")
        if not folders:
            return None
        settle = self.options.settle
        return SourceWatcher(folders, ignore=[self.paths.default_dir], settle=settle,
                             max_wait=max(MIN_MAX_WAIT, 12 * settle), on_due=self._files_due,
                             stop=self.stop)

    # -- requests ----------------------------------------------------------------------------
    def request_run(self, source: str, detail: str = "") -> None:
        with self.state.lock:
            self.state.triggers[source] += 1
        self.triggers.request(f"{source}: {detail}" if detail else source)

    def _files_due(self, files: list[Path]) -> None:
        names = [f.name for f in files]
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        logger.info("📥 settled: {}", shown)
        self.request_run("watch", shown)

    # -- the runner --------------------------------------------------------------------------
    def _run_loop(self) -> None:
        try:  # warm: the data stack is imported once, not per run
            import dpo.collect.collector
            import dpo.load.loader  # noqa: F401
        except ImportError as exc:  # each run will say so too; the service still answers
            logger.error("❌ cannot import the data stack: {}", exc)
        while (reasons := self.triggers.take()) is not None:
            if self.watcher is not None:  # a half-copied export is not read by any run
                self.watcher.wait_quiet(self.watcher.tracker.max_wait)
            reasons += self.triggers.drain()  # asked for while waiting: this run covers them
            if self.stop.is_set():
                return
            self._run(reasons)

    def _run(self, reasons: list[str]) -> None:
        self.state.begin(reasons)
        logger.info("▶️ run requested by {}", "; ".join(reasons))
        outcome, error, result = "error", None, None
        try:
            result = self._run_pipeline()
            outcome = "abandoned" if result is None else str(result["overall_status"])
        except DpoError as exc:  # e.g. the config file was broken since: the service goes on
            error = exc.message
            logger.error("❌ run not started: {}", error)
        except Exception as exc:  # noqa: BLE001 - the service boundary: a run never stops it
            error = f"{type(exc).__name__}: {exc}"
            logger.opt(exception=exc).error("❌ run raised: {}", error)
        finally:
            self.state.end(outcome, error, result)
            release_memory()

    def _run_pipeline(self) -> dict[str, Any] | None:
        from dpo.errors import PipelineLocked

        orch = self._orchestrator()  # per run: a changed config file is read again
        while True:
            try:
                result: dict[str, Any] = orch.run_pipeline(
                    max_retries=self.options.max_retries,
                    enable_notifications=self.options.notify,
                    on_bad_rows=self.options.on_bad_rows)
                return result
            except PipelineLocked as exc:
                if self.stop.is_set():
                    return None
                if self.state.waiting_for_lock is None:
                    logger.info("⏳ waiting for the run lock: {}", exc.message)
                with self.state.lock:
                    self.state.waiting_for_lock = exc.message
                # A store lease is refused at once (the local lock waits LOCK_POLL itself):
                # ask again a second later, not in a loop that hammers the store.
                self.stop.wait(LOCK_POLL)

    # -- the scheduler -----------------------------------------------------------------------
    def _schedule_loop(self, schedule: Schedule) -> None:
        while not self.stop.is_set():
            due = schedule.next_after(_now())
            self.state.next_scheduled = due
            # Wake at least once a minute: a clock changed (NTP, DST) is noticed in time.
            while not self.stop.wait(min(60.0, max(0.0, (due - _now()).total_seconds()))):
                if _now() >= due:
                    self.request_run("schedule", schedule.expression)
                    break

    # -- status ------------------------------------------------------------------------------
    def health(self) -> tuple[int, dict[str, Any]]:
        """The seed's health check plus the service's state; 200 when healthy, else 503."""
        from dpo.pipeline.health import pipeline_health_check

        report = pipeline_health_check(paths=self.paths, config=self.settings)
        service = self.state.snapshot()
        service["next_run"] = {
            "follow_up_pending": self.triggers.pending,
            "scheduled_at": self.state.next_scheduled.isoformat()
            if self.state.next_scheduled else None,
            "schedule": self.schedule.expression if self.schedule else None}
        service["watch"] = self.watcher.status() if self.watcher else None
        problems = []
        if self.watcher is not None and (self.watcher.error or not self.watcher.thread.is_alive()):
            problems.append(f"not watching the source folders: {self.watcher.error or 'stopped'}")
        if not self.runner.is_alive() and not self.stop.is_set():
            problems.append("the runner thread has stopped: no run will happen (see the log)")
        last = service["last_run"]
        if last and last["outcome"] == "error":
            problems.append(f"the last run did not start: {last['error']}")
        report["service"] = service
        report["reasons"] = [*report["reasons"], *problems]
        if problems:
            report["service_status"] = "degraded"
        return (200 if report["service_status"] == "healthy" else 503), report

    # -- lifecycle ---------------------------------------------------------------------------
    def serve(self) -> int:
        from dpo.serve.endpoints import make_server

        server = make_server(self, self.host, self.port)
        previous = {sig: signal.signal(sig, self._on_signal)
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        threads = [threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5},
                                    name="dpo-http", daemon=True), self.runner]
        if self.schedule is not None:
            threads.append(threading.Thread(target=self._schedule_loop, args=(self.schedule,),
                                            name="dpo-schedule", daemon=True))
        for thread in threads:
            thread.start()
        if self.watcher is not None:
            self.watcher.start()
        logger.info("🟢 dpo serve: http://{}:{} (root {}; {}{})", _url_host(self.host),
                    server.server_address[1], self.paths.root,
                    "watching" if self.watcher else "not watching",
                    f"; schedule {self.schedule.expression!r}" if self.schedule else "")
        if self.watcher is None and self.schedule is None and self.token is None:
            logger.warning("⚠️ no --schedule, no watching and no serve_token (POST /run): "
                           "after its start run this service will not run again")
        self.request_run("start")  # exports that landed while the service was down
        try:
            while not self.stop.wait(1.0):
                pass
            logger.info("🛑 {} received: stopping", self.signal_name)
            return self._shutdown(server)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # No logging here: the handler runs in the main thread, which may hold loguru's lock.
        if self.stop.is_set():
            self.hurry.set()
        self.signal_name = signal.Signals(signum).name
        self.stop.set()

    def _shutdown(self, server: Any) -> int:
        self.triggers.close()
        threading.Thread(target=server.shutdown, daemon=True).start()
        deadline = time.monotonic() + self.options.stop_timeout
        if self.state.current is not None:
            logger.info("⏳ waiting up to {:.0f} s for the run in progress",
                        self.options.stop_timeout)
        while self.runner.is_alive() and time.monotonic() < deadline and not self.hurry.is_set():
            self.runner.join(0.1)
        if self.runner.is_alive() and self.state.current is not None:
            self._abandon()  # does not return
        server.server_close()
        logger.info("⏹️ dpo serve stopped")
        return 0

    def _abandon(self) -> None:
        """Leave the run as a kill would, after recording it `interrupted` (SPEC: the store
        is consistent at every point; the next run removes what this one left half-done)."""
        ids = record_interrupted(self.paths.output_dir / "runs.sqlite", os.getpid())
        logger.warning("⚠️ run {} abandoned after {:.0f} s: recorded interrupted; the next run "
                       "repairs what it left", ", ".join(ids) or "(not yet recorded)",
                       self.options.stop_timeout)
        logger.info("⏹️ dpo serve stopped")
        sys.stderr.flush()
        os._exit(0)


def record_interrupted(ledger_path: Path, pid: int) -> list[str]:
    """Record this process's running run `interrupted` (Ledger.interrupt, as a Ctrl-C'd
    `dpo run` does). A failure is logged: the next run's Ledger.start marks it then."""
    from dpo.observe.ledger import Ledger

    if not ledger_path.exists():
        return []
    ledger = Ledger(ledger_path)
    try:
        ids = [r["run_id"] for r in ledger.runs(limit=5)
               if r["state"] == "running" and r["pid"] == pid]
    except sqlite3.Error as exc:
        logger.error("❌ run ledger {}: cannot find the abandoned run: {}", ledger_path, exc)
        return []
    for run_id in ids:
        ledger.interrupt(run_id, datetime.now())
    return ids


def _malloc_trim() -> Any:
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to give back with
        return None


_TRIM = _malloc_trim()


def release_memory() -> None:
    """After a run: collect cycles and hand freed heap pages back to the OS. Without it glibc
    keeps them, fragmented, and the service's RSS creeps up run after run (BENCHMARKS.md)."""
    gc.collect()
    if _TRIM is not None:
        _TRIM(0)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host

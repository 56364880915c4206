"""`dpo serve`: the long-running service (dpo.serve). Registered on the main app by `dpo.cli`.

Exit codes: 0 stopped by SIGTERM/SIGINT, 1 could not listen, 2 bad usage or configuration
(including a non-loopback --listen without serve_token).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

Root = Annotated[Path | None, typer.Option("--root", help="Root that relative paths resolve "
                                           "against (default: current directory).")]
Config = Annotated[Path | None, typer.Option("--config", help="TOML config file ([dpo] table).")]


def _setup_logging(verbose: bool) -> None:
    """One plain line per event on stderr. Under systemd (JOURNAL_STREAM set) without a time
    stamp, which the journal adds; no colours unless stderr is a terminal."""
    from loguru import logger

    stamp = "" if os.environ.get("JOURNAL_STREAM") else "{time:YYYY-MM-DD HH:mm:ss} "
    logger.remove()
    # diagnose=False: a traceback prints no variable values (a request's query, the token);
    # -v, on a developer's machine, shows them.
    logger.add(sys.stderr, level="DEBUG" if verbose else "INFO", colorize=sys.stderr.isatty(),
               format=stamp + "{level: <7} {message}", diagnose=verbose, backtrace=verbose)


def serve(
    root: Root = None, config: Config = None,
    source_dir: Annotated[str | None, typer.Option("--source-dir",
                                                   help="dynamic_db_source_dir")] = None,
    schema: Annotated[str | None, typer.Option("--schema", help="databaseSchemas_path")] = None,
    annotations: Annotated[str | None, typer.Option("--annotations",
                                                    help="annotation_path")] = None,
    default_dir: Annotated[str | None, typer.Option("--default-dir",
                                                    help="default_dir (output root)")] = None,
    listen: Annotated[str, typer.Option("--listen", help="HOST:PORT of the HTTP endpoints. "
                                        "A non-loopback address needs serve_token.")]
    = "127.0.0.1:8765",
    schedule: Annotated[str | None, typer.Option("--schedule", help="Cron expression (local "
                                                 "time; 5 fields, or 6 with seconds first) "
                                                 "for runs without file events, e.g. "
                                                 "'30 2 * * *'.")] = None,
    no_watch: Annotated[bool, typer.Option("--no-watch", help="Do not watch the source "
                                           "folders (runs only by schedule or POST /run).")]
    = False,
    settle: Annotated[float, typer.Option("--settle", help="Seconds a changed file must stay "
                                          "unchanged (size, mtime) before it counts.")] = 5.0,
    stop_timeout: Annotated[float, typer.Option("--stop-timeout", help="Seconds a run in "
                                                "progress gets to finish on SIGTERM before it "
                                                "is abandoned (recorded interrupted).")] = 8.0,
    max_retries: Annotated[int | None, typer.Option(help="Retries of transient failures.")]
    = None,
    no_notify: Annotated[bool, typer.Option("--no-notify", help="Send nothing; reports are "
                                            "still written.")] = False,
    quarantine: Annotated[bool, typer.Option("--quarantine", help="Quarantine bad rows instead "
                                             "of failing the table.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="DEBUG logs (with each HTTP "
                                          "request) and tracebacks.")] = False,
) -> None:
    """Run the pipeline whenever the exports land (and on --schedule); serve /health,
    /metrics, the dashboard (/), /runs and, with serve_token, POST /run."""
    _setup_logging(verbose)
    from dpo.cli.runtime import _arrow_memory_pool, _guard, _without_pandas
    from dpo.serve.service import ServeOptions, Service

    _without_pandas()
    _arrow_memory_pool()
    paths = {"dynamic_db_source_dir": source_dir, "databaseSchemas_path": schema,
             "annotation_path": annotations, "default_dir": default_dir}
    options = ServeOptions(
        root=root, config=config, settings={k: v for k, v in paths.items() if v is not None},
        listen=listen, schedule=schedule, watch=not no_watch, settle=settle,
        stop_timeout=stop_timeout, notify=not no_notify, max_retries=max_retries,
        on_bad_rows="quarantine" if quarantine else None)
    service = _guard(verbose, lambda: Service(options))
    raise typer.Exit(_guard(verbose, service.serve))

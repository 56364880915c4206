"""The `dpo` command. Heavy modules are imported inside commands so `dpo --help` stays fast.

Exit codes: 0 success · 1 failed · 2 bad usage or configuration · 3 partial_success ·
4 another run holds the lock.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from dpo.cli.runtime import (
    EXIT_USAGE,
    _arrow_memory_pool,
    _fail,
    _guard,
    _setup_logging,
    _without_pandas,
)

EXIT_CODES = {"success": 0, "failed": 1, "partial_success": 3}

HELP = ("dpo: plant Excel exports -> typed, versioned Parquet (collect -> load).\n\n"
        "Exit codes: 0 success, 1 failed, 2 bad usage or configuration, 3 partial_success, "
        "4 another run holds the lock.")


def _version(value: bool) -> None:
    if value:
        from dpo import __version__

        typer.echo(f"dpo {__version__}")
        raise typer.Exit(0)


def _options(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_version,
                                          help="Print dpo's version and exit.")] = False,
) -> None:
    """dpo: plant Excel exports -> typed, versioned Parquet (collect -> load)."""


Root = Annotated[Path | None, typer.Option("--root", help="Root that relative paths resolve "
                                           "against (default: current directory).")]
Config = Annotated[Path | None, typer.Option("--config", help="TOML config file ([dpo] table).")]
Verbose = Annotated[bool, typer.Option("-v", "--verbose", help="DEBUG logs and tracebacks.")]
Source = Annotated[str | None, typer.Option("--source-dir", help="dynamic_db_source_dir")]
SchemaOpt = Annotated[str | None, typer.Option("--schema", help="databaseSchemas_path")]
Annot = Annotated[str | None, typer.Option("--annotations", help="annotation_path")]
Out = Annotated[str | None, typer.Option("--default-dir", help="default_dir (output root)")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ChecksOpt = Annotated[str | None, typer.Option("--checks", help="checks_path: the data checks "
                                               "file (default: dataChecks.toml beside the "
                                               "schema file)")]


def _orchestrator(root: Path | None, config: Path | None, source: str | None,
                  schema: str | None, annotations: str | None, default_dir: str | None,
                  **options: Any) -> Any:
    from dpo.pipeline.orchestrator import DataPipelineOrchestrator

    paths = {k: v for k, v in {"dynamic_db_source_dir": source, "databaseSchemas_path": schema,
                               "annotation_path": annotations, "default_dir": default_dir}.items()
             if v is not None}
    settings: dict[str, Any] = {**paths, **{k: v for k, v in options.items() if v is not None}}
    return DataPipelineOrchestrator(root_dir=root, config_file=config, **settings)


def run(
    root: Root = None, config: Config = None, source_dir: Source = None, schema: SchemaOpt = None,
    annotations: Annot = None, default_dir: Out = None,
    max_retries: Annotated[int | None, typer.Option(help="Retries of transient failures.")] = None,
    no_notify: Annotated[bool, typer.Option("--no-notify", help="Send nothing; reports are "
                                            "still written.")] = False,
    quarantine: Annotated[bool, typer.Option("--quarantine", help="Quarantine bad rows instead "
                                             "of failing the table.")] = False,
    wait: Annotated[float | None, typer.Option("--wait", help="Seconds to wait for another "
                                               "run's lock.")] = None,
    on_error_cells: Annotated[str | None, typer.Option(
        "--on-error-cells", help="Excel error cells (#REF!, #N/A...) and uncalculated formulas: "
        "null (NA + a warning; the default), fail, or quarantine.")] = None,
    drop_total_rows: Annotated[bool, typer.Option(
        "--drop-total-rows", help="Drop rows that look like totals rows (default: keep, "
        "with a warning).")] = False,
    executor: Annotated[str | None, typer.Option(
        "--executor", help="Where each source file is read and normalised: auto (the "
        "default: processes for 150+ files to read and 1.5+ idle cores, else threads), "
        "threads, processes, or dask."
    )] = None,
    scheduler: Annotated[str | None, typer.Option(
        "--scheduler", help="The Dask scheduler, tcp://HOST:PORT (default: "
        "DASK_SCHEDULER_ADDRESS, else a local cluster).")] = None,
    tables: Annotated[str | None, typer.Option(
        "--tables", help="Run only these tables, comma-separated (e.g. moldInfo,itemInfo); "
        "the others keep their published versions.")] = None,
    checks: ChecksOpt = None, as_json: Json = False, verbose: Verbose = False,
) -> None:
    """Run the pipeline: Phase 1 (collect) then Phase 2 (load), with rollback and reports."""
    _setup_logging(verbose)
    _without_pandas()
    _arrow_memory_pool()

    store: list[tuple[Path, bytes | None]] = []  # the annotations as the run found them

    def go() -> dict[str, Any]:
        # Every value goes through Settings, which checks it as it checks the config file's.
        orch = _orchestrator(root, config, source_dir, schema, annotations, default_dir,
                             lock_timeout=wait, max_retries=max_retries,
                             on_error_cells=on_error_cells, drop_total_rows=drop_total_rows or None,
                             executor=executor, scheduler=scheduler, tables=tables,
                             checks_path=checks)
        store.append((orch.paths.annotation_path, _read_or_none(orch.paths.annotation_path)))
        return _run_with_progress(orch, None, not no_notify,
                                  "quarantine" if quarantine else None, quiet=as_json)

    try:
        result = _guard(verbose, go)
    except KeyboardInterrupt:
        raise _fail_interrupted(store[0] if store else None) from None
    refused = [e for e in result["collector_result"].get("errors", [])
               if e["error_type"] == "CONFIG_ERROR"]
    if refused:  # the run was refused for its configuration (and recorded if the plant ran)
        raise _fail(refused[0]["message"], EXIT_USAGE)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        from dpo.cli.console import print_summary

        print_summary(result)
    raise typer.Exit(EXIT_CODES.get(result["overall_status"], 1))


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _fail_interrupted(before: tuple[Path, bytes | None] | None) -> typer.Exit:
    """Ctrl-C: one line saying where the store is (every step of a run is atomic)."""
    from rich.console import Console

    if before is None:
        where = "the store is unchanged"
    else:
        path, old = before
        stamp = _newest_stamp(old)
        if _read_or_none(path) != old:
            where = f"the run published before it stopped; the store is at {path}"
        elif stamp:
            where = f"the store is unchanged at {path} (newest version {stamp})"
        else:
            where = f"the store is unchanged (nothing published yet: no {path})"
    Console(stderr=True).print(f"interrupted; {where}", highlight=False, soft_wrap=True,
                               markup=False)
    return typer.Exit(130)


def _newest_stamp(annotations: bytes | None) -> str | None:
    import re

    try:
        stored = json.loads(annotations or b"{}").values()
    except ValueError:
        return None
    stamps = [m.group(1) for p in stored if (m := re.search(r"(\d{8}_\d{4}(?:-\d+)?)_", str(p)))]
    return max(stamps, default=None)


def _run_with_progress(orch: Any, retries: int | None, notify: bool, policy: str | None,
                       *, quiet: bool) -> dict[str, Any]:
    from dpo.cli.console import progress_display

    with progress_display(enabled=not quiet) as progress:
        result: dict[str, Any] = orch.run_pipeline(
            max_retries=retries, enable_notifications=notify, on_bad_rows=policy,
            progress=progress)
    return result


def demo(
    target: Annotated[Path, typer.Argument(help="Folder for the demo plant.")] = Path("build/demo"),
    months: Annotated[int, typer.Option(min=1, help="Monthly reports to generate.")] = 3,
    rows: Annotated[int, typer.Option(min=0, help="Rows per monthly report.")] = 700,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same plant).")] = 0,
    as_json: Json = False, verbose: Verbose = False,
) -> None:
    """Generate a realistic demo plant in TARGET and run the pipeline on it."""
    _setup_logging(verbose)
    from dpo.demo.plant import demo_folder_refusal, generate_plant, mark_demo_folder

    refusal = demo_folder_refusal(target)
    if refusal:
        raise _fail(f"refusing to write the demo plant: {refusal}", EXIT_USAGE)
    mark_demo_folder(target)
    plant = generate_plant(target, months=months, rows_per_month=rows, seed=seed)
    if not as_json:
        typer.echo(f"demo plant: {len(plant.monthly_files)} monthly reports, "
                   f"{len(plant.po_files)} purchase-order files, {len(plant.static_files)} "
                   f"master tables in {plant.root}")
    run(root=target, config=None, source_dir=None, schema=None, annotations=None,
        default_dir=None, max_retries=None, no_notify=False, quarantine=False, wait=None,
        on_error_cells=None, drop_total_rows=False, executor=None, scheduler=None,
        tables=None, checks=None, as_json=as_json, verbose=verbose)


def validate(root: Root = None, config: Config = None, source_dir: Source = None,
             schema: SchemaOpt = None, checks: ChecksOpt = None, as_json: Json = False,
             verbose: Verbose = False) -> None:
    """Check the schema, the data checks file and every source file without writing anything
    (inputs on object storage are mirrored into the local working folder first, as a run
    does)."""
    _setup_logging(verbose)
    from dpo.cli.console import print_validation
    from dpo.collect.validate import validate_sources

    def go() -> list[dict[str, Any]]:
        from dpo.checks.spec import load_checks
        from dpo.inputs.plant import mirror_inputs
        from dpo.schema import load_schema

        orch = _orchestrator(root, config, source_dir, schema, None, None, checks_path=checks)
        mirror_inputs(orch.paths, orch.settings)
        checks_file = orch.paths.checks_file  # refused (exit 2) before any source is read
        load_checks(checks_file, load_schema(orch.paths.schema_path, orch.paths.root),
                    orch.paths.relative(checks_file))
        return validate_sources(orch.paths, orch.settings.row_policy())

    rows = _guard(verbose, go)
    if as_json:  # one object per file: table, file, status (ok|warning|error), rows, message
        typer.echo(json.dumps(rows, indent=2))
    else:
        print_validation(rows)
    # A warning is what a run would publish with a warning: not a reason to fail the check.
    problems = [row for row in rows if row["status"] == "error"]
    raise typer.Exit(1 if problems else 0)


def health(root: Root = None, config: Config = None, default_dir: Out = None,
           as_json: Json = False, verbose: Verbose = False) -> None:
    """Paths, last run, disk space and write permission: healthy or degraded."""
    from dpo.pipeline.health import pipeline_health_check

    def go() -> dict[str, Any]:
        from dpo.config import load_settings, resolve_paths

        settings = load_settings(config, root_dir=str(root) if root else None,
                                 default_dir=default_dir)
        return pipeline_health_check(paths=resolve_paths(settings), config=settings)

    report = _guard(verbose, go)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        from dpo.cli.console import print_health

        print_health(report)
    raise typer.Exit(0 if report["service_status"] == "healthy" else 1)


# The module that defines each command besides this one's (run, demo, validate, health).
ELSEWHERE = {"history": "observe", "metrics": "observe", "dashboard": "observe",
             "versions": "store", "rollback": "store", "diff": "store", "show": "show",
             "serve": "serve", "check": "checks"}


def build_app(command: str | None = None) -> typer.Typer:
    """The `dpo` command; with `command`, holding only that command (None or a name it does
    not know: all of them, for --help and its error message). typer builds every command it
    holds from its function's signature at each start: a `dpo run` building all thirteen
    paid ~40 ms for it, a fifth of a no-change run's start-up (BENCHMARKS.md, #22)."""
    app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                      help=HELP)
    app.callback()(_options)
    own: dict[str, Callable[..., None]] = {"run": run, "demo": demo, "validate": validate,
                                           "health": health}
    for name in [command] if command in own or command in ELSEWHERE else [*own, *ELSEWHERE]:
        function = own.get(name) or getattr(
            importlib.import_module(f"dpo.cli.{ELSEWHERE[name]}"), name)
        app.command(name=name)(function)
    return app


def main() -> None:
    build_app(_command_named(sys.argv[1:]))()


def _command_named(args: list[str]) -> str | None:
    """The command a command line names: its first word that is not an option (the group's
    only option, --version, takes no value)."""
    return next((arg for arg in args if not arg.startswith("-")), None)

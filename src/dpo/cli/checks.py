"""`dpo check`: the data checks on the current published store, without a run (what `dbt test`
is to dbt), and `dpo check --suggest`: a starter checks file profiled from the store.

Exit codes: 0 every check passed or only warn/quarantine checks failed · 1 a fail-severity
check failed · 2 a bad checks file, schema or usage (an unknown table).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

Root = Annotated[Path | None, typer.Option("--root", help="Root that relative paths resolve "
                                           "against (default: current directory).")]
Config = Annotated[Path | None, typer.Option("--config", help="TOML config file ([dpo] table).")]
ChecksOpt = Annotated[str | None, typer.Option("--checks", help="checks_path (default: "
                                               "dataChecks.toml beside the schema file)")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Verbose = Annotated[bool, typer.Option("-v", "--verbose", help="DEBUG logs and tracebacks.")]


def check(
    tables: Annotated[list[str] | None, typer.Argument(help="Tables to check (default: all "
                                                       "with checks).")] = None,
    root: Root = None, config: Config = None, checks_path: ChecksOpt = None,
    suggest: Annotated[bool, typer.Option("--suggest", help="Profile the store and write a "
                                          "starter checks file instead.")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="With --suggest: the file to write "
                                             "(default: print it).")] = None,
    as_json: Json = False, verbose: Verbose = False,
) -> None:
    """Run the data checks on the current published store (no run, nothing written)."""
    from dpo.cli.runtime import _guard, _setup_logging, _without_pandas

    _setup_logging(verbose)
    _without_pandas()
    if suggest:
        text = _guard(verbose, lambda: _suggest(root, config, list(tables or [])))
        if out is None:
            typer.echo(text, nl=False)
        else:
            target = out if out.is_absolute() else Path(root or ".") / out
            target.write_text(text, encoding="utf-8")
            typer.echo(f"suggested checks written to {target}")
        raise typer.Exit(0)
    results = _guard(verbose, lambda: _run(root, config, checks_path, list(tables or [])))
    failed = [r for r in results if r["status"] == "failed"]
    fatal = [r for r in failed if r["severity"] == "fail"]
    if as_json:
        status = "failed" if fatal else "warning" if failed else "passed"
        typer.echo(json.dumps({"status": status, "checks": results}, indent=2))
    else:
        _print(results)
    raise typer.Exit(1 if fatal else 0)


def _context(root: Path | None, config: Path | None, checks_path: str | None
             ) -> tuple[Any, Any, Any]:
    from dpo.config import load_settings, plant_problem, resolve_paths
    from dpo.errors import ConfigError
    from dpo.schema import load_schema

    settings = load_settings(config, root_dir=str(root) if root else None,
                             checks_path=checks_path)
    paths = resolve_paths(settings)
    problem = plant_problem(paths)
    if problem:
        raise ConfigError(problem)
    return settings, paths, load_schema(paths.schema_path, paths.root)


def _run(root: Path | None, config: Path | None, checks_path: str | None,
         tables: list[str]) -> list[dict[str, Any]]:
    from dpo.checks.spec import load_checks
    from dpo.errors import ConfigError
    from dpo.load.checking import check_published
    from dpo.store.session import open_store_for

    settings, paths, schema = _context(root, config, checks_path)
    checks = load_checks(paths.checks_file, schema, paths.relative(paths.checks_file))
    names = {spec.name for spec in schema}
    unknown = [t for t in tables if t not in names]
    if unknown:
        raise ConfigError(f"unknown table(s) {', '.join(unknown)}; tables: "
                          f"{', '.join(sorted(names))}")
    if not checks.checks:
        raise ConfigError(f"no checks: {paths.relative(paths.checks_file)} "
                          + ("holds no [[check]]" if checks.path else "does not exist")
                          + " (`dpo check --suggest` writes a starter file)")
    store = open_store_for(paths, settings)
    return [r.to_dict() for r in check_published(store, paths, schema, checks, tables,
                                                 settings.row_policy())]


def _suggest(root: Path | None, config: Path | None, tables: list[str]) -> str:
    from dpo.checks.suggest import suggest_checks
    from dpo.store.session import open_store_for

    settings, paths, schema = _context(root, config, None)
    return suggest_checks(open_store_for(paths, settings), schema, tables)


def _print(results: list[dict[str, Any]]) -> None:
    """One line per check (and one per example of a failed one): readable in a pipe."""
    from rich.console import Console
    from rich.markup import escape

    console = Console(soft_wrap=True, highlight=False)
    marks = {"passed": "[green]passed[/]", "failed": "[red]FAILED[/]",
             "skipped": "[yellow]skipped[/]"}
    for r in results:
        said = f" ({r['failing_rows']} row(s))" if r["status"] == "failed" else ""
        why = f": {escape(r['reason'])}" if r.get("reason") else ""
        if r["rule"] == "row_count_change" and r["status"] == "failed":
            said = f" ({r['rows_after']} rows against {r['rows_before']})"
        console.print(f"{marks[r['status']]} {escape(r['table'])}: {escape(r['name'])} "
                      f"{escape('[' + r['rule'] + ', ' + r['severity'] + ']')}{said}{why}")
        for e in r["examples"][:5]:
            where = f"{e['file']} [{e['sheet']}] row {e['row']}" if e["file"] else "(source?)"
            console.print(f"    {escape(where)}: {escape(json.dumps(e['values'], default=str))}")
    failed = sum(r["status"] == "failed" for r in results)
    console.print(f"{len(results)} check(s), {failed} failed")

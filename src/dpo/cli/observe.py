"""`dpo history`, `dpo metrics` and `dpo dashboard`: the run ledger from the command line.

Added to the `dpo` command by `dpo.cli.build_app`. Imports stay inside the commands so
`dpo --help` stays fast. Exit codes: 0 done, 1 ledger unreadable or output not writable,
2 bad usage or configuration.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from dpo.observe.history import history_records

Root = Annotated[Path | None, typer.Option("--root", help="Root that relative paths resolve "
                                           "against (default: current directory).")]
Config = Annotated[Path | None, typer.Option("--config", help="TOML config file ([dpo] table).")]
Out = Annotated[str | None, typer.Option("--default-dir", help="default_dir (output root)")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
EXIT_USAGE = 2


def _fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _context(root: Path | None, config: Path | None, default_dir: str | None) -> tuple[Any, Any]:
    """(Paths, Settings), or exit 2 with the configuration problem or a missing plant."""
    from dpo.config import load_settings, plant_problem, resolve_paths
    from dpo.errors import ConfigError

    try:
        settings = load_settings(config, root_dir=str(root) if root else None,
                                 default_dir=default_dir)
        paths = resolve_paths(settings)
    except ConfigError as exc:
        raise _fail(exc.message) from exc
    problem = plant_problem(paths)  # a wrong --root: say so, and create nothing there
    if problem:
        raise _fail(problem)
    return paths, settings


def _console() -> Any:
    """Rich output on stdout; wide when piped, so tables keep whole run ids and statuses."""
    import sys

    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=160)


def _snapshot(paths: Any, **query: Any) -> Any:
    """The ledger's runs (Ledger.snapshot), or exit 1 naming an unreadable ledger."""
    import sqlite3

    from dpo.observe.ledger import Ledger, LedgerOutdated

    # Read-only: an operator who may only read the plant sees its runs (and nothing migrates).
    ledger = Ledger(paths.output_dir / "runs.sqlite", read_only=True)
    try:
        return ledger.snapshot(**query)
    except LedgerOutdated as exc:
        raise _fail(str(exc), 1) from exc
    except sqlite3.Error as exc:
        raise _fail(f"run ledger {ledger.path} is unreadable: {exc}", 1) from exc


def history(
    root: Root = None, config: Config = None, default_dir: Out = None, as_json: Json = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Newest N runs.")] = 20,
) -> None:
    """The recorded runs, newest first: status per phase, durations, rollbacks, errors."""
    paths, _ = _context(root, config, default_dir)
    records = history_records(_snapshot(paths, limit=limit, detail=True))
    if as_json:
        typer.echo(json.dumps(records, indent=2))
        return
    from rich.table import Table

    from dpo.cli.console import STYLE

    out = _console()

    if not records:
        out.print(f"no runs recorded in {paths.output_dir}")
        return
    runs = sum(r["kind"] == "run" for r in records)
    table = Table(title=f"dpo runs (newest {runs})")
    for col in ("run", "started", "status", "collector", "loader", "duration", "rollbacks",
                "notifications", "errors"):
        table.add_column(col, justify="right" if col in ("duration", "errors") else "left",
                         no_wrap=col in ("run", "started"))
    for r in records:
        if r["kind"] != "run":  # a rollback or release done by hand: in its own table below
            continue
        status = r["overall_status"] or r["state"]
        table.add_row(
            r["run_id"], str(r["started_at"])[:19].replace("T", " "),
            f"[{STYLE.get(status, 'magenta')}]{status}[/]", r["collector_status"] or "–",
            r["loader_status"] or "–",
            "–" if r["duration_s"] is None else f"{r['duration_s']:.2f} s",
            "–" if r["rollbacks"] is None else
            f"{r['rollbacks']}" + (f" ({r['rollbacks_failed']} failed)" if r["rollbacks_failed"]
                                   else ""),
            _notifications(r),
            "–" if r["errors_count"] is None else str(r["errors_count"]))
    out.print(table)
    _print_actions(out, [r for r in records if r["kind"] != "run"])


def _notifications(run: dict[str, Any]) -> str:
    """'2 sent', '2 written to …/notifications' (no channel configured: files), ', 1 failed'."""
    if run["notifications_sent"] is None:
        return "–"
    from collections import Counter

    done = [str(n["channel"]) for n in run["notifications"] if n["outcome"] == "sent"]
    files = Counter(Path(c.removeprefix("file:")).name for c in done if c.startswith("file:"))
    sent = run["notifications_sent"] - sum(files.values())
    parts = [f"{sent} sent"] if sent or not files else []
    parts += [f"{n} written to …/{folder}" for folder, n in sorted(files.items())]
    if run["notifications_failed"]:
        parts.append(f"{run['notifications_failed']} failed")
    return ", ".join(parts)


def _print_actions(out: Any, actions: list[dict[str, Any]]) -> None:
    """Rollbacks and releases done by hand (`dpo rollback`), newest first."""
    if not actions:
        return
    from rich.table import Table

    table = Table(title="manual actions (dpo rollback)")
    for col in ("at", "action", "table", "from", "to", "by", "command"):
        table.add_column(col, no_wrap=col != "command")
    for a in actions:
        table.add_row(str(a["started_at"])[:19].replace("T", " "),
                      a["kind"].removeprefix("manual_"), a["table"], a["from"] or "–",
                      a["to"] or "–", a["user"], a["command"])
    out.print(table)


def metrics(
    root: Root = None, config: Config = None, default_dir: Out = None, as_json: Json = False,
    prometheus: Annotated[bool, typer.Option("--prometheus", help="Prometheus text exposition "
                                             "format.")] = False,
    since: Annotated[str | None, typer.Option("--since", help="Only runs started in the last "
                                              "DURATION (e.g. 30m, 24h, 7d).")] = None,
) -> None:
    """Success rates, rollback frequency, processing times, data quality, notifications."""
    from dpo.observe.metrics import compute, prometheus_text, since_epoch

    if as_json and prometheus:
        raise _fail("give --json or --prometheus, not both")
    try:
        start = since_epoch(since)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    paths, _ = _context(root, config, default_dir)
    snap = _snapshot(paths, since_epoch=start)
    m = compute(snap, window=f"runs of the last {since}" if since else "all runs")
    if prometheus:
        typer.echo(prometheus_text(m), nl=False)
    elif as_json:
        typer.echo(json.dumps(m, indent=2))
    else:
        _print_metrics(m)


def _print_metrics(m: dict[str, Any]) -> None:
    from rich.table import Table

    out = _console()

    def pct(v: float | None) -> str:
        return "–" if v is None else f"{100 * v:.1f}%"

    def sec(v: float | None) -> str:
        return "–" if v is None else f"{v:.3f} s"

    w = m["window"]
    out.print(f"[bold]dpo metrics[/] over {w['description']}: {w['runs']} runs "
              f"({', '.join(f'{n} {s}' for s, n in m['runs_by_status'].items() if n)})")
    rb, nt = m["rollbacks"], m["notification_triggers"]
    rates = Table(show_header=False, box=None)
    for label, value in (
            ("pipeline success rate", pct(m["pipeline_success_rate"])),
            ("collector success rate", pct(m["phase_success_rates"]["collector"])),
            ("loader success rate", pct(m["phase_success_rates"]["loader"])),
            ("rollback frequency", f"{pct(m['rollback_frequency'])} ({rb['total']} rollbacks, "
                                   f"{rb['failed']} failed, {rb['manual']} manual)"),
            ("notification triggers", f"{pct(nt['rate'])} ({nt['sent']} sent, "
                                      f"{nt['failed']} failed, {nt['disabled']} disabled)")):
        rates.add_row(label, value)
    out.print(rates)
    times = Table(title="processing time")
    for col in ("phase", "median", "p95", "latest", "runs"):
        times.add_column(col)
    for phase, st in m["processing_time"].items():
        times.add_row(phase, sec(st["median"]), sec(st["p95"]), sec(st["latest"]),
                      str(st["count"]))
    out.print(times)
    quality = Table(title="data quality per table")
    for col in ("table", "rows", "duplicates removed", "rows rejected", "changed", "failed"):
        quality.add_column(col)
    for name, t in m["data_quality"]["tables"].items():
        quality.add_row(name, "–" if t["rows"] is None else str(t["rows"]),
                        str(t["duplicates_removed"]), str(t["rows_rejected"]),
                        f"{t['changed_runs']}/{t['runs']}", str(t["failed_runs"]))
    out.print(quality)
    _print_warnings(out, m["data_quality"])
    if m["data_quality"]["errors_by_type"]:
        out.print("errors: " + ", ".join(f"{t} × {n}"
                                         for t, n in m["data_quality"]["errors_by_type"].items()))


def _print_warnings(out: Any, quality: dict[str, Any]) -> None:
    """Data-quality warnings by kind: in the newest finished run, and summed over the window's
    runs (a file read again says its warnings again: the sum counts them once per run)."""
    from rich.table import Table

    from dpo.quality import kind_words

    window, latest = quality["warnings_by_kind"], quality["warnings_by_kind_latest"]
    if not window:
        out.print("data-quality warnings: none")
        return
    table = Table(title="data-quality warnings")
    for col in ("kind", "newest run", "all runs of the window"):
        table.add_column(col, justify="left" if col == "kind" else "right")
    for kind, count in window.items():
        table.add_row(kind_words(kind)[1], str(latest.get(kind, 0)), str(count))
    out.print(table)


def dashboard(
    root: Root = None, config: Config = None, default_dir: Out = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="HTML file to write (default: "
                                                  "<output dir>/dashboard.html).")] = None,
) -> None:
    """Write the self-contained HTML dashboard of the newest runs (no network needed)."""
    from dpo.errors import DpoError
    from dpo.observe.dashboard import render, write_dashboard
    from dpo.observe.metrics import RECENT_RUNS, compute

    paths, _ = _context(root, config, default_dir)
    snap = _snapshot(paths, limit=RECENT_RUNS)
    target = out_file or paths.output_dir / "dashboard.html"
    try:
        write_dashboard(target, render(snap, compute(snap, window=f"the newest {RECENT_RUNS} runs")))
    except (DpoError, OSError) as exc:
        problem = exc.message if isinstance(exc, DpoError) else f"cannot write {target}: {exc}"
        hint = "" if out_file else " (give another file with --out FILE)"
        raise _fail(f"{problem}{hint}", 1) from exc
    typer.echo(str(target))

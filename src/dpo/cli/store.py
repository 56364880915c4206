"""`dpo versions`, `dpo rollback` and `dpo diff`: the versioned store from the command line.

Added to the `dpo` command by `dpo.cli.build_app`; imports stay inside the commands so
`dpo --help` stays fast. A wrong --root, an unknown table or version is bad usage (exit 2) and
writes nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from dpo.config import Settings
    from dpo.store.api import Store, VersionInfo

Root = Annotated[Path | None, typer.Option("--root", help="Root that relative paths resolve "
                                           "against (default: current directory).")]
Config = Annotated[Path | None, typer.Option("--config", help="TOML config file ([dpo] table).")]
Annot = Annotated[str | None, typer.Option("--annotations", help="annotation_path")]
Out = Annotated[str | None, typer.Option("--default-dir", help="default_dir (output root)")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Verbose = Annotated[bool, typer.Option("-v", "--verbose", help="DEBUG logs and tracebacks.")]
STAMP = re.compile(r"\d{8}_\d{4}(?:-\d+)?")


def plant_store(root: Path | None, config: Path | None, annotations: str | None,
                default_dir: str | None) -> tuple[Store, Settings]:
    """The store of the plant at --root (on disk or on object storage), to read, and the
    settings it was opened with (for store_session); ConfigError (exit 2) when there is none."""
    from dpo.consume.table import open_plant_store

    return open_plant_store(root, config, annotation_path=annotations, default_dir=default_dir)


def known_table(store: Store, name: str) -> None:
    """ConfigError naming the tables (and the closest one) when `name` is not one of them."""
    from dpo.consume.table import known_table as check

    check(store, name)


def known_version(store: Store, table: str, stamp: str) -> VersionInfo:
    from dpo.errors import ConfigError

    versions = store.list_versions(table)
    for version in versions:
        if version.stamp == stamp:
            return version
    listed = ", ".join(v.stamp for v in versions) or "none yet"
    raise ConfigError(f"no version {stamp} of {table}; versions: {listed}")


def versions(table: str, root: Root = None, config: Config = None, annotations: Annot = None,
             default_dir: Out = None, as_json: Json = False, verbose: Verbose = False) -> None:
    """List the stored versions of TABLE (newest last); a held table says since when."""
    from dpo.cli.runtime import _guard

    def go() -> list[dict[str, Any]]:
        store, _ = plant_store(root, config, annotations, default_dir)
        known_table(store, table)
        hold = store.holds().get(table)
        rows = []
        for v in store.list_versions(table):
            row = v.to_dict()
            row["held_since"] = hold.since if hold and v.current else None
            rows.append(row)
        return rows

    rows = _guard(verbose, go)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        from dpo.cli.console import print_versions

        print_versions(table, rows)
    raise typer.Exit(0 if rows else 1)


def rollback(
    table: Annotated[str | None, typer.Argument(help="Table to roll back.")] = None,
    to: Annotated[str, typer.Option("--to", help="Version stamp, e.g. 20261127_0612.")] = "",
    all_tables: Annotated[bool, typer.Option("--all", help="Roll back every table to its "
                                             "version at or before --to.")] = False,
    release: Annotated[bool, typer.Option("--release", help="End the hold of a rolled-back "
                                          "table: the next run publishes what its sources "
                                          "give.")] = False,
    root: Root = None, config: Config = None, annotations: Annot = None, default_dir: Out = None,
    verbose: Verbose = False,
) -> None:
    """Point TABLE (or --all tables) back at an earlier, hash-verified version.

    The table is then held there: runs do not republish it until one of its source files
    changes, or until `dpo rollback TABLE --release`.
    """
    from dpo.cli.runtime import EXIT_USAGE, _fail, _guard, _setup_logging

    _setup_logging(verbose)
    if (table is None) == (not all_tables) or release == bool(to):
        raise _fail("give TABLE --to VERSION, --all --to VERSION, or TABLE (or --all) "
                    "--release", EXIT_USAGE)
    if to and not STAMP.fullmatch(to):
        raise _fail(f"--to {to!r}: give a version stamp like 20240502_0600 (see dpo versions "
                    "TABLE)", EXIT_USAGE)

    def go() -> list[str]:
        from dpo.store.session import store_session

        store, settings = plant_store(root, config, annotations, default_dir)
        if table is not None:
            known_table(store, table)
        if not release:
            _targets(store, table, to)  # a wrong version is refused before the lock is made
        with store_session(store.paths, settings, timeout=0) as held:
            if release:
                return _release(held, table)
            return _rollback(held, table, to)

    for line in _guard(verbose, go):
        typer.echo(line)


def _command() -> str:
    import shlex
    import sys

    return shlex.join(["dpo", *sys.argv[1:]])


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _record(store: Store, action: str, table: str, old: str | None, new: str | None) -> None:
    from datetime import datetime

    from dpo.observe.ledger import Ledger

    Ledger(store.paths.output_dir / "runs.sqlite").record_action(
        action, table, old, new, command=_command(), user=_user(), when=datetime.now())


def _targets(store: Store, table: str | None, to: str) -> dict[str, str]:
    """{table: version} to roll back to; ConfigError when there is none."""
    from dpo.errors import ConfigError

    if table is not None:
        known_version(store, table, to)
        return {table: to}
    targets: dict[str, str] = store.versions_at(to)
    if not targets:
        firsts = [f"{t} {vs[0].stamp}" for t in sorted(store.annotations())
                  if (vs := store.list_versions(t))]
        raise ConfigError(f"no version at or before {to} of any table; earliest: "
                          f"{', '.join(firsts) or 'none'}")
    return targets


def _rollback(store: Store, table: str | None, to: str) -> list[str]:
    """Move the tables whose target is not already current; say for every table where it is
    now and whether it is held (the store's holds decide: a version equal to what the
    sources give is not held, dpo.store.api.hold_rolled_back)."""
    targets = _targets(store, table, to)
    skipped = [] if table is not None else sorted(set(store.annotations()) - set(targets))
    before = {t: next((v.stamp for v in store.list_versions(t) if v.current), None)
              for t in targets}
    moving = {t: s for t, s in targets.items() if before[t] != s}
    restored = store.rollback(moving, command=_command()) if moving else []
    holds = store.holds()
    said: dict[str, str] = {}
    for version in restored:
        _record(store, "rollback", version.table, before[version.table], version.stamp)
        said[version.table] = (f"{version.table}: now at {version.stamp} ({version.rows} rows, "
                               f"hash {str(version.content_hash)[:12]} verified); "
                               f"{_held_text(version.table, holds)}")
    for name in targets.keys() - moving.keys():
        hold = holds.get(name)
        said[name] = (f"{name}: {targets[name]} is already the current version; " + (
            f"still held there since {hold.since} (`dpo rollback {name} --release` ends it)"
            if hold else "nothing held"))
    return [said[t] for t in sorted(said)] + [
        f"{t}: no version at or before {to}; left where it is" for t in skipped]


def _held_text(table: str, holds: dict[str, Any]) -> str:
    if table in holds:
        return f"held until one of its sources changes or `dpo rollback {table} --release`"
    return "nothing held: it is what the sources give now"


def _release(store: Store, table: str | None) -> list[str]:
    from dpo.load.state import forget_loader_state
    from dpo.store.api import release_holds

    names = [table] if table is not None else sorted(store.holds())
    dropped = release_holds(store, names)
    if dropped:
        forget_loader_state(store.paths.cache_dir)  # else a no-change run would skip it
    for hold in dropped:
        _record(store, "release", hold.table, hold.version, None)
    lines = [f"{h.table}: released from {h.version}; the next run publishes what its sources "
             "give" for h in dropped]
    return lines or [f"{', '.join(names) or 'no table'}: not held; nothing to release"]


def diff(
    table: Annotated[str, typer.Argument(help="Table to compare.")],
    from_version: Annotated[str | None, typer.Argument(
        metavar="[FROM]", help="Older version (default: the one current before the last "
        "publish or rollback; with TO: the one before TO).")] = None,
    to_version: Annotated[str | None, typer.Argument(
        metavar="[TO]", help="Newer version (default: the current one).")] = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="Rows added/removed to show.")] = 10,
    root: Root = None, config: Config = None, annotations: Annot = None, default_dir: Out = None,
    as_json: Json = False, verbose: Verbose = False,
) -> None:
    """What changed in TABLE between two versions: rows added and removed, columns edited.

    Default: the version that was current before the pointer last moved (a publish or a
    rollback) vs the current one; the command says which two it compares.
    """
    from dpo.cli.runtime import _guard

    def go() -> dict[str, Any]:
        store, _ = plant_store(root, config, annotations, default_dir)
        known_table(store, table)
        old, new, basis = _diff_versions(store, table, from_version, to_version)
        return {**_diff(store, old, new, limit), "compared": basis}

    report = _guard(verbose, go)
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
    else:
        _print_diff(report)


def _diff_versions(store: Store, table: str, older: str | None, newer: str | None
                   ) -> tuple[VersionInfo, VersionInfo, str | None]:
    """The two versions to compare, and why these when the command chose them: by default the
    current version and the one current before the pointer last moved (by a publish or a
    rollback, dpo.store.pointer), else the version before the newer one."""
    from dpo.errors import ConfigError

    versions = store.list_versions(table)  # oldest first
    current = next((v for v in versions if v.current), None)
    new = known_version(store, table, newer) if newer else current
    if new is None:
        raise ConfigError(f"no version of {table} is published yet")
    if older:
        return known_version(store, table, older), new, None
    moves = store.pointer_history(table) if not newer else []
    if len(moves) >= 2 and moves[-1][0] == new.stamp:
        previous, kind = moves[-2][0], moves[-1][1]
        found = next((v for v in versions if v.stamp == previous), None)
        if found is not None:
            how = "a rollback (dpo rollback)" if kind == "rollback" else "a publish"
            return found, new, (f"the current version vs the one current before it, until {how} "
                                "moved the pointer")
    before = versions[:versions.index(new)]
    if not before:
        raise ConfigError(f"no version of {table} before {new.stamp} to compare with; versions: "
                          f"{', '.join(v.stamp for v in versions)}")
    return before[-1], new, f"{new.stamp} vs the version before it"


def _diff(store: Store, old: VersionInfo, new: VersionInfo, limit: int) -> dict[str, Any]:
    from dpo.store.changes import diff_tables
    from dpo.tables.parquet import read_verified

    old_table, new_table = (read_verified(store.local_file(old.stored)),
                            read_verified(store.local_file(new.stored)))
    found = diff_tables(old_table, new_table)
    counts = found.counts(old.stamp)
    del counts["previous"]
    return {"table": new.table, "from": old.stamp, "to": new.stamp, **counts,
            "columns_changed_rows": found.columns_changed,
            "added": new_table.take(found.added[:limit]).to_pylist(),
            "removed": old_table.take(found.removed[:limit]).to_pylist()}


def _print_diff(report: dict[str, Any]) -> None:
    from dpo.cli.console import stdout

    def line(text: str) -> None:
        stdout().print(text, soft_wrap=True, highlight=False, markup=False)

    if report["compared"]:
        line(f"comparing {report['from']} -> {report['to']}: {report['compared']}")
    line(f"{report['table']}: {report['from']} -> {report['to']}: "
         f"+{report['rows_added']:,} rows added, -{report['rows_removed']:,} rows removed")
    edited = report["columns_changed_rows"]
    if edited:
        line("values changed in: " + ", ".join(f"{c} ({n:,} rows)" for c, n in edited.items()))
    for key in ("columns_added", "columns_removed"):
        if report[key]:
            line(f"{key.replace('_', ' ')}: {', '.join(report[key])}")
    for sign, key in (("+", "added"), ("-", "removed")):
        rows = report[key]
        total = report[f"rows_{key}"]
        if rows:
            line(f"first {len(rows)} of {total:,} rows {key}:")
        for row in rows:
            line(f"{sign} " + ", ".join(f"{k}={v}" for k, v in row.items() if v is not None))

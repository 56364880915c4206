"""The checks file (`database/dataChecks.toml`): a contract, since tools outside dpo write it.

    [[check]]
    table = "productRecords"        # required: a schema table
    name = "..."                    # optional: default made from the rule
    severity = "warn"               # warn (default) | fail | quarantine
    <exactly one rule>              # unique, not_null, references, accepted_values, min/max,
                                    # rule, row_count_change, min_file_rows_ratio

Validated against the schema before any data is read (docs/behaviour.md, "Data checks"):
every problem is listed at once, each naming its check (by name, else by index) and key.
Stdlib only: loading the file is part of deciding that a run has nothing to do.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dpo.checks.expr import Expr, ExprError, columns_of, parse, type_problems
from dpo.errors import ConfigError
from dpo.schema import Schema, TableSpec

SEVERITIES = ("warn", "fail", "quarantine")
# Each rule's keys: a check holds exactly one rule (min and max are one rule, "min_max").
RULES: dict[str, tuple[str, ...]] = {
    "unique": ("unique",), "not_null": ("not_null",), "references": ("references",),
    "accepted_values": ("accepted_values",), "min_max": ("min", "max"), "rule": ("rule",),
    "row_count_change": ("row_count_change",), "min_file_rows_ratio": ("min_file_rows_ratio",),
}
RULE_KEYS = frozenset(k for keys in RULES.values() for k in keys)
WITH_COLUMN = frozenset({"references", "accepted_values", "min_max"})
COMMON_KEYS = frozenset({"table", "name", "severity", "column"})


class ChecksError(ConfigError):
    """The checks file is refused; `problems` holds one line per problem."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.problems = problems
        self.what = "checks file"
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"checks file {path} rejected ({len(problems)} problem(s)):\n{lines}",
                         file=path)


@dataclass(frozen=True)
class Check:
    """One declared check. `rule` is its rule's key (RULES); `params` the rule's values."""

    index: int  # 1-based position in the file
    table: str
    name: str
    rule: str
    severity: str
    column: str | None = None
    params: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    expr: Expr | None = field(default=None, compare=False, hash=False)  # rule = "..."

    @property
    def columns(self) -> tuple[str, ...]:
        """The table's columns the check reads."""
        if self.rule in ("unique", "not_null"):
            return tuple(self.params[self.rule])
        if self.expr is not None:
            return tuple(sorted(columns_of(self.expr)))
        return (self.column,) if self.column else ()

    @property
    def referenced(self) -> str | None:
        """The table a `references` check looks values up in."""
        return str(self.params["references"]).split(".", 1)[0] if self.rule == "references" \
            else None


@dataclass(frozen=True)
class Checks:
    """A validated checks file; `fingerprint` changes with its bytes (none: no file)."""

    path: Path | None
    checks: tuple[Check, ...] = ()
    fingerprint: str = ""

    def for_table(self, table: str) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.table == table)

    def referencing(self, table: str) -> set[str]:
        """Tables with a `references` check into `table`."""
        return {c.table for c in self.checks if c.referenced == table}


NO_CHECKS = Checks(None)


def checks_fingerprint(path: Path) -> str:
    """The checks file's content hash ("" when there is none): stdlib, for the no-change run."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise ConfigError(f"checks file {path}: cannot be read ({exc.strerror})",
                          file=str(path)) from exc


def load_checks(path: Path, schema: Schema, shown: str | None = None) -> Checks:
    """The checks file validated against `schema`; an absent file is no checks. Raises
    ChecksError listing every problem. `shown`: how messages name the file."""
    where = shown or str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return NO_CHECKS
    except OSError as exc:
        raise ChecksError(where, [f"cannot be read ({exc.strerror})"]) from exc
    try:
        parsed = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ChecksError(where, [f"not valid TOML: {exc}"]) from exc
    problems: list[str] = []
    extra = sorted(set(parsed) - {"check"})
    if extra:
        problems.append(f"unknown top-level key(s) {', '.join(extra)}: the file holds [[check]] "
                        "tables only")
    entries = parsed.get("check", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        problems.append("`check` must be an array of tables ([[check]])")
        entries = []
    checks = []
    for index, entry in enumerate(entries, start=1):
        check = _check(index, entry, schema, problems)
        if check is not None:
            checks.append(check)
    seen: dict[tuple[str, str], int] = {}
    for check in checks:
        key = (check.table, check.name)
        if key in seen:
            problems.append(f"check #{check.index} ({check.name!r}): same name as check "
                            f"#{seen[key]} on {check.table}; give one a `name`")
        seen.setdefault(key, check.index)
    if problems:
        raise ChecksError(where, problems)
    return Checks(path, tuple(checks), hashlib.sha256(data).hexdigest()[:16])


def _check(index: int, entry: dict[str, Any], schema: Schema, problems: list[str]
           ) -> Check | None:
    label = f"check #{index}" + (f" ({entry['name']!r})" if isinstance(entry.get("name"), str)
                                 else "")
    said = len(problems)

    def problem(text: str) -> None:
        problems.append(f"{label}: {text}")

    unknown = sorted(set(entry) - COMMON_KEYS - RULE_KEYS)
    if unknown:
        problem(f"unknown key(s) {', '.join(unknown)}")
    table = entry.get("table")
    spec = _table(schema, table) if isinstance(table, str) else None
    if not isinstance(table, str):
        problem("`table` is required (a table of the schema)")
    elif spec is None:
        problem(f"table: {table!r} is not a table of the schema")
    severity = entry.get("severity", "warn")
    if severity not in SEVERITIES:
        problem(f"severity: {severity!r} must be one of {', '.join(SEVERITIES)}")
    rules = [rule for rule, keys in RULES.items() if any(k in entry for k in keys)]
    if len(rules) != 1:
        problem("needs exactly one rule (" + ", ".join(sorted(RULE_KEYS)) + "), found "
                + (", ".join(k for k in sorted(RULE_KEYS) if k in entry) or "none"))
        return None
    rule = rules[0]
    column = entry.get("column")
    if rule in WITH_COLUMN:
        if not isinstance(column, str):
            problem(f"column: a `{RULES[rule][0]}` check needs `column`")
        elif spec is not None and column not in spec.columns:
            problem(f"column: {column!r} is not a column of {table}")
    elif column is not None:
        problem(f"column: not used by a `{rule}` check (its columns are in the rule)")
    if rule == "row_count_change" and severity == "quarantine":
        problem("severity: quarantine is not allowed for row_count_change (no row to move)")
    name = entry.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        problem("name: must be non-empty text")
    expr = None
    if spec is not None:
        expr = _rule_problems(rule, entry, spec, schema, column, problem)
    if len(problems) > said or spec is None:
        return None
    params = {k: entry[k] for k in RULES[rule] if k in entry}
    return Check(index, spec.name, name or default_name(rule, column, params), rule, severity,
                 column if rule in WITH_COLUMN else None, params, expr)


def _table(schema: Schema, name: str) -> TableSpec | None:
    return next((t for t in schema.tables if t.name == name), None)


Problem = Callable[[str], None]  # says one problem of the check being read


def _rule_problems(rule: str, entry: dict[str, Any], spec: TableSpec, schema: Schema,
                   column: Any, problem: Problem) -> Expr | None:
    """The rule's own values checked against the table (`problem` says each)."""
    if rule in ("unique", "not_null"):
        cols = entry[rule]
        if not isinstance(cols, list) or not cols or not all(isinstance(c, str) for c in cols):
            problem(f"{rule}: must be a non-empty list of column names")
        else:
            for col in cols:
                if col not in spec.columns:
                    problem(f"{rule}: {col!r} is not a column of {spec.name}")
    elif rule == "references":
        _references(entry["references"], spec, schema, column, problem)
    elif rule == "accepted_values":
        values = entry["accepted_values"]
        kind = spec.kind_of(column) if column in spec.columns else None
        want: tuple[type, ...] = (str,) if kind == "string" else (int, float)
        if not isinstance(values, list) or not values or not all(
                isinstance(v, want) and not isinstance(v, bool) for v in values):
            problem("accepted_values: must be a non-empty list of "
                    + ("text" if kind == "string" else "numbers") + f" (column {column} is "
                    f"{spec.dtype_of(column) if kind else '?'})")
    elif rule == "min_max":
        if column in spec.columns and spec.kind_of(column) not in ("int", "float"):
            problem(f"min/max: column {column} is {spec.dtype_of(column)}, not a number")
        for key in ("min", "max"):
            if key in entry and (not isinstance(entry[key], int | float)
                                 or isinstance(entry[key], bool)):
                problem(f"{key}: {entry[key]!r} is not a number")
    elif rule == "rule":
        return _expression(entry["rule"], spec, problem)
    elif rule == "row_count_change":
        value = entry[rule]
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            problem(f"row_count_change: {value!r} must be a number > 0 (0.5: ±50%)")
    else:
        value = entry[rule]
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value <= 1:
            problem(f"min_file_rows_ratio: {value!r} must be a number in (0, 1]")
        if spec.kind != "dynamic":
            problem(f"min_file_rows_ratio: {spec.name} is a master table (one file); the rule "
                    "is for dynamic tables")
    return None


def _references(target: Any, spec: TableSpec, schema: Schema, column: Any, problem: Problem
                ) -> None:
    if not isinstance(target, str) or target.count(".") != 1:
        problem(f"references: {target!r} must be \"table.column\"")
        return
    table, ref_column = target.split(".")
    other = _table(schema, table)
    if other is None:
        problem(f"references: {table!r} is not a table of the schema")
    elif ref_column not in other.columns:
        problem(f"references: {ref_column!r} is not a column of {table}")
    elif column in spec.columns and spec.kind_of(column) != other.kind_of(ref_column):
        problem(f"references: {spec.name}.{column} is {spec.dtype_of(column)} but {target} is "
                f"{other.dtype_of(ref_column)}; values of different types never match")


def _expression(text: Any, spec: TableSpec, problem: Problem) -> Expr | None:
    if not isinstance(text, str):
        problem("rule: must be text (a row expression)")
        return None
    try:
        expr = parse(text)
    except ExprError as exc:
        problem(f"rule: {exc}")
        return None
    kinds = {c: spec.kind_of(c) for c in spec.columns}
    found = type_problems(expr, kinds)
    for text_problem in found:
        problem(f"rule: {text_problem}")
    return None if found else expr


def default_name(rule: str, column: str | None, params: dict[str, Any]) -> str:
    """A check's name when the file gives none, made from its rule."""
    if rule in ("unique", "not_null"):
        return f"{rule}({', '.join(params[rule])})"
    if rule == "references":
        return f"{column} references {params['references']}"
    if rule == "accepted_values":
        return f"{column} in ({', '.join(str(v) for v in params['accepted_values'])})"
    if rule == "min_max":
        low, high = params.get("min"), params.get("max")
        if low is not None and high is not None:
            return f"{low} <= {column} <= {high}"
        return f"{column} >= {low}" if low is not None else f"{column} <= {high}"
    if rule == "rule":
        return str(params["rule"])
    return f"{rule} {params[rule]}"

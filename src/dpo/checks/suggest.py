"""`dpo check --suggest`: profile the current published store and write a starter checks file.

Each suggestion is a [[check]] that holds on today's data, with a comment saying what was
seen; the engineer keeps what is a rule of the plant and deletes what is a coincidence:

    unique            a text or whole-number column with no NA and no value twice
    references        a text or whole-number column whose values are all in another table's
                      unique column (a key there)
    not_null          columns never NA
    accepted_values   text columns with at most 12 distinct values over at least 20 rows
    min / max         whole-number and decimal columns: the range seen
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from dpo.checks.run import published
from dpo.schema import Schema, TableSpec
from dpo.store.api import Store

MAX_ACCEPTED = 12
MIN_ROWS_FOR_ACCEPTED = 20
KEY_KINDS = ("string", "int")


@dataclass(frozen=True)
class _Profile:
    spec: TableSpec
    table: pa.Table
    distinct: dict[str, pa.Array]  # key-kind columns: their distinct non-NA values

    def nulls(self, column: str) -> int:
        return int(self.table.column(column).null_count)

    def is_key(self, column: str) -> bool:
        """No NA and no value twice (and at least two rows: one row proves nothing)."""
        rows = self.table.num_rows
        return (column in self.distinct and rows >= 2 and self.nulls(column) == 0
                and len(self.distinct[column]) == rows)


def suggest_checks(store: Store, schema: Schema, tables: list[str] | None = None) -> str:
    """The starter checks file's text (TOML) for the tables published now."""
    profiles = [p for p in (_profile(store, spec) for spec in schema) if p is not None]
    keys = [(p, c) for p in profiles for c in p.distinct if p.is_key(c)]
    lines = ["# Data checks suggested by `dpo check --suggest` from the published store.",
             "# Each holds on today's data: keep the ones that are rules of the plant,",
             "# delete the coincidences, and set severity = \"fail\" or \"quarantine\" where a",
             "# bad row must not be published. Format: docs/behaviour.md, \"Data checks\".", ""]
    for profile in profiles:
        if tables and profile.spec.name not in tables:
            continue
        lines += _for_table(profile, keys)
    return "\n".join(lines).rstrip("\n") + "\n"


def _profile(store: Store, spec: TableSpec) -> _Profile | None:
    table = published(store, spec.name)
    if table is None:
        return None
    distinct = {c: pc.unique(table.column(c)).drop_null() for c in spec.columns
                if spec.kind_of(c) in KEY_KINDS}
    return _Profile(spec, table, distinct)


def _for_table(profile: _Profile, keys: list[tuple[_Profile, str]]) -> list[str]:
    spec, table = profile.spec, profile.table
    rows = table.num_rows
    out = [f"# ---- {spec.name} ({rows} rows) ----", ""]
    for column in spec.columns:
        if profile.is_key(column):
            out += _block(spec.name, f"{column}: {rows} rows, every value different, never NA",
                          f"unique = [{_q(column)}]")
    for column, values in profile.distinct.items():
        if profile.is_key(column) or not len(values):
            continue
        for other, key in keys:
            if other.spec.name == spec.name or other.spec.kind_of(key) != spec.kind_of(column):
                continue
            known = other.distinct[key]
            if _all_in(values, known):
                out += _block(spec.name, f"{column}: all {len(values)} distinct values are in "
                              f"{other.spec.name}.{key} (a key there)",
                              f"column = {_q(column)}", f"references = {_q(other.spec.name + '.' + key)}")
    never = [c for c in spec.columns if rows and profile.nulls(c) == 0]
    if never:
        out += _block(spec.name, f"never NA in {rows} rows", f"not_null = {json.dumps(never)}")
    for column in spec.columns:
        out += _values_and_range(profile, column)
    return out


def _values_and_range(profile: _Profile, column: str) -> list[str]:
    spec, table = profile.spec, profile.table
    kind = spec.kind_of(column)
    if kind == "string" and not profile.is_key(column):
        values = profile.distinct[column]
        if table.num_rows >= MIN_ROWS_FOR_ACCEPTED and 0 < len(values) <= MAX_ACCEPTED:
            listed = sorted(str(v) for v in values.to_pylist())
            return _block(spec.name, f"{column}: only {len(listed)} value(s) in "
                          f"{table.num_rows} rows", f"column = {_q(column)}",
                          f"accepted_values = {json.dumps(listed, ensure_ascii=False)}")
    if kind in ("int", "float") and table.column(column).null_count < table.num_rows:
        low_high = pc.min_max(table.column(column))
        low, high = low_high["min"].as_py(), low_high["max"].as_py()
        return _block(spec.name, f"{column}: values seen from {low} to {high}",
                      f"column = {_q(column)}", f"min = {_number(low)}", f"max = {_number(high)}")
    return []


def _all_in(values: pa.Array, known: pa.Array) -> bool:
    if not len(known):
        return False
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        values, known = pc.cast(values, pa.large_string()), pc.cast(known, pa.large_string())
    return bool(pc.all(pc.is_in(values, value_set=known)).as_py())


def _block(table: str, why: str, *rule: str) -> list[str]:
    return [f"# {why}", "[[check]]", f"table = {_q(table)}", *rule, ""]


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a TOML basic string is a JSON string


def _number(value: float | int) -> str:
    return repr(value) if isinstance(value, float) else str(value)

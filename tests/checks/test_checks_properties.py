"""Properties: dpo's failing rows equal an oracle written here in plain Python (not dpo's
code), for random small tables and random min/max, accepted_values, unique and not_null
checks, and for random row expressions under SQL's three-valued logic."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from dpo.checks.evaluate import evaluate
from dpo.checks.expr import parse
from dpo.checks.rules import failing_rows
from dpo.checks.spec import Check, load_checks
from dpo.schema import Schema, load_schema


def _schema() -> tuple[Path, Schema]:
    folder = Path(tempfile.mkdtemp(prefix="dpo-checks-props-"))
    body = {"dynamicDB": {}, "staticDB": {"t": {"path": "database/t.xlsx", "dtypes": {
        "k": "string", "n": "Int64", "m": "Int64"}}}}
    path = folder / "databaseSchemas.json"
    path.write_text(json.dumps(body), encoding="utf-8")
    return folder, load_schema(path, folder)


FOLDER, SCHEMA = _schema()
TEXTS = st.one_of(st.none(), st.sampled_from(["a", "b", "c", "HC", "a "]))
INTS = st.one_of(st.none(), st.integers(-5, 5))


def check_of(toml: str) -> Check:
    path = FOLDER / "dataChecks.toml"
    path.write_text('[[check]]\ntable = "t"\n' + toml, encoding="utf-8")
    (check,) = load_checks(path, SCHEMA).checks
    return check


def table_of(rows: list[tuple[str | None, int | None, int | None]]) -> pa.Table:
    return pa.table({"k": pa.array([r[0] for r in rows], pa.string()),
                     "n": pa.array([r[1] for r in rows], pa.int64()),
                     "m": pa.array([r[2] for r in rows], pa.int64())})


# -- the oracle: plain Python over the rows -----------------------------------------------
def oracle(rule: str, spec: dict[str, Any], rows: list[tuple[Any, ...]]) -> list[int]:
    column = {"k": 0, "n": 1, "m": 2}
    if rule == "not_null":
        return [i for i, r in enumerate(rows) if any(r[column[c]] is None for c in spec["cols"])]
    if rule == "unique":
        keys = [tuple(r[column[c]] for c in spec["cols"]) for r in rows]
        seen = Counter(k for k in keys if None not in k)
        return [i for i, k in enumerate(keys) if None not in k and seen[k] > 1]
    if rule == "accepted_values":
        return [i for i, r in enumerate(rows) if r[0] is not None and r[0] not in spec["values"]]
    low, high = spec.get("min"), spec.get("max")
    return [i for i, r in enumerate(rows) if r[1] is not None and (
        (low is not None and r[1] < low) or (high is not None and r[1] > high))]


CHECKS = st.one_of(
    st.builds(lambda cols: ("not_null", {"cols": cols}),
              st.lists(st.sampled_from(["k", "n", "m"]), min_size=1, max_size=3, unique=True)),
    st.builds(lambda cols: ("unique", {"cols": cols}),
              st.lists(st.sampled_from(["k", "n", "m"]), min_size=1, max_size=3, unique=True)),
    st.builds(lambda values: ("accepted_values", {"values": values}),
              st.lists(st.sampled_from(["a", "b", "c", "HC"]), min_size=1, max_size=4,
                       unique=True)),
    st.builds(lambda low, high: ("min_max", {k: v for k, v in (("min", low), ("max", high))
                                             if v is not None}),
              INTS, INTS).filter(lambda c: bool(c[1])),
)


def toml_of(rule: str, spec: dict[str, Any]) -> str:
    if rule in ("not_null", "unique"):
        return f"{rule} = {json.dumps(spec['cols'])}\n"
    if rule == "accepted_values":
        return f'column = "k"\naccepted_values = {json.dumps(spec["values"])}\n'
    return 'column = "n"\n' + "".join(f"{k} = {v}\n" for k, v in spec.items())


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.tuples(TEXTS, INTS, INTS), max_size=25), chosen=CHECKS)
def test_failing_rows_equal_the_oracle(rows: list[tuple[Any, ...]],
                                       chosen: tuple[str, dict[str, Any]]) -> None:
    rule, spec = chosen
    found = failing_rows(check_of(toml_of(rule, spec)), table_of(rows))
    assert found.tolist() == oracle(rule, spec, rows)


# -- the expression language against a three-valued-logic oracle ---------------------------
def _and(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    return None if a is None or b is None else True


def _or(a: bool | None, b: bool | None) -> bool | None:
    if a is True or b is True:
        return True
    return None if a is None or b is None else False


def _cmp(op: str, a: int | None, b: int | None) -> bool | None:
    if a is None or b is None:
        return None
    return {"=": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def _arith(op: str, a: int | None, b: int | None) -> int | None:
    if a is None or b is None:
        return None
    return {"+": a + b, "-": a - b, "*": a * b}[op]


NUMBER = st.deferred(lambda: st.one_of(
    st.sampled_from(["n", "m"]).map(lambda c: (c, lambda r, c=c: r[c])),
    st.integers(-3, 3).map(lambda v: (f"({v})", lambda r, v=v: v)),
    st.builds(lambda op, a, b: (f"({a[0]} {op} {b[0]})",
                                lambda r, op=op, a=a, b=b: _arith(op, a[1](r), b[1](r))),
              st.sampled_from(["+", "-", "*"]), NUMBER, NUMBER)))

CONDITION = st.deferred(lambda: st.one_of(
    st.builds(lambda op, a, b: (f"{a[0]} {op} {b[0]}",
                                lambda r, op=op, a=a, b=b: _cmp(op, a[1](r), b[1](r))),
              st.sampled_from(["=", "!=", "<", "<=", ">", ">="]), NUMBER, NUMBER),
    st.builds(lambda a, neg: (f"{a[0]} IS {'NOT ' if neg else ''}NULL",
                              lambda r, a=a, neg=neg: (a[1](r) is None) != neg),
              NUMBER, st.booleans()),
    st.builds(lambda a, lo, hi: (f"{a[0]} BETWEEN {lo} AND {hi}",
                                 lambda r, a=a, lo=lo, hi=hi: _and(_cmp(">=", a[1](r), lo),
                                                                   _cmp("<=", a[1](r), hi))),
              NUMBER, st.integers(-3, 3), st.integers(-3, 3)),
    st.builds(lambda a, vs: (f"{a[0]} IN ({', '.join(map(str, vs))})",
                             lambda r, a=a, vs=vs: None if a[1](r) is None else a[1](r) in vs),
              NUMBER, st.lists(st.integers(-3, 3), min_size=1, max_size=3)),
    st.builds(lambda a: (f"NOT ({a[0]})", lambda r, a=a: None if a[1](r) is None
                         else not a[1](r)), CONDITION),
    st.builds(lambda a, b: (f"({a[0]}) AND ({b[0]})", lambda r, a=a, b=b: _and(a[1](r), b[1](r))),
              CONDITION, CONDITION),
    st.builds(lambda a, b: (f"({a[0]}) OR ({b[0]})", lambda r, a=a, b=b: _or(a[1](r), b[1](r))),
              CONDITION, CONDITION),
    st.sampled_from([("TRUE", lambda r: True), ("FALSE", lambda r: False),
                     ("NULL IS NULL", lambda r: True)]),
))


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.fixed_dictionaries({"n": INTS, "m": INTS}), min_size=1, max_size=12),
       condition=CONDITION)
def test_expressions_follow_sql_three_valued_logic(rows: list[dict[str, int | None]],
                                                   condition: tuple[str, Any]) -> None:
    text, truth = condition
    table = pa.table({"n": pa.array([r["n"] for r in rows], pa.int64()),
                      "m": pa.array([r["m"] for r in rows], pa.int64())})
    result = evaluate(parse(text), table)
    got = ([result.as_py()] * len(rows) if isinstance(result, pa.Scalar)
           else result.to_pylist())
    assert got == [truth(r) for r in rows], text
    check = check_of(f'rule = "{text}"\n')
    assert failing_rows(check, table_of([(None, r["n"], r["m"]) for r in rows])).tolist() == [
        i for i, r in enumerate(rows) if truth(r) is False]


def test_a_negative_zero_product_is_in_a_list_holding_zero() -> None:
    """0 * -1 is -0.0 in float arithmetic; SQL's IN compares values, and -0.0 = 0 (found by
    the property test above; is_in alone compares bit patterns)."""
    table = pa.table({"n": pa.array([0, 2], pa.int64()), "m": pa.array([-1, 3], pa.int64())})
    assert evaluate(parse("n * m IN (0)"), table).to_pylist() == [True, False]
    assert evaluate(parse("n * m NOT IN (0, 5)"), table).to_pylist() == [False, True]

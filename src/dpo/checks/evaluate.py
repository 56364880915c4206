"""Row expressions (dpo.checks.expr) evaluated over a whole Arrow table with pyarrow.compute:
SQL's three-valued logic through Arrow's Kleene kernels (`FALSE AND NA` is false, `TRUE OR NA`
true), NA through arithmetic and comparisons, x / 0 as NA. Numbers compare as float64; a date
compares with 'YYYY-MM-DD' text (not a date: NA)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from dpo.arrays import lit, null_of, numbers, scalar_of, strings
from dpo.checks.expr import COMPARISONS, Between, Column, Expr, In, IsNull, Literal, Unary


def evaluate(expr: Expr, table: pa.Table) -> pa.ChunkedArray | pa.Array | pa.Scalar:
    """The expression over every row of `table`: true, false or NA per row (or one scalar)."""
    if isinstance(expr, Column):
        return table.column(expr.name)
    if isinstance(expr, Literal):
        return _scalar(expr.value)
    if isinstance(expr, Unary):
        inner = evaluate(expr.operand, table)
        return pc.invert(inner) if expr.op == "NOT" else pc.negate(_float(inner))
    if isinstance(expr, IsNull):
        inner = evaluate(expr.operand, table)
        found = pc.is_valid(inner) if expr.negated else pc.is_null(inner)
        return found
    if isinstance(expr, In):
        return _in(evaluate(expr.operand, table), expr)
    if isinstance(expr, Between):
        value = evaluate(expr.operand, table)
        low, high = evaluate(expr.low, table), evaluate(expr.high, table)
        inside = pc.and_kleene(_compare(">=", value, low), _compare("<=", value, high))
        return pc.invert(inside) if expr.negated else inside
    left, right = evaluate(expr.left, table), evaluate(expr.right, table)
    if expr.op == "AND":
        return pc.and_kleene(left, right)
    if expr.op == "OR":
        return pc.or_kleene(left, right)
    if expr.op in COMPARISONS:
        return _compare(expr.op, left, right)
    return _arithmetic(expr.op, _float(left), _float(right))


def _scalar(value: float | int | str | bool | None) -> pa.Scalar:
    if value is None:
        return null_of(pa.bool_())
    if isinstance(value, bool):
        return scalar_of(value, pa.bool_())
    if isinstance(value, str):
        return scalar_of(value, pa.large_string())
    return scalar_of(float(value), pa.float64())


def _float(value: Any) -> Any:
    return value if value.type == pa.float64() else pc.cast(value, pa.float64())


def _arithmetic(op: str, left: Any, right: Any) -> Any:
    if op == "+":
        return pc.add(left, right)
    if op == "-":
        return pc.subtract(left, right)
    if op == "*":
        return pc.multiply(left, right)
    # SQL raises on x / 0; a check must not stop the run for it: the row's value is NA.
    zero = pc.equal(right, scalar_of(0.0, pa.float64()))
    return pc.if_else(zero, null_of(pa.float64()), pc.divide(left, right))


_COMPARE = {"=": "equal", "!=": "not_equal", "<": "less", "<=": "less_equal",
            ">": "greater", ">=": "greater_equal"}


def _compare(op: str, left: Any, right: Any) -> Any:
    left, right = _aligned(left, right)
    return getattr(pc, _COMPARE[op])(left, right)


def _aligned(left: Any, right: Any) -> tuple[Any, Any]:
    """Numbers as float64; a date against text: the text read as a timestamp of the date's
    type; string against large_string: both large."""
    kinds = (left.type, right.type)
    if all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in kinds):
        return _float(left), _float(right)
    for one, other in ((left, right), (right, left)):
        if pa.types.is_timestamp(one.type) and _is_text(other.type):
            other = (_date_scalar(other, one.type) if isinstance(other, pa.Scalar)
                     else pc.strptime(other, "%Y-%m-%d", unit=one.type.unit, error_is_null=True))
            return (one, other) if one is left else (other, one)
    if _is_text(left.type) and _is_text(right.type):
        return pc.cast(left, pa.large_string()), pc.cast(right, pa.large_string())
    return left, right


def _date_scalar(text: Any, kind: Any) -> Any:
    """'YYYY-MM-DD' (or an ISO date and time) as a timestamp scalar; not a date: NA."""
    try:
        return pc.cast(text, kind)
    except (ValueError, TypeError, NotImplementedError):  # pyarrow.ArrowInvalid is a ValueError
        return null_of(kind)


def _is_text(kind: Any) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _in(value: Any, expr: In) -> Any:
    """SQL's IN: NA in (...) is NA; the list holds no NA (the parser refuses it)."""
    values = [v.value for v in expr.values]
    if pa.types.is_integer(value.type) or pa.types.is_floating(value.type):
        # + 0.0 makes -0.0 (0 * -1) the 0.0 it equals: is_in compares by hash, bit for bit.
        value = pc.add(_float(value), lit(0.0))
        choices = numbers([float(v) + 0.0 for v in values if isinstance(v, int | float)],
                          pa.float64())
    else:
        value = pc.cast(value, pa.large_string()) if _is_text(value.type) else value
        choices = strings([str(v) for v in values], pa.large_string())
    found = pc.is_in(value, value_set=choices)
    found = pc.if_else(pc.is_null(value), null_of(pa.bool_()), found)
    return pc.invert(found) if expr.negated else found

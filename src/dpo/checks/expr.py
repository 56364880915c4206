"""The row expressions of `rule = "..."` checks: a small SQL-like language, parsed and
type-checked here (stdlib: before any data is read), evaluated over a whole Arrow table by
dpo.checks.evaluate with pyarrow.compute. Never Python's eval.

    expr      := or
    or        := and ("OR" and)*
    and       := not ("AND" not)*
    not       := "NOT" not | predicate
    predicate := sum [cmp sum | "IS" ["NOT"] "NULL" | ["NOT"] "IN" "(" literal ("," literal)* ")"
                      | ["NOT"] "BETWEEN" sum "AND" sum]
    sum       := product (("+" | "-") product)*
    product   := unary (("*" | "/") unary)*
    unary     := "-" unary | primary
    primary   := number | 'text' | NULL | TRUE | FALSE | column | "column name" | "(" expr ")"

SQL's three-valued logic: NA propagates through arithmetic and comparisons, `FALSE AND NA` is
false, `TRUE OR NA` is true (Arrow's Kleene kernels); x / 0 is NA. Keywords in any case.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union


class ExprError(ValueError):
    """An expression that does not parse: the message names the position."""


@dataclass(frozen=True)
class Column:
    name: str


@dataclass(frozen=True)
class Literal:
    value: float | int | str | bool | None


@dataclass(frozen=True)
class Unary:
    op: str  # "NOT" | "-"
    operand: Expr


@dataclass(frozen=True)
class Binary:
    op: str  # + - * / = != < <= > >= AND OR
    left: Expr
    right: Expr


@dataclass(frozen=True)
class IsNull:
    operand: Expr
    negated: bool


@dataclass(frozen=True)
class In:
    operand: Expr
    values: tuple[Literal, ...]
    negated: bool


@dataclass(frozen=True)
class Between:
    operand: Expr
    low: Expr
    high: Expr
    negated: bool


Expr = Union[Column, Literal, Unary, Binary, IsNull, In, Between]  # noqa: UP007 - a runtime alias

KEYWORDS = frozenset({"AND", "OR", "NOT", "IS", "NULL", "IN", "BETWEEN", "TRUE", "FALSE"})
COMPARISONS = frozenset({"=", "!=", "<>", "<", "<=", ">", ">="})
_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<text>'(?:[^']|'')*')
  | (?P<quoted>"(?:[^"]|"")+")
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|!=|<>|[-+*/=<>(),])
""", re.VERBOSE)


def tokenize(text: str) -> list[tuple[str, str, int]]:
    """(kind, value, position) tokens; kinds: number, text, column, keyword, op, end."""
    tokens: list[tuple[str, str, int]] = []
    position = 0
    while position < len(text):
        found = _TOKEN.match(text, position)
        if found is None:
            raise ExprError(f"unexpected {text[position]!r} at position {position + 1}")
        kind, value = found.lastgroup or "", found.group()
        if kind == "text":
            tokens.append(("text", value[1:-1].replace("''", "'"), position))
        elif kind == "quoted":
            tokens.append(("column", value[1:-1].replace('""', '"'), position))
        elif kind == "word":
            upper = value.upper()
            tokens.append(("keyword", upper, position) if upper in KEYWORDS
                          else ("column", value, position))
        elif kind != "space":
            tokens.append((kind, value, position))
        position = found.end()
    tokens.append(("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.at = 0

    def peek(self, kind: str, *values: str) -> bool:
        token_kind, value, _ = self.tokens[self.at]
        return token_kind == kind and (not values or value in values)

    def take(self, kind: str, *values: str) -> str:
        if not self.peek(kind, *values):
            _, value, position = self.tokens[self.at]
            wanted = " or ".join(values) if values else kind
            got = repr(value) if value else "the end"
            raise ExprError(f"expected {wanted} at position {position + 1}, found {got}")
        value = self.tokens[self.at][1]
        self.at += 1
        return value

    def expression(self) -> Expr:
        left = self.conjunction()
        while self.peek("keyword", "OR"):
            self.take("keyword")
            left = Binary("OR", left, self.conjunction())
        return left

    def conjunction(self) -> Expr:
        left = self.negation()
        while self.peek("keyword", "AND"):
            self.take("keyword")
            left = Binary("AND", left, self.negation())
        return left

    def negation(self) -> Expr:
        if self.peek("keyword", "NOT"):
            self.take("keyword")
            return Unary("NOT", self.negation())
        return self.predicate()

    def predicate(self) -> Expr:
        left = self.sum()
        if self.peek("op", *COMPARISONS):
            op = self.take("op")
            return Binary("!=" if op == "<>" else op, left, self.sum())
        if self.peek("keyword", "IS"):
            self.take("keyword")
            negated = self.peek("keyword", "NOT")
            if negated:
                self.take("keyword")
            self.take("keyword", "NULL")
            return IsNull(left, negated)
        negated = self.peek("keyword", "NOT")
        if negated:
            self.take("keyword")
            if not self.peek("keyword", "IN", "BETWEEN"):
                self.take("keyword", "IN", "BETWEEN")
        if self.peek("keyword", "IN"):
            self.take("keyword")
            self.take("op", "(")
            values = [self.literal()]
            while self.peek("op", ","):
                self.take("op")
                values.append(self.literal())
            self.take("op", ")")
            return In(left, tuple(values), negated)
        if self.peek("keyword", "BETWEEN"):
            self.take("keyword")
            low = self.sum()
            self.take("keyword", "AND")
            return Between(left, low, self.sum(), negated)
        return left

    def literal(self) -> Literal:
        sign = -1 if self.peek("op", "-") else 1
        if sign < 0:
            self.take("op")
        if self.peek("number"):
            return Literal(sign * _number(self.take("number")))
        if sign > 0 and self.peek("text"):
            return Literal(self.take("text"))
        _, value, position = self.tokens[self.at]
        raise ExprError(f"IN (...) takes numbers or 'text'; found {value or 'the end'!r} at "
                        f"position {position + 1}")

    def sum(self) -> Expr:
        left = self.product()
        while self.peek("op", "+", "-"):
            left = Binary(self.take("op"), left, self.product())
        return left

    def product(self) -> Expr:
        left = self.unary()
        while self.peek("op", "*", "/"):
            left = Binary(self.take("op"), left, self.unary())
        return left

    def unary(self) -> Expr:
        if self.peek("op", "-"):
            self.take("op")
            return Unary("-", self.unary())
        return self.primary()

    def primary(self) -> Expr:
        kind, value, position = self.tokens[self.at]
        if kind == "number":
            self.at += 1
            return Literal(_number(value))
        if kind == "text":
            self.at += 1
            return Literal(value)
        if kind == "column":
            self.at += 1
            return Column(value)
        if kind == "keyword" and value in ("NULL", "TRUE", "FALSE"):
            self.at += 1
            return Literal(None if value == "NULL" else value == "TRUE")
        if self.peek("op", "("):
            self.take("op")
            inner = self.expression()
            self.take("op", ")")
            return inner
        raise ExprError(f"expected a column, number or 'text' at position {position + 1}, "
                        f"found {value or 'the end'!r}")


def _number(text: str) -> float | int:
    return int(text) if text.isdigit() else float(text)


def parse(text: str) -> Expr:
    """The expression's tree; ExprError names the position of the first mistake."""
    if not text.strip():
        raise ExprError("empty expression")
    parser = _Parser(text)
    expr = parser.expression()
    parser.take("end")
    return expr


def columns_of(expr: Expr) -> set[str]:
    if isinstance(expr, Column):
        return {expr.name}
    if isinstance(expr, Literal):
        return set()
    if isinstance(expr, Unary | IsNull | In):
        return columns_of(expr.operand)
    if isinstance(expr, Binary):
        return columns_of(expr.left) | columns_of(expr.right)
    return columns_of(expr.operand) | columns_of(expr.low) | columns_of(expr.high)


# -- types: every mistake found before any data is read ------------------------------------
_KIND = {"int": "number", "float": "number", "string": "text", "datetime": "date",
         "boolean": "boolean"}


def type_problems(expr: Expr, kinds: dict[str, str]) -> list[str]:
    """What is wrong with `expr` over columns of these schema kinds (empty: nothing). The
    whole expression must be a condition (true/false/NA)."""
    problems: list[str] = []
    kind = _type(expr, kinds, problems)
    if not problems and kind not in ("boolean", "null"):
        problems.append(f"the expression is a {kind}, not a condition (true or false per row)")
    return problems


def _type(expr: Expr, kinds: dict[str, str], problems: list[str]) -> str:
    if isinstance(expr, Column):
        if expr.name not in kinds:
            problems.append(f"unknown column {expr.name!r}")
            return "null"
        return _KIND[kinds[expr.name]]
    if isinstance(expr, Literal):
        value = expr.value
        return ("null" if value is None else "boolean" if isinstance(value, bool)
                else "text" if isinstance(value, str) else "number")
    if isinstance(expr, Unary):
        inner = _type(expr.operand, kinds, problems)
        want = "boolean" if expr.op == "NOT" else "number"
        _expect(inner, want, f"{expr.op} takes a {want}", problems)
        return want
    if isinstance(expr, IsNull):
        _type(expr.operand, kinds, problems)
        return "boolean"
    if isinstance(expr, In):
        inner = _type(expr.operand, kinds, problems)
        for literal in expr.values:
            _comparable(inner, _type(literal, kinds, problems), "IN", problems)
        return "boolean"
    if isinstance(expr, Between):
        inner = _type(expr.operand, kinds, problems)
        for bound in (expr.low, expr.high):
            _comparable(inner, _type(bound, kinds, problems), "BETWEEN", problems)
        return "boolean"
    left, right = _type(expr.left, kinds, problems), _type(expr.right, kinds, problems)
    if expr.op in ("AND", "OR"):
        for side in (left, right):
            _expect(side, "boolean", f"{expr.op} takes conditions", problems)
        return "boolean"
    if expr.op in COMPARISONS:
        _comparable(left, right, expr.op, problems)
        return "boolean"
    for side in (left, right):
        _expect(side, "number", f"{expr.op} takes numbers", problems)
    return "number"


def _expect(kind: str, want: str, what: str, problems: list[str]) -> None:
    if kind not in (want, "null"):
        problems.append(f"{what}, got a {kind}")


def _comparable(left: str, right: str, op: str, problems: list[str]) -> None:
    """Like with like; a date compares with a date or 'YYYY-MM-DD' text."""
    if "null" in (left, right) or left == right or {left, right} == {"date", "text"}:
        return
    problems.append(f"{op} compares a {left} with a {right}")

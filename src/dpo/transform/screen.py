"""The first look at every cell, before any cast: null-like text becomes NA, and Excel error
values (#N/A, #DIV/0!... as text) are found (docs/behaviour.md, sections 2-3)."""

from __future__ import annotations

from itertools import product

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dpo.arrays import bools, null_of, scalar_of, text_array

NULL_TOKENS = ("", "nan", "null", "none", "n/a", "na")
_NULL_SPELLINGS = tuple(sorted({"".join(chars) for token in NULL_TOKENS
                                for chars in product(*((c.lower(), c.upper()) for c in token))}))
# Excel error values: a formula that failed upstream; never data, always reported.
EXCEL_ERRORS = ("#N/A", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#NULL!",
                "#GETTING_DATA", "#SPILL!", "#CALC!")


def as_mask(arr: pa.Array) -> np.ndarray:
    return bools(pc.fill_null(arr, scalar_of(False, arr.type)))


def null_like(arr: pa.Array) -> pa.Array:
    """Empty/whitespace text and nan/null/none/n/a/na (any case) become null, before any cast."""
    return screen(arr)[1]


def excel_errors(arr: pa.Array) -> np.ndarray:
    """Mask of cells holding an Excel error value such as #N/A or #DIV/0!."""
    return screen(arr)[0]


def screen(arr: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """excel_errors() and null_like() together, in one pass over the trimmed text."""
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        no_errors = np.zeros(len(arr), dtype=bool)
        if pa.types.is_floating(arr.type):
            return no_errors, pc.if_else(pc.is_nan(arr), null_of(arr.type), arr)
        return no_errors, arr
    trimmed = pc.utf8_trim_whitespace(arr)
    if pc.any(pc.starts_with(trimmed, "#")).as_py():
        errors = as_mask(pc.is_in(trimmed, value_set=text_array(EXCEL_ERRORS, arr.type)))
    else:
        errors = np.zeros(len(arr), dtype=bool)
    # Every spelling of every token in the set, so no lower-cased copy of the column is made.
    is_null = pc.is_in(trimmed, value_set=text_array(_NULL_SPELLINGS, arr.type))
    if not pc.any(is_null).as_py():
        return errors, arr  # the common case: no copy of the column's text
    return errors, pc.if_else(is_null, null_of(arr.type), arr)

"""Arrow helpers shared by the reading and transforming stages (no dpo imports).

Arrays and scalars are built here from buffers, never from Python values: `pa.array(list)`,
`pa.scalar(value)` and a compute call given a Python value (`pc.add(a, 1)`,
`pc.if_else(m, a, None)`, `pc.fill_null(a, False)`) first ask pyarrow whether the value is a
pandas object, and its first question imports pandas (0.15-0.2 s of a one-second run); an
untyped one also infers the type, whose first inference imports pandas again. The `dpo`
command blocks pandas for its process; the Python API cannot (a user may use pandas), so the
run path hands pyarrow only Arrow and numpy objects (BENCHMARKS.md, "Python API vs CLI (#14)";
tests/test_import_weight.py pins it).
"""

from __future__ import annotations

import os
import threading
from array import array
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from itertools import accumulate

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def from_numpy(values: np.ndarray) -> pa.Array:
    """A numpy array (bool or numeric) as Arrow, sharing its memory. `pa.array(ndarray)` looks
    up `numpy.ma`, whose first import costs 20 ms of a 0.4 s run."""
    if values.dtype == np.bool_:
        bits = np.packbits(values, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values),
                                 [None, pa.py_buffer(values)])


def bools(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean Arrow array without nulls as a new numpy bool array, from its bits."""
    arr = _one(arr)
    if not len(arr):
        return np.zeros(0, dtype=bool)
    bits = np.frombuffer(arr.buffers()[1], dtype=np.uint8)
    unpacked = np.unpackbits(bits, count=arr.offset + len(arr), bitorder="little")
    return unpacked[arr.offset:].astype(bool)


def numpy_of(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An integer or floating Arrow array without nulls as numpy: a read-only view of its
    values (what `arr.to_numpy()` gives, without asking for pandas)."""
    arr = _one(arr)
    kind = arr.type
    if pa.types.is_boolean(kind):
        return bools(arr)
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
        raise TypeError(f"numpy_of: {kind} is not a number type")
    code = "f" if pa.types.is_floating(kind) else "i" if pa.types.is_signed_integer(kind) else "u"
    dtype = np.dtype(f"<{code}{kind.bit_width // 8}")
    if not len(arr):
        return np.zeros(0, dtype=dtype)
    return np.frombuffer(arr.buffers()[1], dtype=dtype, count=arr.offset + len(arr))[arr.offset:]


def _one(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    # With nulls, to_numpy would give floats with NaN or objects: no caller here wants that.
    if arr.null_count:
        raise ValueError(f"{arr.type} array with {arr.null_count} nulls has no numpy view")
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


@lru_cache(maxsize=64)
def text_array(values: tuple[str, ...], arrow_type: pa.DataType) -> pa.Array:
    """An Arrow text array built from its buffers (`pa.array(numpy object array)` would also
    import numpy.ma, 20 ms)."""
    return strings(values, arrow_type)


def strings(values: Sequence[str | None], arrow_type: pa.DataType) -> pa.Array:
    """Python strings (None: null) as an Arrow string or large_string array, from buffers."""
    encoded = [b"" if v is None else v.encode() for v in values]
    offsets = [0, *accumulate(len(e) for e in encoded)]
    width = "q" if pa.types.is_large_string(arrow_type) else "i"
    valid = None
    if any(v is None for v in values):
        valid = pa.py_buffer(np.packbits(np.array([v is not None for v in values]),
                                         bitorder="little"))
    return pa.Array.from_buffers(arrow_type, len(values), [
        valid, pa.py_buffer(array(width, offsets).tobytes()), pa.py_buffer(b"".join(encoded))])


def numbers(values: Sequence[int | float | None], arrow_type: pa.DataType) -> pa.Array:
    """Python numbers (None: null) as an Arrow numeric array of `arrow_type` (a checked cast)."""
    if not values:
        return pa.nulls(0, arrow_type)
    valid = np.array([v is not None for v in values], dtype=bool)
    out = from_numpy(np.array([0 if v is None else v for v in values])).cast(arrow_type)
    return out if valid.all() else pc.if_else(from_numpy(valid), out, null_of(arrow_type))


@lru_cache(maxsize=256)
def scalar_of(value: bool | int | float | str, arrow_type: pa.DataType) -> pa.Scalar:
    """A typed Arrow scalar for a compute call, from buffers (a checked cast to the type)."""
    if isinstance(value, str):
        return text_array((value,), arrow_type)[0]
    return from_numpy(np.array([value])).cast(arrow_type)[0]


@lru_cache(maxsize=64)
def null_of(arrow_type: pa.DataType) -> pa.Scalar:
    """The null scalar of a type (for `pc.if_else(mask, values, null)`)."""
    return pa.nulls(1, arrow_type)[0]


def lit(value: bool | int | float | str | None) -> pa.Scalar:
    """The scalar `pa.scalar(value)` infers (bool, int64, double, string, null), for a compute
    call: `pc.less(a, lit(0))` computes exactly what `pc.less(a, 0)` does."""
    if value is None:
        return null_of(pa.null())
    if isinstance(value, bool):
        return scalar_of(value, pa.bool_())
    if isinstance(value, int):
        return scalar_of(value, pa.int64())
    if isinstance(value, float):
        return scalar_of(value, pa.float64())
    return scalar_of(value, pa.string())


_POOL_LOCK = threading.Lock()


class _PoolRuns:
    runs = 0  # runs inside run_memory_pool() now, in this process
    before: pa.MemoryPool | None = None  # the pool to put back, if the first run swapped it


@contextmanager
def run_memory_pool() -> Iterator[None]:
    """jemalloc for Arrow while a run works, as the `dpo` command has it: the real plant's
    run peaks ~30 MB lower than on the wheels' default mimalloc (201 vs 232 MB, as the CLI's
    199 MB); speed is the same within noise (BENCHMARKS.md, "Python API vs CLI (#14)"). Only
    when the process has not chosen: ARROW_DEFAULT_MEMORY_POOL unset and the default pool
    still mimalloc (a pool set to mimalloc on purpose cannot be told apart: it is switched
    for the run too). The pool before is put back when the last run in the process ends."""
    with _POOL_LOCK:
        if _PoolRuns.runs == 0:
            current = pa.default_memory_pool()
            chosen = "ARROW_DEFAULT_MEMORY_POOL" in os.environ or current.backend_name != "mimalloc"
            if not chosen and "jemalloc" in pa.supported_memory_backends():
                pa.set_memory_pool(pa.jemalloc_memory_pool())
                _PoolRuns.before = current
        _PoolRuns.runs += 1
    try:
        yield
    finally:
        with _POOL_LOCK:
            _PoolRuns.runs -= 1
            if _PoolRuns.runs == 0 and _PoolRuns.before is not None:
                pa.set_memory_pool(_PoolRuns.before)
                _PoolRuns.before = None

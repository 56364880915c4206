"""Arrow helpers shared by the reading and transforming stages (no dpo imports)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def from_numpy(values: np.ndarray) -> pa.Array:
    """A numpy array (bool or numeric) as Arrow, sharing its memory. `pa.array(ndarray)` looks
    up `numpy.ma`, whose first import costs 20 ms of a 0.4 s run."""
    if values.dtype == np.bool_:
        bits = np.packbits(values, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values),
                                 [None, pa.py_buffer(values)])

"""64-bit hashes of table rows: what duplicate detection and the content hash are built on.

A row's hash depends only on its values, in column order: not on chunking, slicing, the
process or the machine (no Python `hash()`, which is salted per process; numbers are read
in native byte order and string bytes as little-endian words). Everything is vectorised
with numpy over Arrow's own buffers: no pandas, no per-row Python.

  value  ints, timestamps, dates: the integer; floats: the float64 bits with -0.0 -> 0.0 and
         one NaN; bool: 0/1; strings (and binary): sum over the 8-byte words w_k of the
         UTF-8 bytes of mix(w_k) * B**k, the last word zero-padded, xor-ed with the length
         times a constant. Each then gets a per-kind seed and the splitmix64 finaliser.
         Null is one fixed tag whatever the column's type.
  row    h = (h ^ value) * K over the columns in order, then the finaliser: a value moved to
         another column changes the hash.

Equal rows (nulls equal to nulls) always hash alike; unequal rows almost never do, and
merge.duplicate_mask compares real values before it drops anything.

Hashes are stored (cache segments, and through content hashes in Parquet metadata) and
compared across runs: changing any constant or step here changes every hash, so
metakeys.ROW_HASH_VERSION must change with it (test_rowhash pins one value).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dpo.arrays import bools, numpy_of, scalar_of

_U64 = np.uint64
_MIX1, _MIX2 = _U64(0xBF58476D1CE4E5B9), _U64(0x94D049BB133111EB)  # splitmix64
_COMBINE = _U64(0x9E3779B97F4A7C15)  # odd: multiplying by it loses nothing
_WORD_BASE = 0xC2B2AE3D27D4EB4F  # odd, so invertible modulo 2**64 (see _string_block)
_LENGTH = _U64(0x165667B19E3779F9)
_ROW_SEED = _U64(0x27D4EB2F165667C5)
_NULL = _U64(0x6A09E667F3BCC909)
_SEEDS = {"int": _U64(0x3C6EF372FE94F82B), "float": _U64(0xA54FF53A5F1D36F1),
          "bool": _U64(0x510E527FADE682D1), "string": _U64(0x9B05688C2B3E6C1F)}
_TAIL = np.array([(1 << (8 * n)) - 1 for n in range(8)] + [(1 << 64) - 1], dtype=np.uint64)
_BLOCK = 1 << 16  # distinct strings hashed this many at a time: the arrays stay in cache


def row_hashes(table: pa.Table) -> np.ndarray:
    """One uint64 per row (module docstring), computed chunk by chunk, never combined."""
    hashes = np.full(table.num_rows, _ROW_SEED, dtype=np.uint64)
    for column in table.columns:
        start = 0
        for chunk in column.chunks:
            part = hashes[start:start + len(chunk)]  # a view: combined in place
            part ^= value_hashes(chunk)
            part *= _COMBINE
            start += len(chunk)
    return _finalise(hashes)


def value_hashes(arr: pa.Array) -> np.ndarray:
    """One uint64 per value of `arr`; every null gets the same tag."""
    kind = arr.type
    if pa.types.is_dictionary(kind):
        return value_hashes(arr.dictionary_decode())
    if arr.null_count == len(arr):  # also the null type, whose buffers are absent
        return np.full(len(arr), _NULL, dtype=np.uint64)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or \
            pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return _strings(arr)  # nulls and the finaliser are done on the distinct values
    if pa.types.is_floating(kind):
        values = _floats(arr)
    elif pa.types.is_boolean(kind):
        values = bools(pc.fill_null(arr, scalar_of(False, kind))).astype(np.uint64)
        values ^= _SEEDS["bool"]
    elif pa.types.is_integer(kind) or _is_fixed_temporal(kind):
        values = _integers(arr, signed=not pa.types.is_unsigned_integer(kind))
        values ^= _SEEDS["int"]
    else:
        raise TypeError(f"row_hashes: no hash for Arrow type {kind}")
    return _with_nulls(arr, _finalise(values))


def _is_fixed_temporal(kind: pa.DataType) -> bool:
    return bool(pa.types.is_timestamp(kind) or pa.types.is_date(kind)
                or pa.types.is_time(kind) or pa.types.is_duration(kind))


def _finalise(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place: every input bit reaches every output bit."""
    x ^= x >> _U64(30)
    x *= _MIX1
    x ^= x >> _U64(27)
    x *= _MIX2
    x ^= x >> _U64(31)
    return x


def _with_nulls(arr: pa.Array, values: np.ndarray) -> np.ndarray:
    """`values` with the null tag where `arr` is null (the buffer there holds anything)."""
    if arr.null_count:
        np.putmask(values, bools(arr.is_null()), _NULL)
    return values


def _integers(arr: pa.Array, *, signed: bool) -> np.ndarray:
    """The values (timestamps, dates: their count of units) as uint64, a fresh copy."""
    dtype = f"{'i' if signed else 'u'}{arr.type.bit_width // 8}"  # native order, as Arrow's
    raw = np.frombuffer(arr.buffers()[1], dtype=dtype, count=arr.offset + len(arr))[arr.offset:]
    return raw.astype(np.uint64)  # negative values wrap modulo 2**64: still one-to-one


def _floats(arr: pa.Array) -> np.ndarray:
    raw = np.frombuffer(arr.buffers()[1], dtype=f"f{arr.type.bit_width // 8}",
                        count=arr.offset + len(arr))[arr.offset:]
    values = raw.astype(np.float64)  # exact for float16/32
    values += 0.0  # -0.0 + 0.0 == 0.0: equal numbers, equal bits
    values[np.isnan(values)] = np.nan  # one NaN (payloads and signs vary)
    bits = values.view(np.uint64)
    bits ^= _SEEDS["float"]
    return bits


def _strings(arr: pa.Array) -> np.ndarray:
    """Arrow's hash table finds the distinct values (its C++ kernel is ~5x faster than reading
    every row's words here); only those are hashed, then taken per row."""
    encoded = pc.dictionary_encode(arr, null_encoding="encode")  # null: one more entry
    distinct = encoded.dictionary
    hashes = np.concatenate([_string_block(distinct.slice(start, _BLOCK))
                             for start in range(0, len(distinct), _BLOCK)])
    hashes ^= _SEEDS["string"]
    per_row: np.ndarray = _with_nulls(distinct, _finalise(hashes))[numpy_of(encoded.indices)]
    return per_row


def _string_block(arr: pa.Array) -> np.ndarray:
    """The module docstring's string value, before seed and finaliser, for each value.

    Words are read straight from the data buffer at each value's own offset (unaligned
    8-byte reads of a zero-padded copy). The powers of B are those of each word's position
    in the whole block, divided back out per value with B**-first, so a value's hash does
    not depend on where it sits.
    """
    large = pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64 if large else np.int32,
                            count=arr.offset + len(arr) + 1)[arr.offset:].astype(np.int64)
    lengths = np.diff(offsets)
    base, total = int(offsets[0]), int(offsets[-1] - offsets[0])
    padded = np.zeros(total + 8, dtype=np.uint8)  # the last word reads zeros, nothing beyond
    if total:
        padded[:total] = np.frombuffer(arr.buffers()[2], dtype=np.uint8, count=total,
                                       offset=base)
    words = np.ndarray((total + 1,), dtype="<u8", buffer=padded, strides=(1,))
    counts = (lengths + 7) >> 3  # words per value; "" has none
    first = np.cumsum(counts) - counts  # each value's first word, numbered in the block
    at = np.arange(0, 8 * int(counts.sum()), 8, dtype=np.int64)
    at += np.repeat(offsets[:-1] - base - 8 * first, counts)  # byte position of each word
    terms = words[at]
    filled = np.flatnonzero(counts)
    firsts = first[filled]
    last = firsts + counts[filled] - 1
    terms[last] &= _TAIL[lengths[filled] - 8 * (counts[filled] - 1)]  # not the next value's
    _finalise(terms)  # mix each word: a plain polynomial in 64-bit words is weak in high bits
    powers, inverse = _powers(len(terms))
    terms *= powers[: len(terms)]
    values = np.zeros(len(arr), dtype=np.uint64)
    if len(filled):  # reduceat needs strictly increasing starts: only non-empty values
        values[filled] = np.add.reduceat(terms, firsts) * inverse[firsts]
    values ^= lengths.astype(np.uint64) * _LENGTH  # "a" and "a\0" have the same words
    return values


def _powers(count: int) -> tuple[np.ndarray, np.ndarray]:
    """B**i and B**-i modulo 2**64 for i < at least `count` (whole powers of two, shared)."""
    return _power_tables(1 << max(count - 1, 1 << 10).bit_length())


@lru_cache(maxsize=4)
def _power_tables(size: int) -> tuple[np.ndarray, np.ndarray]:
    tables = []
    for factor in (_WORD_BASE, pow(_WORD_BASE, -1, 1 << 64)):
        table = np.full(size, factor, dtype=np.uint64)
        table[0] = 1
        np.multiply.accumulate(table, out=table)  # wraps modulo 2**64, as intended
        table.flags.writeable = False
        tables.append(table)
    return tables[0], tables[1]

"""Which header of a sheet holds which schema column, read as a person reads it.

Exporters and hand edits leave headers like `" poNo "`, `poETA` followed by a non-breaking
space, or `PONO`; a person sees the column at once. A column matches its header exactly;
failing that, after trimming every kind of space (NBSP, zero-width, BOM...); failing that,
ignoring case. Each loose match is a warning naming the header as written. Two headers that
match one column at the same step are an error: loading either would drop the other's values.
The reader names a repeated header `poNo_1`, `poNo_2`..., which counts as the same header.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from dpo.errors import DpoError, ErrorType

# Characters that are not Python whitespace (str.strip keeps them) but show as nothing.
_INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"
# How far down a title block may push the header row.
HEADER_SEARCH_ROWS = 20


def trimmed(header: str) -> str:
    return header.strip().strip(_INVISIBLE).strip()


@dataclass(frozen=True)
class HeaderMatch:
    """Canonical column -> header as written, and the headers that matched only loosely."""

    names: Mapping[str, str]
    loose: tuple[tuple[str, str], ...]  # (header as written, column)
    missing: tuple[str, ...]

    @property
    def exact(self) -> bool:
        return not self.loose and not self.missing


def spellings(columns: Sequence[str], renames: Mapping[str, str]) -> dict[str, str]:
    """Every header spelling of `columns` -> its column (`plasticResine` -> `plasticResin`)."""
    found = {column: column for column in columns}
    found.update({src: dst for src, dst in renames.items() if dst in found})
    return found


def match_headers(headers: Sequence[str], columns: Sequence[str], renames: Mapping[str, str],
                  file: str, sheet: str) -> HeaderMatch:
    """Match `headers` (in sheet order) to `columns`."""
    spelled = spellings(columns, renames)
    folded = {name.casefold(): column for name, column in spelled.items()}
    present = set(headers)
    steps: tuple[Callable[[str], str | None], ...] = (
        lambda h: spelled.get(h) or _repeat_of(h, spelled, present),
        lambda h: spelled.get(trimmed(h)),
        lambda h: folded.get(trimmed(h).casefold()),
    )
    matched: dict[str, list[tuple[str, int]]] = {}
    for header in headers:
        for step, find in enumerate(steps):
            column = find(header)
            if column is not None:
                matched.setdefault(column, []).append((header, step))
                break
    names: dict[str, str] = {}
    loose: list[tuple[str, str]] = []
    for column, found in matched.items():
        if len(found) > 1:
            shown = ", ".join(h if step == 0 else repr(h) for h, step in found)
            raise DpoError(f"{file} [{sheet}]: column {column} appears {len(found)} times "
                           f"({shown}); keep one", error_type=ErrorType.SCHEMA_MISMATCH,
                           file=file, sheet=sheet, column=column)
        header, step = found[0]
        names[column] = header
        if step:
            loose.append((header, column))
    missing = tuple(c for c in columns if c not in names)
    return HeaderMatch(names, tuple(loose), missing)


def _repeat_of(header: str, spelled: Mapping[str, str], present: set[str]) -> str | None:
    """The column of `poNo_1` when `poNo` is a header too (the reader's name for a repeat)."""
    if "_" not in header:
        return None
    base, suffix = header.rsplit("_", 1)
    return spelled.get(base) if suffix.isdigit() and base in present else None


def find_header_row(rows: Sequence[Sequence[str | None]], columns: Sequence[str],
                    renames: Mapping[str, str]) -> int | None:
    """The first of `rows` (the sheet's top rows, as text) that holds every column."""
    for index, row in enumerate(rows[:HEADER_SEARCH_ROWS + 1]):
        headers = [cell for cell in row if cell]
        if not headers:
            continue
        try:
            if not match_headers(headers, columns, renames, "", "").missing:
                return index
        except DpoError:
            return index  # every column is there, one of them twice: reported on reading
    return None

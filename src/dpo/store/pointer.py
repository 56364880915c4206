"""Where a table's pointer has been: the versions that were current, in the order they became
current, and what moved the pointer there (a publish or a rollback). `dpo diff` compares the
current version with the one before it (docs/behaviour.md, section 5).

On disk the store's change log is its history (dpo.store.local.versions writes it: a `publish STAMP`
block lists `saved <path>` per version written, a `rollback` block `rolled back T from A to B
(…)` per table); on object storage the manifests are (each is a commit of every table's
version, dpo.store.objects.manifests). Stdlib only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dpo.store.objects.manifests import Manifest

Moves = list[tuple[str, str]]  # (version stamp, "publish" | "rollback"), oldest first

_BLOCK = re.compile(r"^\[[^\]]+\] (publish|rollback)\b")
_SAVED = re.compile(r"^  - saved (.+)$")
_ROLLED = re.compile(r"^  - rolled back (\S+) from \S+ to (\S+) \(")
_VERSION = re.compile(r"^(\d{8}_\d{4}(?:-\d+)?)_(.+)\.parquet$")


def from_change_log(text: str, table: str) -> Moves:
    """The pointer moves of `table` the change log records."""
    moves: Moves = []
    kind = None
    for line in text.splitlines():
        block = _BLOCK.match(line)
        if block or line.startswith("["):
            kind = block.group(1) if block else None
            continue
        saved = _SAVED.match(line) if kind == "publish" else None
        version = _VERSION.match(PurePosixPath(saved.group(1)).name) if saved else None
        if version and version.group(2) == table:
            _add(moves, version.group(1), "publish")
        rolled = _ROLLED.match(line) if kind == "rollback" else None
        if rolled and rolled.group(1) == table:
            _add(moves, rolled.group(2), "rollback")
    return moves


def from_manifests(manifests: Iterable[Manifest], table: str) -> Moves:
    """The pointer moves of `table` the kept manifests record."""
    moves: Moves = []
    for manifest in manifests:
        entry = manifest.tables.get(table)
        if entry is not None:
            _add(moves, entry.version, manifest.kind)
    return moves


def _add(moves: Moves, stamp: str, kind: str) -> None:
    if not moves or moves[-1][0] != stamp:
        moves.append((stamp, kind))

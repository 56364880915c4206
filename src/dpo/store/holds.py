"""Holds: a table rolled back by hand stays at the chosen version until its sources change.

    <loader_dir>/holds.json   {table: {version, since, sources_hash, command}}

`dpo rollback` writes a hold for each table it moves. `sources_hash` is the content hash the
sources gave when the hold began (that of the version rolled away from, or of an earlier
hold's). Phase 2 keeps a held table where it is while its sources still give that content,
and drops the hold, then publishes, as soon as they give anything else (a file added, removed
or changed). `dpo rollback TABLE --release` drops it by hand. Stdlib only: `dpo health` and
`dpo versions` read it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from loguru import logger

from dpo.errors import IntegrityError
from dpo.fsio import atomic_write_json


@dataclass(frozen=True)
class Hold:
    table: str
    version: str  # the version stamp the table was rolled back to
    since: str  # ISO time of the rollback
    sources_hash: str | None  # what the sources gave then; None: unknown (release by hand)
    command: str = "dpo rollback"

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)


class Holds:
    """The holds file of one store."""

    def __init__(self, loader_dir: Path) -> None:
        self.path = loader_dir / "holds.json"

    def read(self) -> dict[str, Hold]:
        try:
            return self.parse(self.path.read_bytes(), str(self.path))
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise IntegrityError(f"{self.path}: unreadable holds ({exc})",
                                 file=str(self.path)) from exc

    @staticmethod
    def parse(raw: bytes, where: str) -> dict[str, Hold]:
        """The holds in `raw` (a holds file's bytes, from disk or an object store)."""
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise IntegrityError(f"{where}: unreadable holds ({exc})", file=where) from exc
        try:
            return {table: Hold(**{**entry, "table": table}) for table, entry in data.items()}
        except (AttributeError, TypeError) as exc:
            raise IntegrityError(f"{where}: holds must map table -> hold ({exc})",
                                 file=where) from exc

    def write(self, holds: Mapping[str, Hold], point: str) -> None:
        if not holds and not self.path.exists():
            return
        body = {t: {k: v for k, v in h.to_dict().items() if k != "table"}
                for t, h in sorted(holds.items())}
        atomic_write_json(self.path, body, point=point)

    def release(self, tables: Iterable[str], point: str = "holds:release") -> list[Hold]:
        """Drop the holds of `tables`; the holds that were dropped."""
        holds = self.read()
        dropped = [holds.pop(t) for t in list(tables) if t in holds]
        if dropped:
            self.write(holds, point)
        return dropped

    def keep(self, digests: Mapping[str, str]) -> dict[str, Hold]:
        """The holds still in force given what each table's sources give now (`digests`);
        a hold whose sources changed is dropped (and logged) here."""
        holds = self.read()
        changed = [t for t, h in holds.items()
                   if t in digests and h.sources_hash is not None
                   and digests[t] != h.sources_hash]
        for table in changed:
            logger.info("🔓 {}: sources changed since the rollback to {}; hold released",
                        table, holds[table].version)
        if changed:
            self.release(changed, point="holds:sources-changed")
        return {t: h for t, h in holds.items() if t not in changed}


def hold_rolled_back(holds: Holds, chosen: Mapping[str, tuple[str, str | None]], command: str,
                     since: str, sources_hash: Callable[[str], str | None]) -> None:
    """Hold each rolled-back table ({table: (version stamp, its content hash)}) until its
    sources change. `sources_hash(table)`: what its sources give now (the current version's
    hash, since the run published it). Written before the rollback's commit: a crash between
    them leaves a hold on a version that is still current, which is harmless."""
    current = holds.read()
    for table, (stamp, digest) in chosen.items():
        earlier = current.get(table)
        # What the sources give: the content rolled away from, or an earlier hold's.
        sources = earlier.sources_hash if earlier else sources_hash(table)
        if digest is not None and digest == sources:
            current.pop(table, None)  # back at what the sources give: nothing to hold
        else:
            current[table] = Hold(table, stamp, since, sources, command)
    holds.write(current, point="rollback:holds")

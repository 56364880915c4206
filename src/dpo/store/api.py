"""What every store gives, on a disk (dpo.store.local) or on object storage (dpo.store.objects):
the `Store` protocol, its one family of result types, and the holds. A leaf: it imports only
core modules, so every module that uses a store can import it without importing a backend.

Holds: a table rolled back by hand stays at the chosen version until its sources change.

    {table: {version, since, sources_hash, command}}    DataLoaderAgent/holds.json

`dpo rollback` writes a hold for each table it moves. `sources_hash` is the content hash the
sources gave when the hold began (that of the version rolled away from, or of an earlier
hold's). Phase 2 keeps a held table where it is while its sources still give that content,
and drops the hold, then publishes, as soon as they give anything else (a file added, removed
or changed). `dpo rollback TABLE --release` drops it by hand. The holds are part of the store:
read and written through it (`Store.holds`, `Store.write_holds`), each backend keeping them
beside its versions. Stdlib only: `dpo health` and `dpo versions` read them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from loguru import logger

from dpo.errors import IntegrityError
from dpo.fsio import stamp_key

if TYPE_CHECKING:
    import pyarrow as pa

    from dpo.config import Paths

HOLDS = "DataLoaderAgent/holds.json"  # relative to the store's root, on a disk and on a bucket


@dataclass(frozen=True)
class VersionInfo:
    table: str
    stamp: str
    path: Path  # a readable file of it: the file itself on disk; its local mirror for an object
    rows: int | None
    content_hash: str | None
    current: bool
    url: str | None = None  # on object storage: the object (`path` is its local mirror)

    @property
    def stored(self) -> str:
        """The version as the store names it (what `Store.local_file` takes)."""
        return self.url or str(self.path)

    def to_dict(self) -> dict[str, object]:
        return {"table": self.table, "version": self.stamp, "path": self.stored,
                "rows": self.rows, "content_hash": self.content_hash, "current": self.current}


@dataclass
class PublishOutcome:
    """What a publish did, on either backend."""

    stamp: str | None = None
    written: dict[str, Path] = field(default_factory=dict)  # table -> new version's local file
    stored: dict[str, str] = field(default_factory=dict)  # table -> as the annotations name it
    moved: list[tuple[Path, Path]] = field(default_factory=list)  # archived (on a disk)
    deleted: list[Path] = field(default_factory=list)  # local files retention removed
    manifest: int | None = None  # on object storage: the manifest number committed
    deleted_keys: list[str] = field(default_factory=list)  # objects retention removed


@dataclass(frozen=True)
class Hold:
    table: str
    version: str  # the version stamp the table was rolled back to
    since: str  # ISO time of the rollback
    sources_hash: str | None  # what the sources gave then; None: unknown (release by hand)
    command: str = "dpo rollback"

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)


class Store(Protocol):
    """What the loader, the healing, the diff, the no-change run and the commands ask of a
    store. `stored` strings are versions as the annotations name them: a path relative to the
    root on disk, a URL on object storage."""

    paths: Paths

    def annotations(self) -> dict[str, str]: ...
    def location(self, table: str) -> str | None: ...
    def current_hash(self, table: str) -> str | None: ...
    def list_versions(self, table: str) -> list[VersionInfo]: ...
    def versions_at(self, stamp: str) -> dict[str, str]: ...
    def pointer_history(self, table: str) -> list[tuple[str, str]]:
        """(version stamp, "publish" | "rollback") each time the table's pointer moved,
        oldest first, as far as the store remembers (dpo.store.pointer)."""
        ...
    def commit_token(self) -> str | None: ...
    def has(self, stored: str) -> bool: ...
    def leftovers(self) -> list[Path] | list[str]: ...
    def local_file(self, stored: str) -> Path:
        """A readable, proven local file of the version `stored` (the one way to get one)."""
        ...
    def holds(self) -> dict[str, Hold]: ...
    def write_holds(self, holds: Mapping[str, Hold], *, point: str) -> None: ...
    def share(self, reports: list[Path]) -> list[str]: ...
    def recover(self) -> list[str]: ...
    def publish(self, tables: Mapping[str, tuple[pa.Table | Path, Mapping[bytes, bytes]]]
                ) -> PublishOutcome: ...
    def rollback(self, targets: Mapping[str, str], *,
                 command: str = "dpo rollback") -> list[VersionInfo]: ...


def versions_at(store: Store, stamp: str) -> dict[str, str]:
    """For rollback of all tables: each table's newest version at or before `stamp`."""
    key = stamp_key(stamp)
    targets: dict[str, str] = {}
    for table in store.annotations():
        older = [v for v in store.list_versions(table) if stamp_key(v.stamp) <= key]
        if older:
            targets[table] = older[-1].stamp
    return targets


# -- holds -------------------------------------------------------------------------------------
def parse_holds(raw: bytes, where: str) -> dict[str, Hold]:
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


def holds_body(holds: Mapping[str, Hold]) -> dict[str, dict[str, str | None]]:
    """The holds as the holds file stores them (sorted, the table as the key)."""
    return {t: {k: v for k, v in h.to_dict().items() if k != "table"}
            for t, h in sorted(holds.items())}


def release_holds(store: Store, tables: Iterable[str],
                  point: str = "holds:release") -> list[Hold]:
    """Drop the holds of `tables`; the holds that were dropped."""
    holds = store.holds()
    dropped = [holds.pop(t) for t in list(tables) if t in holds]
    if dropped:
        store.write_holds(holds, point=point)
    return dropped


def keep_holds(store: Store, digests: Mapping[str, str]) -> dict[str, Hold]:
    """The holds still in force given what each table's sources give now (`digests`);
    a hold whose sources changed is dropped (and logged) here."""
    holds = store.holds()
    changed = [t for t, h in holds.items()
               if t in digests and h.sources_hash is not None
               and digests[t] != h.sources_hash]
    for table in changed:
        logger.info("🔓 {}: sources changed since the rollback to {}; hold released",
                    table, holds[table].version)
    if changed:
        release_holds(store, changed, point="holds:sources-changed")
    return {t: h for t, h in holds.items() if t not in changed}


def hold_rolled_back(store: Store, chosen: Mapping[str, tuple[str, str | None]], command: str,
                     since: str, sources_hash: Callable[[str], str | None]) -> None:
    """Hold each rolled-back table ({table: (version stamp, its content hash)}) until its
    sources change. `sources_hash(table)`: what its sources give now (the current version's
    hash, since the run published it). Written before the rollback's commit: a crash between
    them leaves a hold on a version that is still current, which is harmless."""
    current = store.holds()
    for table, (stamp, digest) in chosen.items():
        earlier = current.get(table)
        # What the sources give: the content rolled away from, or an earlier hold's.
        sources = earlier.sources_hash if earlier else sources_hash(table)
        if digest is not None and digest == sources:
            current.pop(table, None)  # back at what the sources give: nothing to hold
        else:
            current[table] = Hold(table, stamp, since, sources, command)
    store.write_holds(current, point="rollback:holds")

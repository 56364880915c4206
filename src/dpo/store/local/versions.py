"""The versioned Parquet store of Phase 2; the only module that touches DataLoaderAgent/.

    DataLoaderAgent/newest/YYYYMMDD_HHMM[-N]_<table>.parquet   current versions
    DataLoaderAgent/historical_db/...                           superseded versions (bounded)
    DataLoaderAgent/change_log.txt                              one block per publishing run
    DataLoaderAgent/holds.json                                  manual rollbacks (dpo.store.api)
    <annotation_path>                                           {table: path}: the commit point

Publishing is write-once, publish-by-pointer: (1) new version files are written atomically,
(2) the annotations file is replaced atomically (the commit), (3) superseded files move to
historical_db/. A crash before (2) leaves the old pointer aimed at old files; after (2), the
new ones. `recover()` removes temp files and archives files nothing points to.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from dpo.config import Paths
from dpo.errors import DpoError, ErrorType, IntegrityError
from dpo.faults import checkpoint
from dpo.fsio import (
    TMP_MARK,
    append_line_block,
    atomic_write_json,
    copy_durably,
    move_durably,
    next_stamp,
    stamp_key,
)
from dpo.store.api import (
    HOLDS,
    Hold,
    PublishOutcome,
    VersionInfo,
    hold_rolled_back,
    holds_body,
    parse_holds,
)
from dpo.store.api import versions_at as _versions_at
from dpo.tables.meta import META_HASH, META_ROWS

if TYPE_CHECKING:
    import pyarrow as pa

_VERSION_RE = re.compile(r"^(\d{8}_\d{4}(?:-\d+)?)_(.+)\.parquet$")


class VersionStore:
    def __init__(
        self, paths: Paths, *, keep_history: int = 30,
        clock: Callable[[], datetime] = datetime.now,
    ) -> None:
        self.paths = paths
        self.keep_history = keep_history
        self.clock = clock
        self.newest = paths.loader_dir / "newest"
        self.history = paths.loader_dir / "historical_db"
        self.change_log = paths.loader_dir / "change_log.txt"
        self.holds_path = paths.loader_dir / HOLDS.rsplit("/", 1)[-1]

    # -- reading -----------------------------------------------------------------------------
    def annotations(self) -> dict[str, str]:
        """The committed {table: path} map; empty before the first publish."""
        path = self.paths.annotation_path
        if not path.exists():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise IntegrityError(f"{path}: unreadable annotations ({exc})", file=str(path)) from exc
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise IntegrityError(f"{path}: annotations must map table -> path", file=str(path))
        return data

    def resolve(self, stored: str) -> Path:
        path = Path(stored)
        return path if path.is_absolute() else self.paths.root / path

    def current_path(self, table: str) -> Path | None:
        stored = self.annotations().get(table)
        return self.resolve(stored) if stored else None

    # -- what the pipeline asks of either store (dpo.store.session.Store) ----------------------
    def location(self, table: str) -> str | None:
        """How results name the current version of `table` (relative to the root)."""
        path = self.current_path(table)
        return self.paths.relative(path) if path else None

    def local_file(self, stored: str) -> Path:
        """A readable file of a version named as the annotations name it; one a publish has
        archived since (the version current before it) is found in historical_db/."""
        path = self.resolve(stored)
        if path.is_file():
            return path
        moved = self.history / path.name
        return moved if moved.exists() else path

    def commit_token(self) -> str | None:
        """Changes whenever a commit is made (the no-change run compares it): the annotations
        file's size and mtime."""
        try:
            stat = self.paths.annotation_path.stat()
        except OSError:
            return None
        return f"{stat.st_size}:{stat.st_mtime_ns}"

    def has(self, stored: str) -> bool:
        return self.resolve(stored).is_file()

    def share(self, reports: list[Path]) -> list[str]:
        """Where people find this run's reports: in the output folder, as written."""
        return [self.paths.relative(p) for p in reports]

    def holds(self) -> dict[str, Hold]:
        path = self.holds_path
        try:
            return parse_holds(path.read_bytes(), str(path))
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise IntegrityError(f"{path}: unreadable holds ({exc})", file=str(path)) from exc

    def write_holds(self, holds: Mapping[str, Hold], *, point: str) -> None:
        if not holds and not self.holds_path.exists():
            return
        atomic_write_json(self.holds_path, holds_body(holds), point=point)

    def current_hash(self, table: str) -> str | None:
        path = self.current_path(table)
        meta = _parquet_meta(path) if path else None
        value = meta.get(META_HASH) if meta else None
        return value.decode() if value else None

    def list_versions(self, table: str) -> list[VersionInfo]:
        """Every stored version of `table`, oldest first."""
        current = self.current_path(table)
        found: list[VersionInfo] = []
        for folder in (self.history, self.newest):
            for path in folder.glob(f"*_{table}.parquet") if folder.is_dir() else ():
                match = _VERSION_RE.match(path.name)
                if not match or match.group(2) != table:
                    continue
                meta = _parquet_meta(path) or {}
                rows = meta.get(META_ROWS)
                digest = meta.get(META_HASH)
                found.append(VersionInfo(
                    table=table, stamp=match.group(1), path=path,
                    rows=int(rows) if rows else None,
                    content_hash=digest.decode() if digest else None,
                    current=current is not None and path.resolve() == current.resolve(),
                ))
        return sorted(found, key=lambda v: stamp_key(v.stamp))

    # -- repair ------------------------------------------------------------------------------
    def leftovers(self) -> list[Path]:
        """What a crash left that recover() would act on: temp files, unreferenced versions.

        Stdlib only and cheap (a few directory listings): the no-change fast path asks it.
        """
        try:
            current = self.annotations()
        except IntegrityError:
            current = {}
        return sorted(self._temp_files() + self._unreferenced(current))

    def _temp_files(self) -> list[Path]:
        notes = self.paths.annotation_path.parent
        found = set(notes.glob(f"{TMP_MARK}*")) if notes.is_dir() else set()
        # Any depth: versions, history, Phase 1 output, quarantine/, the incremental caches.
        for base in (self.paths.loader_dir, self.paths.collector_dir, self.paths.cache_dir):
            if base.is_dir():
                found.update(base.rglob(f"{TMP_MARK}*"))
        return sorted(found)

    def _unreferenced(self, current: Mapping[str, str]) -> list[Path]:
        referenced = {self.resolve(p).resolve() for p in current.values()}
        if not self.newest.is_dir():
            return []
        return sorted(p for p in self.newest.glob("*.parquet") if p.resolve() not in referenced)

    def recover(self) -> list[str]:
        """Undo what a crash left (module docstring): temp files removed; a committed publish
        missing from the change log is logged; an unreferenced version that was never
        published (not in the change log, newer than its table's current one) is removed, any
        other is archived; history trimmed back to `keep_history` versions per table."""
        actions: list[str] = []
        for tmp in self._temp_files():
            tmp.unlink(missing_ok=True)
            actions.append(f"removed temp file {self.paths.relative(tmp)}")
        current = self.annotations()
        self._log_unlogged_publish(current)
        logged = self._change_log_text()
        for path in self._unreferenced(current):
            if path.name not in logged and self._newer_than_current(path, current):
                path.unlink()
                checkpoint("recover:unpublished")
                actions.append(f"removed {path.name}: written by a run that crashed before "
                               "publishing it")
            else:
                move_durably(path, self.history / path.name, point="recover:archive")
                actions.append(f"archived superseded {path.name} to historical_db/")
        actions += self._trim_history()
        if actions:
            self._log_block("recovery", actions)
        return actions

    def _change_log_text(self) -> str:
        try:
            return self.change_log.read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""

    def _newer_than_current(self, path: Path, current: Mapping[str, str]) -> bool:
        """A version newer than its table's current one: with no change-log entry either, it
        was written by a publish that was killed before its commit."""
        match = _VERSION_RE.match(path.name)
        pointer = current.get(match.group(2)) if match else None
        if match is None or pointer is None:
            return match is not None
        now = _VERSION_RE.match(Path(pointer).name)
        return now is not None and stamp_key(match.group(1)) > stamp_key(now.group(1))

    def _log_unlogged_publish(self, current: Mapping[str, str]) -> None:
        """A run killed between its commit and its change-log block: write the block now."""
        stamps = {m.group(1): m for p in current.values() if (m := _VERSION_RE.match(Path(p).name))}
        if not stamps:
            return
        newest = max(stamps, key=stamp_key)
        if f"publish {newest}" in self._change_log_text():
            return
        saved = [f"saved {stored}" for stored in current.values() if f"/{newest}_" in f"/{stored}"]
        self._log_block(f"publish {newest} (logged by recovery: the publishing run was killed "
                        "after its commit)", saved)

    def _trim_history(self) -> list[str]:
        """A crash between the commit and retention leaves history over its bound; counting
        names is cheap, so only tables over the bound pay for a full listing."""
        counts = Counter(m.group(2) for p in self.history.glob("*.parquet")
                         if (m := _VERSION_RE.match(p.name))) if self.history.is_dir() else {}
        pruned = PublishOutcome()
        self._enforce_retention(sorted(t for t, n in counts.items() if n > self.keep_history),
                                pruned)
        return [f"deleted {p.name} (history beyond {self.keep_history} versions)"
                for p in pruned.deleted]

    # -- publishing --------------------------------------------------------------------------
    def publish(
        self, tables: Mapping[str, tuple[pa.Table | Path, Mapping[bytes, bytes]]]
    ) -> PublishOutcome:
        """Publish new versions of `tables` all-or-nothing (see the module docstring).

        A table given as a Path is a finished Parquet file (with its own metadata): copied.
        """
        from dpo.tables.parquet import write_parquet

        outcome = PublishOutcome()
        if not tables:
            return outcome
        old = self.annotations()
        stamp = self._unique_stamp()
        outcome.stamp = stamp
        new = dict(old)
        for name, (table, meta) in tables.items():
            path = self.newest / f"{stamp}_{name}.parquet"
            if isinstance(table, Path):
                copy_durably(table, path, point=f"publish:write:{name}")
            else:
                write_parquet(path, table, meta, point=f"publish:write:{name}")
            outcome.written[name] = path
            new[name] = self.paths.relative(path)
        atomic_write_json(self.paths.annotation_path, new, point="publish:annotations")
        self._archive_superseded(old, new, outcome)
        self._enforce_retention(tables.keys(), outcome)
        self._log_publish(outcome)
        return outcome

    def _archive_superseded(
        self, old: Mapping[str, str], new: Mapping[str, str], outcome: PublishOutcome
    ) -> None:
        for name, stored in old.items():
            if new.get(name) == stored:
                continue
            src = self.resolve(stored)
            if src.exists() and src.parent.resolve() == self.newest.resolve():
                dst = self.history / src.name
                move_durably(src, dst, point=f"publish:archive:{name}")
                outcome.moved.append((src, dst))

    def _enforce_retention(self, names: object, outcome: PublishOutcome) -> None:
        for name in names:  # type: ignore[attr-defined]
            archived = [v for v in self.list_versions(name) if v.path.parent == self.history]
            for version in archived[: max(0, len(archived) - self.keep_history)]:
                version.path.unlink(missing_ok=True)
                checkpoint(f"publish:retention:{name}")
                outcome.deleted.append(version.path)

    def _unique_stamp(self) -> str:
        base = self.clock().strftime("%Y%m%d_%H%M")
        used = {
            m.group(1) for folder in (self.newest, self.history) if folder.is_dir()
            for p in folder.iterdir() if (m := _VERSION_RE.match(p.name))
        }
        return next_stamp(base, used)

    # -- rollback ----------------------------------------------------------------------------
    def rollback(self, targets: Mapping[str, str], *,
                 command: str = "dpo rollback") -> list[VersionInfo]:
        """Point each table at the named version, after proving the file's hash; all at once.

        Each table is then held there (dpo.store.api) until its sources change or it is released;
        the holds are written before the commit, so a crash between them leaves a hold on a
        version that is still current: harmless.
        """
        from dpo.tables.parquet import read_verified

        chosen: dict[str, VersionInfo] = {}
        before: dict[str, str | None] = {}
        for table, stamp in targets.items():
            versions = self.list_versions(table)
            match = [v for v in versions if v.stamp == stamp]
            if not match:
                listed = ", ".join(v.stamp for v in versions) or "none"
                raise DpoError(f"no version {stamp} of {table}; versions: {listed}",
                               error_type=ErrorType.ROLLBACK_ERROR, table=table)
            read_verified(match[0].path)  # raises IntegrityError on a hash mismatch
            chosen[table] = match[0]
            before[table] = next((v.stamp for v in versions if v.current), None)
        self._hold(chosen, command)
        old = self.annotations()
        new = dict(old)
        restored: list[VersionInfo] = []
        for table, version in chosen.items():
            path = version.path
            if path.parent.resolve() != self.newest.resolve():
                dst = self.newest / path.name
                move_durably(path, dst, point=f"rollback:restore:{table}")
                path = dst
            new[table] = self.paths.relative(path)
            restored.append(VersionInfo(table, version.stamp, path, version.rows,
                                        version.content_hash, True))
        atomic_write_json(self.paths.annotation_path, new, point="rollback:annotations")
        outcome = PublishOutcome(stamp=None)
        self._archive_superseded(old, new, outcome)
        held = self.holds()
        lines = [f"rolled back {v.table} from {before[v.table]} to {v.stamp} ({command}); "
                 + ("held until its sources change" if v.table in held else "nothing held")
                 for v in restored]
        lines += [f"moved {s.name} -> historical_db/" for s, _ in outcome.moved]
        self._log_block("rollback", lines)
        return restored

    def _hold(self, chosen: Mapping[str, VersionInfo], command: str) -> None:
        hold_rolled_back(self,
                         {t: (v.stamp, v.content_hash) for t, v in chosen.items()}, command,
                         self.clock().isoformat(timespec="seconds"), self.current_hash)

    def pointer_history(self, table: str) -> list[tuple[str, str]]:
        from dpo.store.pointer import from_change_log

        return from_change_log(self._change_log_text(), table)

    def versions_at(self, stamp: str) -> dict[str, str]:
        return _versions_at(self, stamp)

    # -- change log --------------------------------------------------------------------------
    def _log_publish(self, outcome: PublishOutcome) -> None:
        lines = [f"saved {self.paths.relative(p)}" for p in outcome.written.values()]
        lines += [f"moved {s.name} -> historical_db/" for s, _ in outcome.moved]
        lines += [f"deleted {p.name} (history beyond {self.keep_history} versions)"
                  for p in outcome.deleted]
        self._log_block(f"publish {outcome.stamp}", lines, point="publish:log")

    def _log_block(self, title: str, lines: list[str], point: str | None = None) -> None:
        when = self.clock().strftime("%Y-%m-%d %H:%M:%S")
        body = "".join(f"  - {line}\n" for line in lines)
        append_line_block(self.change_log, f"[{when}] {title}\n{body}\n", point)


def _parquet_meta(path: Path) -> dict[bytes, bytes] | None:
    from dpo.tables.parquet import parquet_meta  # pyarrow only once a data file is opened

    return parquet_meta(path)

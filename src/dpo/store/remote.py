"""The versioned store on object storage, as the pipeline sees a store (dpo.store.backend.Store).

ObjectVersionStore (dpo.store.objectstore) is the protocol: version objects written once,
create-only numbered manifests as the commits, retention and repair by manifest. This adapter
gives it the local store's face:

- versions are named by URL (`s3://bucket/plant/DataLoaderAgent/versions/<table>/<stamp>.<token>
  .parquet`) in results, `dpo versions` and the annotations the pipeline compares;
- a version that must be read as a file (the diff of a publish, a Phase 1 rollback, `dpo diff`)
  is downloaded once into its local mirror (dpo.urls.local_mirror), proven against the hash
  its manifest recorded; a version this machine published is mirrored as it is uploaded. A
  version object is written once and never changed, so a mirrored copy stays right;
- manifests are cached by number and ETag (manifests.ManifestCache): the no-change run lists
  and reads no object;
- the holds (`DataLoaderAgent/holds.json`) are an object read at the start of a run and written
  back when they changed: under the lease, which every writer holds, so a plain put is safe.

The head manifest is cached for the life of the object: it lives for one run or one command,
under the lease (no other writer), and this object's own commits refresh it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from loguru import logger

from dpo.config import Paths
from dpo.errors import DpoError, ErrorType
from dpo.fsio import atomic_write_bytes, remove_temp_files
from dpo.store.backend import versions_at
from dpo.store.holds import Hold, Holds, hold_rolled_back
from dpo.store.manifests import Entry, Manifest, ManifestCache, manifest_listing, read_manifest
from dpo.store.objectstore import VERSIONS, ObjectVersionStore
from dpo.store.versions import PublishOutcome, VersionInfo
from dpo.urls import key_under, local_mirror

if TYPE_CHECKING:
    import pyarrow as pa
    from obstore.store import ObjectStore

HOLDS = "DataLoaderAgent/holds.json"
REPORTS = "DataPipelineOrchestrator/reports/"
TASKS = "_dpo/tasks"  # collect.remotetask.TASKS: per-file segments of workers elsewhere


class RemoteVersionStore:
    """The store of a plant whose `default_dir` is a URL (Paths.store_url)."""

    def __init__(
        self, paths: Paths, store: ObjectStore, *, keep_history: int = 30,
        clock: Callable[[], datetime] = datetime.now, guard: Callable[[], None] | None = None,
    ) -> None:
        assert paths.store_url is not None and paths.annotations_key is not None
        self.paths = paths
        self.url = paths.store_url
        self.objects = ObjectVersionStore(
            store, keep_manifests=keep_history, clock=clock,
            annotations_key=paths.annotations_key, guard=guard,
            cache=ManifestCache(paths.cache_dir / "manifests"))
        self.clock = clock
        self._holds_seen: bytes | None = None
        self._forget()

    def _forget(self) -> None:
        """Drop what was read of the manifests: after this object's own commit or repair."""
        self._listed: list[tuple[int, str | None]] | None = None
        self._head: Manifest | None = None
        self._read_head = False
        self._all: list[Manifest] | None = None

    # -- reading (one listing of the manifests per run; the manifests cached by ETag) --------
    def _listing(self) -> list[tuple[int, str | None]]:
        if self._listed is None:
            self._listed = manifest_listing(self.objects.store)
        return self._listed

    def head(self) -> Manifest | None:
        if not self._read_head:
            listing = self._listing()
            self._head = read_manifest(self.objects.store, listing[-1][0], self.objects.cache,
                                       listing[-1][1]) if listing else None
            self._read_head = True
        return self._head

    def manifests(self) -> list[Manifest]:
        if self._all is None:
            found = []
            for number, e_tag in self._listing():
                try:
                    found.append(read_manifest(self.objects.store, number, self.objects.cache,
                                               e_tag))
                except FileNotFoundError:  # retention by a writer since the listing
                    continue
            self._all = found
        return self._all

    def _entries(self) -> dict[str, Entry]:
        head = self.head()
        return dict(head.tables) if head else {}

    def url_of(self, key: str) -> str:
        return f"{self.url}/{key}"

    def annotations(self) -> dict[str, str]:
        return {t: self.url_of(e.key) for t, e in self._entries().items()}

    def location(self, table: str) -> str | None:
        entry = self._entries().get(table)
        return self.url_of(entry.key) if entry else None

    def current_hash(self, table: str) -> str | None:
        entry = self._entries().get(table)
        return entry.content_hash if entry else None

    def list_versions(self, table: str) -> list[VersionInfo]:
        return [VersionInfo(v.table, v.stamp, self._mirror(v.key), v.rows, v.content_hash,
                            v.current, url=self.url_of(v.key))
                for v in ObjectVersionStore.versions_of(self.manifests(), table)]

    def versions_at(self, stamp: str) -> dict[str, str]:
        return versions_at(self.annotations(), self.list_versions, stamp)

    def pointer_history(self, table: str) -> list[tuple[str, str]]:
        from dpo.store.pointer import from_manifests

        return from_manifests(self.manifests(), table)

    def commit_token(self) -> str | None:
        """The newest manifest's number and ETag: one listing, no object read."""
        listing = self._listing()
        return f"{listing[-1][0]}:{listing[-1][1]}" if listing else None

    def has(self, stored: str) -> bool:
        key = self._key(stored)
        return any(e.key == key for e in self._entries().values())

    def leftovers(self) -> list[str]:
        """Version objects no kept manifest references (repair would delete them)."""
        referenced = {e.key for m in self.manifests() for e in m.tables.values()}
        return sorted(k for k in self.objects.version_keys() if k not in referenced)

    # -- versions as local files -------------------------------------------------------------
    def _key(self, stored: str) -> str:
        key = key_under(stored, self.url)
        if key is None:
            raise DpoError(f"{stored} is not in the store {self.url}",
                           error_type=ErrorType.INTEGRITY_ERROR, file=stored)
        return key

    def _mirror(self, key: str) -> Path:
        return local_mirror(self.paths.root, self.url_of(key))

    def local_copy(self, stored: str) -> Path:
        """The version `stored` (its URL) as a local file, downloaded if not mirrored yet and
        proven against the hash its manifest recorded."""
        key = self._key(stored)
        entry = next((e for m in reversed(self.manifests()) for e in m.tables.values()
                      if e.key == key), None)
        return self._fetch_key(key, entry.content_hash if entry else None)

    def _fetch_key(self, key: str, digest: str | None) -> Path:
        from dpo.store.parquet import read_verified_bytes, recorded_hash

        path = self._mirror(key)
        if path.is_file() and digest is not None and recorded_hash(path) == digest:
            return path
        data = self.objects.get_object(key)
        read_verified_bytes(data, self.url_of(key), digest)  # IntegrityError if it is not
        atomic_write_bytes(path, data, point="mirror:version", durable=False)
        return path

    def fetch(self, version: VersionInfo) -> Path:
        return self._fetch_key(self._key(version.url or ""), version.content_hash)

    def current_file(self, table: str) -> Path | None:
        entry = self._entries().get(table)
        return self._fetch_key(entry.key, entry.content_hash) if entry else None

    def previous_file(self, stored: str) -> Path:
        return self.local_copy(stored)

    # -- writing (under the lease) -----------------------------------------------------------
    def recover(self) -> list[str]:
        import obstore

        actions = [f"removed temp file {self.paths.relative(p)}"
                   for p in remove_temp_files(self.paths.default_dir)]
        actions += self.objects.repair()
        tasks = [m["path"] for chunk in obstore.list(self.objects.store, prefix=TASKS + "/")
                 for m in chunk]
        if tasks:  # segments a killed run's workers left (collect.remotetask); nothing runs now
            self.objects.delete_objects(tasks)
            actions.append(f"deleted {len(tasks)} task segment(s) a killed run left in {TASKS}/")
        self._forget()
        return actions

    def publish(self, tables: Mapping[str, tuple[pa.Table | Path, Mapping[bytes, bytes]]]
                ) -> PublishOutcome:
        """ObjectVersionStore.publish; each version is mirrored locally as it was uploaded."""
        from dpo.store.parquet import parquet_bytes

        made: dict[str, bytes] = {}
        for name, (table, meta) in tables.items():
            made[name] = table.read_bytes() if isinstance(table, Path) else \
                parquet_bytes(table, meta, name)[0]
        done = self.objects.publish({n: (data, tables[n][1]) for n, data in made.items()})
        self._forget()
        outcome = PublishOutcome(stamp=done.stamp)
        for name, key in done.written.items():
            outcome.written[name] = self._mirror(key)
            atomic_write_bytes(outcome.written[name], made[name], point="mirror:version",
                               durable=False)
        # Retention deleted these versions from the store: their local copies go too, or the
        # working folder would keep every version this machine ever read or wrote.
        outcome.deleted = [self._mirror(k) for k in done.deleted if k.startswith(VERSIONS)]
        for path in outcome.deleted:
            path.unlink(missing_ok=True)
        return outcome

    def rollback(self, targets: Mapping[str, str], *,
                 command: str = "dpo rollback") -> list[VersionInfo]:
        chosen = {}
        for table, stamp in targets.items():
            match = [v for v in self.list_versions(table) if v.stamp == stamp]
            if match:
                chosen[table] = (stamp, match[0].content_hash)
        hold_rolled_back(Holds(self.paths.loader_dir), chosen, command,
                         self.clock().isoformat(timespec="seconds"), self.current_hash)
        restored = self.objects.rollback(targets)  # proves each object's hash first
        self._forget()
        return [VersionInfo(v.table, v.stamp, self._mirror(v.key), v.rows, v.content_hash,
                            True, url=self.url_of(v.key)) for v in restored]

    def share(self, reports: list[Path]) -> list[str]:
        """This run's reports put beside the store (`DataPipelineOrchestrator/reports/`), where
        the plant's people look, all at once; their URLs. The data is published already: a
        report that cannot be put is said in the log and keeps its local name."""
        from concurrent.futures import ThreadPoolExecutor

        def put(path: Path) -> str:
            key = f"{REPORTS}{path.name}"
            try:
                self.objects.put_object(key, path.read_bytes(), mode="overwrite", point=None)
            except (OSError, DpoError) as exc:
                logger.error("❌ report {} not put on the store: {}", path.name,
                             getattr(exc, "message", type(exc).__name__))
                return self.paths.relative(path)
            return self.url_of(key)

        with ThreadPoolExecutor(max(1, len(reports))) as pool:
            return list(pool.map(put, reports))

    # -- holds: an object, mirrored for the run ----------------------------------------------
    def holds(self) -> dict[str, Hold]:
        """The holds as the store has them (a reader needs no lease and mirrors nothing)."""
        from obstore.exceptions import NotFoundError

        try:
            return Holds.parse(self.objects.get_object(HOLDS), self.url_of(HOLDS))
        except (NotFoundError, FileNotFoundError):
            return {}

    def pull_holds(self) -> None:
        """The store's holds into the local file the loader and `dpo rollback` use."""
        from obstore.exceptions import NotFoundError

        local = Holds(self.paths.loader_dir).path
        try:
            self._holds_seen = self.objects.get_object(HOLDS)
        except (NotFoundError, FileNotFoundError):
            self._holds_seen = None
            local.unlink(missing_ok=True)
            return
        atomic_write_bytes(local, self._holds_seen, point="mirror:holds")

    def push_holds(self) -> None:
        """The local holds back to the store, when the run or the command changed them."""
        local = Holds(self.paths.loader_dir).path
        data = local.read_bytes() if local.exists() else None
        if data == self._holds_seen:
            return
        if data is None:
            self.objects.delete_objects([HOLDS])
        else:
            self.objects.put_object(HOLDS, data, mode="overwrite", point="objstore:holds")
        self._holds_seen = data


__all__ = ["HOLDS", "RemoteVersionStore"]

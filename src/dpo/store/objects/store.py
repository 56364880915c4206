"""The versioned store on object storage (S3, GCS, Azure, via obstore): the local store's
operations without rename (docs/storage.md argues the protocol), behind dpo.store.api.Store.

    DataLoaderAgent/versions/<table>/<stamp>.<token>.parquet   every version, written once
    DataLoaderAgent/holds.json                                  manual rollbacks (dpo.store.api)
    DataPipelineOrchestrator/reports/                           the runs' reports
    _dpo/manifests/00000042.json                                the commits (.manifests)
    path_annotations.json                                       {table: URL key}, for consumers

Publishing: (1) each version object is put create-only under a key no other writer can pick
(the random token); (2) the next manifest is put create-only: the commit, which exactly one
of two racing writers wins; (3) the annotations are rewritten from it; (4) retention. A crash
before (2) leaves objects no manifest references, which `repair()` deletes; after (2), the
commit stands and `repair()` rewrites the annotations. Repair and retention delete, so they run
under the lease (.lease), with no publish in flight.

As the pipeline sees it:

- versions are named by URL (`s3://bucket/plant/DataLoaderAgent/versions/<table>/<stamp>.<token>
  .parquet`) in results, `dpo versions` and the annotations the pipeline compares;
- a version that must be read as a file (the diff of a publish, a Phase 1 rollback, `dpo diff`)
  is downloaded once into its local mirror (dpo.urls.local_mirror), proven against the hash
  its manifest recorded; a version this machine published is mirrored as it is uploaded. A
  version object is written once and never changed, so a mirrored copy stays right;
- manifests are cached by number and ETag (manifests.ManifestCache): the no-change run lists
  and reads no object. The listing and the head manifest are kept for the life of the object
  (one run or one command, under the lease: no other writer), and dropped after each of its
  own commits; the commit itself always lists afresh.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from loguru import logger

from dpo.config import Paths
from dpo.errors import DpoError, ErrorType, PipelineLocked
from dpo.faults import checkpoint
from dpo.fsio import atomic_write_bytes, next_stamp, remove_temp_files
from dpo.store.api import (
    HOLDS,
    Hold,
    PublishOutcome,
    VersionInfo,
    hold_rolled_back,
    holds_body,
    parse_holds,
    versions_at,
)
from dpo.store.objects.client import ObjectExists, delete, get_bytes, list_keys, put
from dpo.store.objects.manifests import (
    Entry,
    Manifest,
    ManifestCache,
    ManifestReader,
    manifest_key,
    manifest_numbers,
    read_manifests,
    versions_of,
)
from dpo.urls import key_under, local_mirror

if TYPE_CHECKING:
    import pyarrow as pa
    from obstore.store import ObjectStore

VERSIONS = "DataLoaderAgent/versions/"
ANNOTATIONS = "path_annotations.json"
REPORTS = "DataPipelineOrchestrator/reports/"
TASKS = "_dpo/tasks"  # collect.cluster.TASKS: per-file segments of workers elsewhere
T = TypeVar("T")


class ObjectVersionStore:
    """The store of a plant whose `default_dir` is a URL (Paths.store_url), in `client` (an
    obstore store whose prefix is the store's root).

    `keep_history`: the newest commits kept; every version one of them references stays (so
    a rollback can return to the state of any of them); the rest are deleted. `guard` raises
    when this writer may no longer commit (a lost lease).
    """

    def __init__(
        self, paths: Paths, client: ObjectStore, *, keep_history: int = 30,
        clock: Callable[[], datetime] = datetime.now, guard: Callable[[], None] | None = None,
    ) -> None:
        assert paths.store_url is not None and paths.annotations_key is not None
        if keep_history < 1:
            raise DpoError("keep_history must be at least 1 (the newest commit is the store)",
                           error_type=ErrorType.CONFIG_ERROR)
        self.paths = paths
        self.url = paths.store_url
        self.client = client
        self.keep_manifests = keep_history
        self.clock = clock
        self.guard = guard
        self.annotations_key = paths.annotations_key
        self.cache = ManifestCache(paths.cache_dir / "manifests")
        self._forget()

    def _forget(self) -> None:
        """Drop what was read of the manifests: after this object's own commit or repair."""
        self.committed = ManifestReader(self.client, self.cache)

    def head(self) -> Manifest | None:
        """The newest manifest: the store's state."""
        return self.committed.head()

    def manifests(self) -> list[Manifest]:
        return self.committed.all()

    def _entries(self) -> dict[str, Entry]:
        head = self.head()
        return dict(head.tables) if head else {}

    def url_of(self, key: str) -> str:
        return f"{self.url}/{key}"

    def annotations(self) -> dict[str, str]:
        """The committed {table: URL}, from the newest manifest (the commit point), not from
        the annotations object, which a crash can leave one commit behind."""
        return {t: self.url_of(e.key) for t, e in self._entries().items()}

    def location(self, table: str) -> str | None:
        entry = self._entries().get(table)
        return self.url_of(entry.key) if entry else None

    def current_hash(self, table: str) -> str | None:
        entry = self._entries().get(table)
        return entry.content_hash if entry else None

    def list_versions(self, table: str) -> list[VersionInfo]:
        """Every version of `table` a kept manifest references, oldest first."""
        return [self._version_info(e, table, current)
                for e, current in versions_of(self.manifests(), table)]

    def _version_info(self, entry: Entry, table: str, current: bool) -> VersionInfo:
        return VersionInfo(table, entry.version, self._mirror(entry.key), entry.rows,
                           entry.content_hash, current, url=self.url_of(entry.key))

    def versions_at(self, stamp: str) -> dict[str, str]:
        return versions_at(self, stamp)

    def pointer_history(self, table: str) -> list[tuple[str, str]]:
        from dpo.store.pointer import from_manifests

        return from_manifests(self.manifests(), table)

    def commit_token(self) -> str | None:
        """The newest manifest's number and ETag: one listing, no object read."""
        listing = self.committed.listing()
        return f"{listing[-1][0]}:{listing[-1][1]}" if listing else None

    def has(self, stored: str) -> bool:
        key = self._key(stored)
        return any(e.key == key for e in self._entries().values())

    def leftovers(self) -> list[str]:
        """Version objects no kept manifest references (repair would delete them)."""
        referenced = {e.key for m in self.manifests() for e in m.tables.values()}
        return sorted(k for k in list_keys(self.client, VERSIONS) if k not in referenced)

    # -- versions as local files -------------------------------------------------------------
    def _key(self, stored: str) -> str:
        key = key_under(stored, self.url)
        if key is None:
            raise DpoError(f"{stored} is not in the store {self.url}",
                           error_type=ErrorType.INTEGRITY_ERROR, file=stored)
        return key

    def _mirror(self, key: str) -> Path:
        return local_mirror(self.paths.root, self.url_of(key))

    def local_file(self, stored: str) -> Path:
        """The version `stored` (its URL) as a local file, downloaded if not mirrored yet and
        proven against the hash its manifest recorded (the newest manifest's first: the
        current versions need no other manifest read)."""
        from dpo.tables.parquet import read_verified_bytes, recorded_hash

        key = self._key(stored)
        entry = next((e for e in self._entries().values() if e.key == key), None) or next(
            (e for m in reversed(self.manifests()) for e in m.tables.values() if e.key == key),
            None)
        digest = entry.content_hash if entry else None
        path = self._mirror(key)
        if path.is_file() and digest is not None and recorded_hash(path) == digest:
            return path
        data = get_bytes(self.client, key)
        read_verified_bytes(data, self.url_of(key), digest)  # IntegrityError if it is not
        atomic_write_bytes(path, data, point="mirror:version", durable=False)
        return path

    # -- holds: an object beside the versions ------------------------------------------------
    def holds(self) -> dict[str, Hold]:
        try:
            return parse_holds(get_bytes(self.client, HOLDS), self.url_of(HOLDS))
        except FileNotFoundError:
            return {}

    def write_holds(self, holds: Mapping[str, Hold], *, point: str) -> None:
        """Under the lease, which every writer holds, so a plain put is safe."""
        if holds:
            body = json.dumps(holds_body(holds), indent=1).encode()
            put(self.client, HOLDS, body, mode="overwrite")
        else:
            delete(self.client, [HOLDS])
        checkpoint(point)

    # -- publishing (under the lease) --------------------------------------------------------
    def publish(self, tables: Mapping[str, tuple[pa.Table | Path, Mapping[bytes, bytes]]]
                ) -> PublishOutcome:
        """Publish new versions of `tables` all-or-nothing (module docstring); each version is
        mirrored locally as it was uploaded."""
        from dpo.tables.parquet import version_bytes

        outcome = PublishOutcome()
        if not tables:
            return outcome
        manifests = read_manifests(self.client, self.cache)  # afresh: the commit's base
        head = manifests[-1] if manifests else None
        used = {e.version for m in manifests for e in m.tables.values()}
        used |= {m.stamp for m in manifests if m.stamp}
        stamp = next_stamp(self.clock().strftime("%Y%m%d_%H%M"), used)
        token = uuid.uuid4().hex[:12]
        entries = dict(head.tables) if head else {}
        made: dict[str, bytes] = {}
        try:
            for name, (table, meta) in tables.items():
                data, digest, rows = version_bytes(table, meta, name)
                key = f"{VERSIONS}{name}/{stamp}.{token}.parquet"
                self._put(key, data, mode="create", point=f"objstore:publish:write:{name}")
                made[key] = data
                outcome.written[name] = self._mirror(key)
                outcome.stored[name] = self.url_of(key)
                entries[name] = Entry(key, stamp, digest, rows)
        except BaseException:
            # This run's objects only (its token is in their keys); after a kill -9, repair().
            delete(self.client, list(made))
            raise
        manifest = Manifest((head.number if head else 0) + 1, "publish", stamp, entries)
        self._forget()
        self._commit(manifest, list(made), point="objstore:publish:manifest")
        outcome.stamp, outcome.manifest = stamp, manifest.number
        # Committed: nothing below can unpublish it, so a failure is said, and repaired by
        # the next run (repair() rewrites the annotations and finishes retention).
        self._after_commit("write the annotations", lambda: self._write_annotations(
            manifest, point="objstore:publish:annotations"))
        for key, data in made.items():
            atomic_write_bytes(self._mirror(key), data, point="mirror:version", durable=False)
        outcome.deleted_keys = self._after_commit("apply retention", self.retain) or []
        # Retention deleted these versions from the store: their local copies go too, or the
        # working folder would keep every version this machine ever read or wrote.
        outcome.deleted = [self._mirror(k) for k in outcome.deleted_keys
                           if k.startswith(VERSIONS)]
        for path in outcome.deleted:
            path.unlink(missing_ok=True)
        return outcome

    def _after_commit(self, what: str, step: Callable[[], T]) -> T | None:
        """A step after the commit point: its failure is a warning, never the run's."""
        try:
            return step()
        except DpoError as exc:
            logger.warning("⚠️ committed, but could not {} (the next run repairs it): {}",
                           what, exc.message)
            return None

    def _commit(self, manifest: Manifest, written: list[str], point: str) -> None:
        """The commit: a create-only put of the next manifest; a second writer's fails, and
        deletes the objects it wrote (`written`). Any other failure leaves them: the put may
        have landed (a lost response), and repair() knows, from the manifests, which it is."""
        body = manifest.to_json()
        if self.guard is not None:
            self.guard()  # the lease was lost (it expired): another run may be in charge
        try:
            self._put(manifest.key, body, mode="create", point=None)
        except ObjectExists as exc:  # read back already: it is another writer's
            # The client's own retry of a put whose response was lost also lands here: the
            # manifest is then ours, byte for byte (its version keys carry our token).
            if get_bytes(self.client, manifest.key) != body:
                delete(self.client, written)
                raise PipelineLocked(
                    f"another writer committed {manifest.key} first; nothing of this run was "
                    "published (run again: it compares against what that writer published)",
                    file=manifest.key) from exc
        checkpoint(point)

    def _write_annotations(self, manifest: Manifest, point: str) -> None:
        body = json.dumps({t: e.key for t, e in sorted(manifest.tables.items())}, indent=1)
        self._put(self.annotations_key, body.encode(), mode="overwrite", point=point)

    def _put(self, key: str, data: bytes, *, mode: str, point: str | None) -> None:
        put(self.client, key, data, mode=mode, multipart=False)
        if point:
            checkpoint(point)

    # -- rollback ----------------------------------------------------------------------------
    def rollback(self, targets: Mapping[str, str], *,
                 command: str = "dpo rollback") -> list[VersionInfo]:
        """Point each table at the named version, after proving its content hash: all at once,
        as one new manifest (older manifests stay as they were). Each table is then held there
        (dpo.store.api) until its sources change."""
        from dpo.tables.parquet import read_verified_bytes

        manifests = read_manifests(self.client, self.cache)
        if not manifests:
            raise DpoError("nothing has been published: no version to roll back to",
                           error_type=ErrorType.ROLLBACK_ERROR)
        entries = dict(manifests[-1].tables)
        chosen: dict[str, Entry] = {}
        for table, stamp in targets.items():
            versions = [e for e, _ in versions_of(manifests, table)]
            match = [e for e in versions if e.version == stamp]
            if not match:
                listed = ", ".join(e.version for e in versions) or "none"
                raise DpoError(f"no version {stamp} of {table}; versions: {listed}",
                               error_type=ErrorType.ROLLBACK_ERROR, table=table)
            # raises IntegrityError if the object is not what the manifest recorded
            read_verified_bytes(get_bytes(self.client, match[0].key), match[0].key,
                                match[0].content_hash)
            chosen[table] = entries[table] = match[0]
        holds = self.holds()
        hold_rolled_back(self, {t: (e.version, e.content_hash) for t, e in chosen.items()},
                         command, self.clock().isoformat(timespec="seconds"), self.current_hash)
        manifest = Manifest(manifests[-1].number + 1, "rollback", None, entries)
        self._forget()
        try:
            self._commit(manifest, [], point="objstore:rollback:manifest")
        except DpoError:
            # The command failed: it changes nothing, the holds included (a kill here leaves
            # a hold on a version that is still current, which is harmless).
            self._after_commit("put the holds back", lambda: self.write_holds(
                holds, point="rollback:holds-restored"))
            raise
        self._after_commit("write the annotations", lambda: self._write_annotations(
            manifest, point="objstore:rollback:annotations"))
        return [self._version_info(e, t, True) for t, e in chosen.items()]

    # -- retention and repair ----------------------------------------------------------------
    def retain(self) -> list[str]:
        """Delete the manifests older than the newest `keep_history` (oldest first, so a crash
        leaves the newest ones), then every version object no kept manifest references."""
        numbers = manifest_numbers(self.client)
        dropped = [manifest_key(n) for n in numbers[: max(0, len(numbers) - self.keep_manifests)]]
        for key in dropped:
            delete(self.client, [key])
            checkpoint("objstore:retention:manifest")
        orphans = self.orphans()
        delete(self.client, orphans)
        return dropped + orphans

    def repair(self) -> list[str]:
        """Undo what a crash left: version objects no manifest references (written by a run
        killed before its commit) deleted; annotations one commit behind rewritten; retention
        finished. Run under the lease: a publish in flight has objects no manifest references
        yet. Returns one line per action."""
        actions: list[str] = []
        self._forget()
        head = self.head()
        if head is not None and self._stored_annotations() != {
                t: e.key for t, e in head.tables.items()}:
            self._write_annotations(head, point="objstore:repair:annotations")
            actions.append(f"rewrote {self.annotations_key} from {head.key}")
        if self.orphans():
            # The fence: a run that lost its lease while paused, and wrote the objects about
            # to be swept, can no longer commit manifest head+1 on top of them (create-only).
            number = (head.number if head else 0) + 1
            self._commit(Manifest(number, "repair", None, dict(head.tables) if head else {}),
                         [], point="objstore:repair:fence")
            actions.append(f"committed manifest {number} (a fence: the same tables) before "
                           "deleting what no manifest references")
        actions += [f"deleted {key}: no kept manifest references it" for key in self.retain()]
        self._forget()
        return actions

    def orphans(self) -> list[str]:
        """Version objects no kept manifest references (two listings; manifests cached)."""
        referenced = {e.key for m in read_manifests(self.client, self.cache)
                      for e in m.tables.values()}
        return sorted(key for key in list_keys(self.client, VERSIONS) if key not in referenced)

    def _stored_annotations(self) -> dict[str, str] | None:
        try:
            data = get_bytes(self.client, self.annotations_key)
        except FileNotFoundError:
            return None
        try:
            found = json.loads(data)
        except ValueError:
            return None  # unreadable: rewritten from the manifest, which is the truth
        return found if isinstance(found, dict) else None

    def recover(self) -> list[str]:
        actions = [f"removed temp file {self.paths.relative(p)}"
                   for p in remove_temp_files(self.paths.default_dir)]
        actions += self.repair()
        tasks = list_keys(self.client, TASKS + "/")
        if tasks:  # segments a killed run's workers left (collect.cluster); nothing runs now
            delete(self.client, tasks)
            actions.append(f"deleted {len(tasks)} task segment(s) a killed run left in {TASKS}/")
        return actions

    # -- reports -----------------------------------------------------------------------------
    def share(self, reports: list[Path]) -> list[str]:
        """This run's reports put beside the store (`DataPipelineOrchestrator/reports/`), where
        the plant's people look, all at once; their URLs. The data is published already: a
        report that cannot be put is said in the log and keeps its local name."""
        from concurrent.futures import ThreadPoolExecutor

        def share_one(path: Path) -> str:
            key = f"{REPORTS}{path.name}"
            try:
                self._put(key, path.read_bytes(), mode="overwrite", point=None)
            except (OSError, DpoError) as exc:
                logger.error("❌ report {} not put on the store: {}", path.name,
                             getattr(exc, "message", type(exc).__name__))
                return self.paths.relative(path)
            return self.url_of(key)

        with ThreadPoolExecutor(max(1, len(reports))) as pool:
            return list(pool.map(share_one, reports))



__all__ = ["ANNOTATIONS", "REPORTS", "TASKS", "VERSIONS", "ObjectVersionStore"]

"""The versioned store on object storage (S3, GCS, Azure, via obstore): VersionStore's operations
without rename (docs/storage.md argues the protocol).

    DataLoaderAgent/versions/<table>/<stamp>.<token>.parquet   every version, written once
    _dpo/manifests/00000042.json                                the commits (dpo.store.manifests)
    path_annotations.json                                       {table: key}, for consumers

Publishing: (1) each version object is put create-only under a key no other writer can pick
(the random token); (2) the next manifest is put create-only: the commit, which exactly one
of two racing writers wins; (3) the annotations are rewritten from it; (4) retention. A crash
before (2) leaves objects no manifest references, which `repair()` deletes; after (2), the
commit stands and `repair()` rewrites the annotations. Repair and retention delete, so they run
under the lease (dpo.store.lease), with no publish in flight.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from dpo.errors import DpoError, ErrorType, PipelineLocked
from dpo.faults import checkpoint
from dpo.fsio import next_stamp, stamp_key
from dpo.store.manifests import (
    Entry,
    Manifest,
    ManifestCache,
    manifest_key,
    manifest_listing,
    manifest_numbers,
    read_manifest,
    read_manifests,
    storage_error,
)
from dpo.store.meta import META_HASH, META_ROWS

if TYPE_CHECKING:
    import pyarrow as pa
    from obstore.store import ObjectStore

VERSIONS = "DataLoaderAgent/versions/"
ANNOTATIONS = "path_annotations.json"


@dataclass(frozen=True)
class ObjectVersion:
    """One stored version of a table: VersionInfo with an object key for a path."""

    table: str
    stamp: str
    key: str
    rows: int
    content_hash: str
    current: bool

    def to_dict(self) -> dict[str, object]:
        return {"table": self.table, "version": self.stamp, "path": self.key, "rows": self.rows,
                "content_hash": self.content_hash, "current": self.current}


@dataclass
class ObjectPublish:
    stamp: str | None = None
    manifest: int | None = None  # the number committed
    written: dict[str, str] = field(default_factory=dict)  # table -> new version key
    deleted: list[str] = field(default_factory=list)  # objects retention removed


class ObjectVersionStore:
    """The versioned store in `store` (an obstore store, its prefix the store's root).

    `keep_manifests`: the newest commits kept; every version one of them references stays (so
    a rollback can return to the state of any of them); the rest are deleted.
    """

    def __init__(
        self, store: ObjectStore, *, keep_manifests: int = 30,
        clock: Callable[[], datetime] = datetime.now, annotations_key: str = ANNOTATIONS,
        cache: ManifestCache | None = None, guard: Callable[[], None] | None = None,
    ) -> None:
        if keep_manifests < 1:
            raise DpoError("keep_manifests must be at least 1 (the newest commit is the store)",
                           error_type=ErrorType.CONFIG_ERROR)
        self.store = store
        self.keep_manifests = keep_manifests
        self.clock = clock
        self.annotations_key = annotations_key
        self.cache = cache  # manifests read before (a no-change run reads no object)
        self.guard = guard  # raises when this writer may no longer commit (a lost lease)

    # -- reading -----------------------------------------------------------------------------
    def newest(self) -> Manifest | None:
        listing = manifest_listing(self.store)
        if not listing:
            return None
        number, e_tag = listing[-1]
        return read_manifest(self.store, number, self.cache, e_tag)

    def manifests(self) -> list[Manifest]:
        return read_manifests(self.store, self.cache)

    def current(self) -> dict[str, Entry]:
        """The committed {table: version entry}: the newest manifest's; empty before a publish."""
        head = self.newest()
        return dict(head.tables) if head else {}

    def annotations(self) -> dict[str, str]:
        """The committed {table: version key}, from the newest manifest (the commit point),
        not from the annotations object, which a crash can leave one commit behind."""
        return {t: e.key for t, e in self.current().items()}

    def current_hash(self, table: str) -> str | None:
        entry = self.current().get(table)
        return entry.content_hash if entry else None

    def list_versions(self, table: str) -> list[ObjectVersion]:
        """Every version of `table` a kept manifest references, oldest first."""
        return self.versions_of(self.manifests(), table)

    @staticmethod
    def versions_of(manifests: list[Manifest], table: str) -> list[ObjectVersion]:
        current = manifests[-1].tables.get(table) if manifests else None
        seen: dict[str, Entry] = {}
        for manifest in manifests:
            entry = manifest.tables.get(table)
            if entry is not None:
                seen.setdefault(entry.key, entry)
        found = [ObjectVersion(table, e.version, e.key, e.rows, e.content_hash,
                               current is not None and e.key == current.key)
                 for e in seen.values()]
        return sorted(found, key=lambda v: stamp_key(v.stamp))

    def read(self, table: str, stamp: str | None = None) -> pa.Table:
        """A version of `table` (the current one by default), its content hash proven."""
        from dpo.store.parquet import read_verified_bytes

        versions = self.list_versions(table)
        chosen = [v for v in versions if (v.stamp == stamp if stamp else v.current)]
        if not chosen:
            listed = ", ".join(v.stamp for v in versions) or "none"
            raise DpoError(f"no version {stamp or '(current)'} of {table}; versions: {listed}",
                           error_type=ErrorType.ROLLBACK_ERROR, table=table)
        return read_verified_bytes(self.get_object(chosen[0].key), chosen[0].key,
                                   chosen[0].content_hash)

    # -- publishing --------------------------------------------------------------------------
    def publish(
        self, tables: Mapping[str, tuple[pa.Table | bytes, Mapping[bytes, bytes]]]
    ) -> ObjectPublish:
        """Publish new versions of `tables` all-or-nothing (module docstring). A table given as
        bytes is a finished Parquet file written by dpo (its hash and rows in its metadata)."""
        outcome = ObjectPublish()
        if not tables:
            return outcome
        manifests = self.manifests()
        head = manifests[-1] if manifests else None
        used = {e.version for m in manifests for e in m.tables.values()}
        used |= {m.stamp for m in manifests if m.stamp}
        stamp = next_stamp(self.clock().strftime("%Y%m%d_%H%M"), used)
        token = uuid.uuid4().hex[:12]
        entries = dict(head.tables) if head else {}
        try:
            for name, (table, meta) in tables.items():
                data, digest, rows = _parquet(table, meta, name)
                key = f"{VERSIONS}{name}/{stamp}.{token}.parquet"
                self.put_object(key, data, mode="create", point=f"objstore:publish:write:{name}")
                outcome.written[name] = key
                entries[name] = Entry(key, stamp, digest, rows)
        except BaseException:
            # This run's objects only (its token is in their keys); after a kill -9, repair().
            self.delete_objects(list(outcome.written.values()))
            raise
        manifest = Manifest((head.number if head else 0) + 1, "publish", stamp, entries)
        self._commit(manifest, list(outcome.written.values()), point="objstore:publish:manifest")
        outcome.stamp, outcome.manifest = stamp, manifest.number
        self._write_annotations(manifest, point="objstore:publish:annotations")
        outcome.deleted = self.retain()
        return outcome

    def _commit(self, manifest: Manifest, written: list[str], point: str) -> None:
        """The commit: a create-only put of the next manifest; a second writer's fails, and
        deletes the objects it wrote (`written`). Any other failure leaves them: the put may
        have landed (a lost response), and repair() knows, from the manifests, which it is."""
        from obstore.exceptions import AlreadyExistsError

        body = manifest.to_json()
        if self.guard is not None:
            self.guard()  # the lease was lost (it expired): another run may be in charge
        try:
            self.put_object(manifest.key, body, mode="create", point=None)
        except AlreadyExistsError as exc:
            # The client's own retry of a put whose response was lost also lands here: the
            # manifest is then ours, byte for byte (its version keys carry our token).
            if self.get_object(manifest.key) != body:
                self.delete_objects(written)
                raise PipelineLocked(
                    f"another writer committed {manifest.key} first; nothing of this run was "
                    "published (run again: it compares against what that writer published)",
                    file=manifest.key) from exc
        checkpoint(point)

    def _write_annotations(self, manifest: Manifest, point: str) -> None:
        body = json.dumps({t: e.key for t, e in sorted(manifest.tables.items())}, indent=1)
        self.put_object(self.annotations_key, body.encode(), mode="overwrite", point=point)

    # -- rollback ----------------------------------------------------------------------------
    def rollback(self, targets: Mapping[str, str]) -> list[ObjectVersion]:
        """Point each table at the named version, after proving its content hash: all at once,
        as one new manifest (older manifests stay as they were)."""
        from dpo.store.parquet import read_verified_bytes

        manifests = self.manifests()
        if not manifests:
            raise DpoError("nothing has been published: no version to roll back to",
                           error_type=ErrorType.ROLLBACK_ERROR)
        entries = dict(manifests[-1].tables)
        restored: list[ObjectVersion] = []
        for table, stamp in targets.items():
            versions = self.versions_of(manifests, table)
            match = [v for v in versions if v.stamp == stamp]
            if not match:
                listed = ", ".join(v.stamp for v in versions) or "none"
                raise DpoError(f"no version {stamp} of {table}; versions: {listed}",
                               error_type=ErrorType.ROLLBACK_ERROR, table=table)
            chosen = match[0]
            # raises IntegrityError if the object is not what the manifest recorded
            read_verified_bytes(self.get_object(chosen.key), chosen.key, chosen.content_hash)
            entries[table] = Entry(chosen.key, chosen.stamp, chosen.content_hash, chosen.rows)
            restored.append(ObjectVersion(table, chosen.stamp, chosen.key, chosen.rows,
                                          chosen.content_hash, True))
        manifest = Manifest(manifests[-1].number + 1, "rollback", None, entries)
        self._commit(manifest, [], point="objstore:rollback:manifest")
        self._write_annotations(manifest, point="objstore:rollback:annotations")
        return restored

    # -- retention and repair ----------------------------------------------------------------
    def retain(self) -> list[str]:
        """Delete the manifests older than the newest `keep_manifests` (oldest first, so a crash
        leaves the newest ones), then every version object no kept manifest references."""
        numbers = manifest_numbers(self.store)
        dropped = [manifest_key(n) for n in numbers[: max(0, len(numbers) - self.keep_manifests)]]
        for key in dropped:
            self.delete_objects([key])
            checkpoint("objstore:retention:manifest")
        return dropped + self._sweep()

    def repair(self) -> list[str]:
        """Undo what a crash left: version objects no manifest references (written by a run
        killed before its commit) deleted; annotations one commit behind rewritten; retention
        finished. Run under the lease: a publish in flight has objects no manifest references
        yet. Returns one line per action."""
        actions: list[str] = []
        head = self.newest()
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
        return actions

    def _sweep(self) -> list[str]:
        orphans = self.orphans()
        self.delete_objects(orphans)
        return orphans

    def orphans(self) -> list[str]:
        """Version objects no kept manifest references (two listings; manifests cached)."""
        referenced = {e.key for m in self.manifests() for e in m.tables.values()}
        return sorted(key for key in self.version_keys() if key not in referenced)

    def version_keys(self) -> list[str]:
        import obstore

        return [meta["path"] for chunk in obstore.list(self.store, prefix=VERSIONS)
                for meta in chunk]

    def _stored_annotations(self) -> dict[str, str] | None:
        from obstore.exceptions import NotFoundError

        try:
            data = self.get_object(self.annotations_key)
        except (NotFoundError, FileNotFoundError):
            return None
        try:
            found = json.loads(data)
        except ValueError:
            return None  # unreadable: rewritten from the manifest, which is the truth
        return found if isinstance(found, dict) else None

    # -- object primitives -------------------------------------------------------------------
    def put_object(self, key: str, data: bytes, *, mode: str, point: str | None) -> None:
        import obstore
        from obstore.exceptions import AlreadyExistsError, BaseError, PreconditionError

        try:
            obstore.put(self.store, key, data, mode=mode,  # type: ignore[arg-type]
                        use_multipart=False)
        except (AlreadyExistsError, PreconditionError):
            raise  # the protocol's own outcomes: the caller says what they mean
        except (BaseError, OSError) as exc:  # obstore's failures, as a dpo error naming the key
            raise storage_error("write", key, exc) from exc
        if point:
            checkpoint(point)

    def get_object(self, key: str) -> bytes:
        import obstore

        return bytes(obstore.get(self.store, key).bytes())

    def delete_objects(self, keys: list[str]) -> None:
        import obstore

        if keys:
            obstore.delete(self.store, keys)


def _parquet(table: pa.Table | bytes, meta: Mapping[bytes, bytes],
             name: str) -> tuple[bytes, str, int]:
    """The version's bytes, content hash and row count. Bytes given must carry dpo's hash in
    their metadata (written by dpo): a store never records a hash it did not see made."""
    from dpo.store.parquet import parquet_bytes

    if not isinstance(table, bytes):
        data, digest = parquet_bytes(table, meta, name)
        return data, digest, table.num_rows
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dpo.errors import IntegrityError

    try:
        found = pq.read_schema(pa.BufferReader(table)).metadata or {}
    except (OSError, pa.ArrowException) as exc:
        raise IntegrityError(f"{name}: unreadable Parquet ({exc})", table=name) from exc
    if META_HASH not in found or META_ROWS not in found:
        raise IntegrityError(f"{name}: Parquet without dpo's content hash", table=name)
    return table, found[META_HASH].decode(), int(found[META_ROWS])

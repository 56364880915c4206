"""The manifests of the object-storage store (docs/storage.md): its commits.

    _dpo/manifests/00000042.json   commit 42: every table -> version object, hash, rows
    _dpo/lease.json                the run lease (dpo.store.objects.lease)

A manifest is written once, create-only, and never changed: the newest one IS the store's
state. Every request goes through dpo.store.objects.client.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dpo.errors import IntegrityError
from dpo.fsio import stamp_key
from dpo.store.objects.client import get_bytes, list_objects

if TYPE_CHECKING:
    from obstore.store import ObjectStore

MANIFESTS = "_dpo/manifests/"
MANIFEST_FORMAT = 1
_MANIFEST_RE = re.compile(r"^(\d{8})\.json$")


@dataclass(frozen=True)
class Entry:
    """One table's version in a manifest."""

    key: str  # the version object, relative to the store's prefix
    version: str  # its stamp, YYYYMMDD_HHMM[-N]: what `dpo rollback` names
    content_hash: str
    rows: int

    def to_dict(self) -> dict[str, object]:
        return {"key": self.key, "version": self.version, "content_hash": self.content_hash,
                "rows": self.rows}


@dataclass(frozen=True)
class Manifest:
    number: int
    kind: str  # "publish" or "rollback"
    stamp: str | None  # the publishing run's stamp; None for a rollback
    tables: dict[str, Entry]

    @property
    def key(self) -> str:
        return manifest_key(self.number)

    def to_json(self) -> bytes:
        body = {"format": MANIFEST_FORMAT, "number": self.number, "kind": self.kind,
                "stamp": self.stamp,
                "tables": {t: e.to_dict() for t, e in sorted(self.tables.items())}}
        return json.dumps(body, indent=1).encode()


def manifest_key(number: int) -> str:
    # Zero-padded: a listing sorts them in commit order, and 10^8 commits is ~270k years daily.
    return f"{MANIFESTS}{number:08d}.json"


def parse_manifest(data: bytes, key: str) -> Manifest:
    """A manifest's bytes as a Manifest; anything unexpected is an IntegrityError, never a guess
    (repair deletes what no manifest references: a misread manifest would delete data)."""
    try:
        body = json.loads(data)
        if body["format"] != MANIFEST_FORMAT:
            raise ValueError(f"format {body['format']!r} is not {MANIFEST_FORMAT}")
        tables = {str(t): Entry(str(e["key"]), str(e["version"]), str(e["content_hash"]),
                                int(e["rows"])) for t, e in body["tables"].items()}
        stamp = body["stamp"]
        return Manifest(int(body["number"]), str(body["kind"]),
                        None if stamp is None else str(stamp), tables)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise IntegrityError(f"{key}: unreadable manifest ({exc})", file=key) from exc


def manifest_listing(store: ObjectStore) -> list[tuple[int, str | None]]:
    """The committed manifests' numbers and ETags, oldest first (one listing, no object read)."""
    found = []
    for meta in list_objects(store, MANIFESTS):
        match = _MANIFEST_RE.match(meta["path"].rsplit("/", 1)[-1])
        if match:
            found.append((int(match.group(1)), meta.get("e_tag")))
    return sorted(found)


def manifest_numbers(store: ObjectStore) -> list[int]:
    return [number for number, _ in manifest_listing(store)]


def read_manifest(store: ObjectStore, number: int, cache: ManifestCache | None = None,
                  e_tag: str | None = None) -> Manifest:
    key = manifest_key(number)
    data = cache.get(number, e_tag) if cache else None
    if data is None:
        data = get_bytes(store, key)
        if cache is not None:
            cache.put(number, e_tag, data)
    found = parse_manifest(data, key)
    if found.number != number:
        raise IntegrityError(f"{key}: says it is manifest {found.number}", file=key)
    return found


def read_manifests(store: ObjectStore, cache: ManifestCache | None = None) -> list[Manifest]:
    """Every kept manifest, oldest first (retention keeps a few dozen small objects). One that
    retention deletes between the listing and its read is skipped: a reader (`dpo versions`)
    needs no lease, and retention only deletes the oldest, never the newest."""
    return ManifestReader(store, cache).all()


def versions_of(manifests: list[Manifest], table: str) -> list[tuple[Entry, bool]]:
    """Every version of `table` the manifests reference, oldest first, and whether it is the
    newest manifest's (the current one)."""
    current = manifests[-1].tables.get(table) if manifests else None
    seen: dict[str, Entry] = {}
    for manifest in manifests:
        entry = manifest.tables.get(table)
        if entry is not None:
            seen.setdefault(entry.key, entry)
    ordered = sorted(seen.values(), key=lambda e: stamp_key(e.version))
    return [(e, current is not None and e.key == current.key) for e in ordered]


class ManifestReader:
    """The committed manifests as one reader sees them: listed once, each read once (from the
    cache when its ETag is known), for the life of the reader."""

    def __init__(self, store: ObjectStore, cache: ManifestCache | None) -> None:
        self.store = store
        self.cache = cache
        self._listed: list[tuple[int, str | None]] | None = None
        self._head: Manifest | None = None
        self._read_head = False
        self._all: list[Manifest] | None = None

    def listing(self) -> list[tuple[int, str | None]]:
        if self._listed is None:
            self._listed = manifest_listing(self.store)
        return self._listed

    def head(self) -> Manifest | None:
        if not self._read_head:
            listing = self.listing()
            self._head = read_manifest(self.store, listing[-1][0], self.cache,
                                       listing[-1][1]) if listing else None
            self._read_head = True
        return self._head

    def all(self) -> list[Manifest]:
        """Every kept manifest, oldest first; one retention deleted since the listing skipped."""
        if self._all is None:
            found = []
            for number, e_tag in self.listing():
                try:
                    found.append(read_manifest(self.store, number, self.cache, e_tag))
                except FileNotFoundError:  # retention by a writer since the listing
                    continue
            self._all = found
        return self._all


class ManifestCache:
    """Manifests read before, as local files named by number and ETag: a manifest is written
    once and never changed, so a listing that shows the same ETag proves the copy current,
    and the no-change run reads no object. Parsed again on every use (parse_manifest checks
    it); a copy that does not parse is an IntegrityError like the object itself would be."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, number: int, e_tag: str | None) -> Path | None:
        if not e_tag:
            return None
        tag = re.sub(r"[^A-Za-z0-9_-]", "", e_tag)[:64]
        return self.folder / f"{number:08d}.{tag}.json"

    def get(self, number: int, e_tag: str | None) -> bytes | None:
        path = self._path(number, e_tag)
        try:
            return path.read_bytes() if path else None
        except OSError:
            return None

    def put(self, number: int, e_tag: str | None, data: bytes) -> None:
        from dpo.fsio import atomic_write_bytes

        path = self._path(number, e_tag)
        if path is not None:
            atomic_write_bytes(path, data, point="cache:manifest", durable=False)

"""Inputs on object storage, mirrored into a local work folder (issue #14, docs/storage.md).

Phase 1 reads local files (fastexcel wants a file, and every error names one), so a remote
source folder, schema file or master file is copied into a local folder first, and only what
changed is downloaded: whether an object changed is decided from one listing (or one HEAD)
against the state the mirror kept, by ETag and size. A run where nothing changed downloads
nothing and touches no local file, so dpo's own fingerprints (size, mtime) stay as they were.

    <local_dir>/.dpo-mirror.json          mirror_prefix: {name: {e_tag, size, last_modified,
                                           mtime_ns}}, the files the mirror made
    <folder>/.<name>.dpo-mirror.json      mirror_object: the same record for one file

A downloaded file's mtime is the object's last_modified, so the local fingerprint follows the
object, not the download time. obstore is imported only when something is mirrored.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dpo.errors import ConfigError, DpoError, ErrorType, IntegrityError
from dpo.fsio import TMP_MARK, Fingerprint, atomic_file, fsync_dir, write_if_changed
from dpo.store.objects.client import (
    head,
    list_level,
    list_objects,
    object_url,
    storage_error,
    stream,
)

if TYPE_CHECKING:
    from obstore import ObjectMeta
    from obstore.store import ObjectStore

STATE = ".dpo-mirror.json"
DOWNLOADS = 8  # objects fetched at once by a folder mirror
SIDECAR_SUFFIX = ".dpo-mirror.json"


@dataclass(frozen=True)
class Mirrored:
    downloaded: tuple[str, ...]  # object keys fetched this time
    removed: tuple[str, ...]  # object keys whose local copy was deleted: the object is gone
    unchanged: int


# -- URLs --------------------------------------------------------------------------------------
# -- one folder ----------------------------------------------------------------------------
def mirror_prefix(store: ObjectStore, prefix: str, local_dir: Path,
                  listed: dict[str, ObjectMeta] | None = None) -> Mirrored:
    """Make `local_dir` hold the objects directly under `prefix` (not its sub-"folders").

    One listing; an object is downloaded when it is new, its ETag or size changed, or its local
    copy is missing or was changed (size/mtime differ from what the mirror wrote). Local copies
    of objects that are gone are deleted, but only files the mirror made (those in its state):
    anything else in `local_dir` is left alone. Names that could escape `local_dir`, or that
    collide with the mirror's own files, are refused before anything is downloaded.
    `listed`: the folder's objects from a listing already made (list_tree), else listed here.
    """
    prefix = prefix.strip("/")
    listed = list_folder(store, prefix) if listed is None else listed
    state_path = local_dir / STATE
    state = _load_state(state_path)
    try:
        local_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DpoError(f"cannot create {local_dir}: {exc.strerror or exc}",
                       error_type=ErrorType.WRITE_ERROR, file=str(local_dir)) from exc
    stale = [n for n, meta in listed.items() if not _current(state.get(n), meta, local_dir / n)]
    gone = sorted(n for n in state if n not in listed)
    if not stale and not gone:
        return Mirrored((), (), len(listed))
    # Recorded before the download: a run killed in the middle leaves every file it may have
    # written in the state (as pending: fetched again next time), so a later run deletes it if
    # its object is gone by then.
    state.update({n: {"pending": True} for n in stale})
    _save_state(state_path, state)
    downloaded: list[str] = []
    removed: list[str] = []
    try:
        # Several GETs at once: a first mirror of years of exports is one round trip per file,
        # and obstore's requests run without the GIL. A failure stops the rest (still
        # `pending` in the state: fetched next time).
        with ThreadPoolExecutor(DOWNLOADS) as pool:
            ahead = {name: pool.submit(_download, store, listed[name]["path"], local_dir / name)
                     for name in sorted(stale)}
            for name, future in ahead.items():
                try:
                    state[name] = future.result()
                except BaseException:
                    for other in ahead.values():
                        other.cancel()
                    raise
                downloaded.append(listed[name]["path"])
        for name in gone:
            _safe_name(name, f"{STATE} entry {name!r}")  # the state is ours, but checked anyway
            _remove(local_dir / name)
            del state[name]
            removed.append(_join(prefix, name))
    finally:  # what was done is recorded even when a download fails
        fsync_dir(local_dir)
        _save_state(state_path, state)
    return Mirrored(tuple(downloaded), tuple(removed), len(listed) - len(stale))


def list_folder(store: ObjectStore, prefix: str) -> dict[str, ObjectMeta]:
    """The objects directly under `prefix`, by name; every name checked before any is used."""
    return _named(store, prefix, list_level(store, prefix)[0])


def list_tree(store: ObjectStore, prefix: str) -> dict[str, dict[str, ObjectMeta]]:
    """The objects one folder below `prefix`, by folder and name, from one listing (a few
    pages for thousands of objects) instead of one listing per folder; objects directly under
    `prefix` or deeper than one folder are not sources and are left out."""
    prefix = prefix.strip("/")
    folders: dict[str, list[ObjectMeta]] = {}
    for meta in list_objects(store, f"{prefix}/" if prefix else None):
        parts = meta["path"][len(prefix) + 1 if prefix else 0:].split("/")
        if len(parts) == 2:
            folders.setdefault(parts[0], []).append(meta)
    return {folder: _named(store, _join(prefix, folder), metas)
            for folder, metas in folders.items()}


def _named(store: ObjectStore, prefix: str, objects: Iterable[ObjectMeta]
           ) -> dict[str, ObjectMeta]:
    listed: dict[str, ObjectMeta] = {}
    for meta in objects:
        key = meta["path"]
        name = key[len(prefix) + 1:] if prefix else key
        _safe_name(name, object_url(store, key))
        listed[name] = meta
    return listed


def _safe_name(name: str, shown: str) -> None:
    """A name that is one plain file name in its folder on any OS, and none of the mirror's
    own files (its state, sidecars, temp files)."""
    bad = (not name or name in (".", "..") or any(c in name for c in "/\\\0")
           or name == STATE or name.endswith(SIDECAR_SUFFIX) or name.startswith(TMP_MARK))
    if bad:
        raise ConfigError(f"{shown}: the name {name!r} would escape the mirror's folder or "
                          "replace one of its own files; refused", file=shown)


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:  # a folder put there by hand, a read-only share
        raise DpoError(f"cannot delete {path}: {exc.strerror or exc}",
                       error_type=ErrorType.WRITE_ERROR, file=str(path)) from exc


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


# -- one object ----------------------------------------------------------------------------
def mirror_object(store: ObjectStore, key: str, local_path: Path,
                  meta: ObjectMeta | None = None) -> bool:
    """Make `local_path` hold the object `key`: one HEAD (none when `meta` comes from a
    listing of its folder: list_folder), a GET only when its ETag or size differ from the
    state beside the file (or the file was changed). True when downloaded."""
    try:
        meta = meta or head(store, key)
    except FileNotFoundError as exc:
        url = object_url(store, key)
        raise DpoError(f"{url}: no such object", error_type=ErrorType.FILE_NOT_FOUND,
                       file=url) from exc
    sidecar = local_path.parent / f".{local_path.name}{SIDECAR_SUFFIX}"
    state = _load_state(sidecar)
    if _current(state.get(local_path.name), meta, local_path, key):
        return False
    entry = {**_download(store, key, local_path), "key": key}
    write_if_changed(sidecar, {local_path.name: entry}, point="mirror:object-state")
    return True


# -- shared --------------------------------------------------------------------------------
def _current(entry: dict[str, Any] | None, meta: ObjectMeta, local: Path,
             key: str | None = None) -> bool:
    """Whether the local copy is the object: same ETag and size as recorded (last_modified
    when the store gives no ETag), and the local file still what the mirror wrote."""
    if not entry or entry.get("pending") or entry.get("size") != meta["size"]:
        return False
    if key is not None and entry.get("key") != key:
        return False
    if meta["e_tag"] is not None:
        if entry.get("e_tag") != meta["e_tag"]:
            return False
    elif entry.get("last_modified") != meta["last_modified"].isoformat():
        return False
    try:
        found = Fingerprint.of(local)
    except OSError:
        return False
    return found == Fingerprint(int(entry["size"]), int(entry.get("mtime_ns", -1)))


def _download(store: ObjectStore, key: str, path: Path) -> dict[str, Any]:
    """GET `key` into `path` (temp file + rename), its mtime set to the object's
    last_modified; the state entry of what was written (the GET's own metadata: an object
    replaced after the listing is recorded as what was actually fetched)."""
    try:
        previous: Fingerprint | None = Fingerprint.of(path)
    except OSError:
        previous = None
    try:
        with atomic_file(path, point="mirror:download", sync_dir=False) as handle:
            # streamed: a large workbook is never held whole in memory
            meta, written = stream(store, key, handle.write)
    except FileNotFoundError as exc:  # deleted between listing and GET
        url = object_url(store, key)
        raise DpoError(f"{url}: the object disappeared while being mirrored",
                       error_type=ErrorType.FILE_NOT_FOUND, file=url) from exc
    except OSError as exc:  # this machine's disk (the store's failures are DpoErrors)
        raise storage_error("read", key, exc) from exc
    if written != meta["size"]:
        path.unlink(missing_ok=True)
        raise DpoError(f"{object_url(store, key)}: {written} bytes received, the object has "
                       f"{meta['size']}", error_type=ErrorType.FILE_READ_ERROR, file=key)
    mtime_ns = _ns(meta["last_modified"])
    if previous == Fingerprint(written, mtime_ns):
        # Replaced within the same second (S3 keeps whole seconds) by bytes of the same size:
        # the fingerprint dpo caches by would not change, and the old rows would be served.
        mtime_ns += 1
    try:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    except OSError as exc:
        raise DpoError(f"cannot set the time of {path}: {exc.strerror or exc}",
                       error_type=ErrorType.WRITE_ERROR, file=str(path)) from exc
    return {"e_tag": meta["e_tag"], "size": written,
            "last_modified": meta["last_modified"].isoformat(), "mtime_ns": mtime_ns}


def _ns(when: datetime) -> int:
    # Exact integer arithmetic: a float timestamp would lose the microseconds of 2026 dates.
    delta = when - datetime(1970, 1, 1, tzinfo=when.tzinfo)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def mirrored(local_dir: Path) -> dict[str, dict[str, Any]]:
    """What the folder mirror of `local_dir` made: {name: {e_tag, size, ...}} (collect.cluster
    names the version of each source a worker must read)."""
    return _load_state(local_dir / STATE)


def _load_state(path: Path) -> dict[str, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise DpoError(f"cannot read {path}: {exc.strerror or exc}",
                       error_type=ErrorType.FILE_READ_ERROR, file=str(path)) from exc
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise ValueError("not an object of objects")
    except ValueError as exc:
        # Not guessed around: the state is what says which local files the mirror may delete.
        raise IntegrityError(f"{path}: unreadable mirror state ({exc}); delete the folder's "
                             "mirrored files and this file to mirror everything again",
                             file=str(path)) from exc
    return data


def _save_state(path: Path, state: dict[str, dict[str, Any]]) -> None:
    write_if_changed(path, state, point="mirror:state")

"""The versioned store on object storage (dpo.store.objects.store): publish, versions, rollback,
retention, the create-only commit under a race, and repair after a real kill -9 between the
version puts and the manifest put. Each test runs on obstore's MemoryStore and on a real
S3-compatible server (moto's, on 127.0.0.1; a bucket per test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import obstore
import pyarrow as pa
import pytest

from dpo.config import Paths, load_settings, resolve_paths
from dpo.errors import IntegrityError, PipelineLocked
from dpo.store.objects.client import open_store
from dpo.store.objects.manifests import MANIFESTS, read_manifests
from dpo.store.objects.store import ANNOTATIONS, VERSIONS, ObjectVersionStore
from dpo.tables.contenthash import content_hash
from dpo.tables.parquet import parquet_bytes, read_verified
from dpo.urls import key_under


def table(n: int, tag: str = "x") -> pa.Table:
    return pa.table({"item": [f"{tag}{i}" for i in range(n)], "qty": list(range(n))})


def keys(store: Any, prefix: str) -> list[str]:
    return sorted(m["path"] for chunk in obstore.list(store, prefix=prefix) for m in chunk)


def stored_annotations(store: Any, key: str) -> dict[str, str]:
    found: dict[str, str] = json.loads(bytes(obstore.get(store, key).bytes()))
    return found


class Clock:
    """A minute per call, so that every publish gets its own stamp."""

    def __init__(self) -> None:
        self.minute = 0

    def __call__(self) -> datetime:
        self.minute += 1
        return datetime(2026, 1, 1, 8, 0).replace(minute=self.minute % 60)


@dataclass(frozen=True)
class Bucket:
    """An object store (`client`) as the store of a plant at `paths` (default_dir `url`)."""

    client: Any
    url: str
    paths: Paths

    def versions(self, clock: Any = None, keep_history: int = 30) -> ObjectVersionStore:
        return ObjectVersionStore(self.paths, self.client, keep_history=keep_history,
                                  clock=clock or Clock())

    def annotations(self) -> dict[str, str]:
        """The annotations object as a consumer reads it."""
        assert self.paths.annotations_key == ANNOTATIONS
        return stored_annotations(self.client, ANNOTATIONS)

    def key(self, url: str | None) -> str:
        """The object key of a version's URL."""
        found = key_under(url or "", self.url)
        assert found, url
        return found


def plant_paths(root: Path, url: str) -> Paths:
    """A plant whose annotations are at the store's root (`<url>/path_annotations.json`)."""
    return resolve_paths(load_settings(root_dir=str(root), default_dir=url,
                                       annotation_path=f"{url}/{ANNOTATIONS}"))


@pytest.fixture(params=["memory", "s3"])
def bucket(request: pytest.FixtureRequest, tmp_path: Path) -> Bucket:
    if request.param == "memory":  # the URL names the objects; the client is in memory
        url = "s3://in-memory/store"
        return Bucket(open_store("memory://"), url, plant_paths(tmp_path, url))
    url = request.getfixturevalue("s3_url")
    return Bucket(open_store(url), url, plant_paths(tmp_path, url))


def test_publish_versions_rollback_and_retention(bucket: Bucket) -> None:
    store = bucket.client
    versions = bucket.versions(keep_history=3)
    first = versions.publish({"a": (table(3), {}), "b": (table(2, "b"), {})})
    assert first.manifest == 1 and first.stamp == "20260101_0801"
    second = versions.publish({"a": (table(4), {})})
    assert versions.current_hash("a") == content_hash(table(4))
    assert versions.current_hash("b") == content_hash(table(2, "b"))  # carried over
    assert versions.annotations() == {"a": second.stored["a"], "b": first.stored["b"]}
    assert stored_annotations(store, ANNOTATIONS) == {"a": bucket.key(second.stored["a"]),
                                         "b": bucket.key(first.stored["b"])}
    listed = versions.list_versions("a")
    assert [(v.stamp, v.rows, v.current) for v in listed] == [
        (first.stamp, 3, False), (second.stamp, 4, True)]

    restored = versions.rollback({"a": first.stamp or ""})
    assert [v.url for v in restored] == [first.stored["a"]]
    current = versions.location("a")
    assert current == first.stored["a"]
    assert read_verified(versions.local_file(current)).equals(table(3))
    assert stored_annotations(store, ANNOTATIONS)["a"] == bucket.key(first.stored["a"])
    assert [m.kind for m in read_manifests(store)] == ["publish", "publish", "rollback"]

    # Retention: 3 commits kept. Two more publishes drop manifests 1 and 2; a's version 2 (only
    # in manifest 2) goes, a's version 1 stays: the rollback manifest 3 still references it.
    third = versions.publish({"a": (table(5), {})})
    assert third.deleted_keys == [f"{MANIFESTS}00000001.json"]  # its versions: still referenced
    last = versions.publish({"a": (table(6), {})})
    assert last.deleted_keys == [f"{MANIFESTS}00000002.json", bucket.key(second.stored["a"])]
    assert last.deleted == [second.written["a"]]  # its local copy went with it
    assert not second.written["a"].exists()
    assert [v.stamp for v in versions.list_versions("a")] == [
        first.stamp, third.stamp, last.stamp]
    assert keys(store, VERSIONS) == sorted(
        [bucket.key(first.stored["a"]), bucket.key(first.stored["b"]),
         *(bucket.key(v.url) for v in versions.list_versions("a") if v.stamp != first.stamp)])


def test_rollback_refuses_an_object_that_is_not_what_the_manifest_recorded(
        bucket: Bucket) -> None:
    store = bucket.client
    versions = bucket.versions()
    first = versions.publish({"a": (table(3), {})})
    versions.publish({"a": (table(4), {})})
    # Another table's bytes in its place: a valid dpo Parquet, but not the recorded content.
    forged, _ = parquet_bytes(table(3, "forged"), {}, "a")
    obstore.put(store, bucket.key(first.stored["a"]), forged)
    with pytest.raises(IntegrityError, match="does not match its recorded hash"):
        versions.rollback({"a": first.stamp or ""})
    assert bucket.versions().current_hash("a") == content_hash(table(4))  # nothing committed
    assert len(read_manifests(store)) == 2
    assert versions.holds() == {}  # nor held


def test_two_writers_racing_for_the_same_manifest_exactly_one_commits(bucket: Bucket) -> None:
    store = bucket.client
    bucket.versions().publish({"a": (table(1), {})})
    both_read = threading.Barrier(2, timeout=30)

    def clock() -> datetime:  # called after a writer has read the newest manifest
        both_read.wait()
        return datetime(2026, 1, 1, 9, 0)

    outcomes: dict[str, object] = {}

    def write(name: str, rows: int) -> None:
        try:
            outcomes[name] = bucket.versions(clock).publish(
                {"a": (table(rows, name), {}), name: (table(rows, name), {})})
        except PipelineLocked as exc:
            outcomes[name] = exc

    threads = [threading.Thread(target=write, args=(n, r)) for n, r in (("w1", 5), ("w2", 7))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lost = [n for n, o in outcomes.items() if isinstance(o, PipelineLocked)]
    won = [n for n in outcomes if n not in lost]
    assert len(lost) == 1 and len(won) == 1, outcomes
    assert "another writer committed _dpo/manifests/00000002.json first" in str(outcomes[lost[0]])
    head = read_manifests(store)[-1]
    assert head.number == 2 and set(head.tables) == {"a", won[0]}
    # The loser removed its own objects; the winner's are all referenced.
    referenced = {e.key for m in read_manifests(store) for e in m.tables.values()}
    assert set(keys(store, VERSIONS)) == referenced


CRASHING_PUBLISH = """
import sys
import pyarrow as pa
from dpo.config import load_settings, resolve_paths
from dpo.store.objects.client import open_store
from dpo.store.objects.store import ObjectVersionStore
paths = resolve_paths(load_settings(root_dir=sys.argv[2], default_dir=sys.argv[1],
                                   annotation_path=sys.argv[1] + "/path_annotations.json"))
store = ObjectVersionStore(paths, open_store(sys.argv[1]))
store.publish({name: (pa.table({"v": list(range(n))}), {}) for name, n in (("a", 8), ("b", 9))})
"""


@pytest.mark.parametrize("point", ["objstore:publish:write:b", "objstore:publish:manifest"])
def test_repair_after_a_kill_at_each_commit_step(s3_url: str, point: str,
                                                 tmp_path: Path) -> None:
    bucket = Bucket(open_store(s3_url), s3_url, plant_paths(tmp_path, s3_url))
    store = bucket.client
    versions = bucket.versions()
    before = versions.publish({"a": (table(3), {}), "b": (table(2), {})})
    before_keys = {t: bucket.key(u) for t, u in before.stored.items()}
    done = subprocess.run([sys.executable, "-c", CRASHING_PUBLISH, s3_url, str(tmp_path)],
                          timeout=120,
                          env={**os.environ, "DPO_CRASH_AT": point}, capture_output=True)
    assert done.returncode == -9, done.stderr.decode()[-2000:]
    written = sorted(set(keys(store, VERSIONS)) - set(before_keys.values()))
    assert len(written) == 2  # both version objects of the killed run landed

    actions = versions.repair()
    if point == "objstore:publish:manifest":  # committed: it stands; annotations caught up
        assert actions == [f"rewrote {ANNOTATIONS} from {MANIFESTS}00000002.json"]
        assert stored_annotations(store, ANNOTATIONS) == {
            t: bucket.key(u) for t, u in versions.annotations().items()}
        assert sorted(bucket.key(u) for u in versions.annotations().values()) == written
        b_now = versions.local_file(versions.location("b") or "")
        assert read_verified(b_now).num_rows == 9
    else:  # killed before its commit: nothing of it is published, its objects are deleted,
        # after a fence manifest that a paused writer of them could no longer commit over
        assert actions == [
            "committed manifest 2 (a fence: the same tables) before deleting what no manifest "
            "references"] + [f"deleted {key}: no kept manifest references it" for key in written]
        head = versions.head()
        assert head is not None and head.kind == "repair"
        assert versions.annotations() == before.stored
        assert stored_annotations(store, ANNOTATIONS) == before_keys
        assert keys(store, VERSIONS) == sorted(before_keys.values())
    assert versions.repair() == []  # idempotent

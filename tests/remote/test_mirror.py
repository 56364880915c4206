"""Remote inputs mirrored into a local work folder (dpo.inputs.mirror): only what changed is
downloaded, a no-op mirror touches nothing (dpo's own fingerprints stay), copies of deleted
objects go, files the mirror did not make stay, names that would escape are refused. Each
test runs on obstore's MemoryStore and on a real S3-compatible server (moto's, on 127.0.0.1;
a bucket per test)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import obstore
import pytest

from dpo.errors import ConfigError, DpoError, ErrorType, IntegrityError
from dpo.fsio import Fingerprint
from dpo.inputs.mirror import STATE, Mirrored, mirror_object, mirror_prefix
from dpo.store.objects.client import open_store
from dpo.urls import is_url, split_url

PREFIX = "exports/daily"


def workbook(tmp_path: Path, tag: str, rows: int = 5) -> bytes:
    """A real .xlsx workbook's bytes (written by dpo's own fixture writer)."""
    from dpo.demo.plant import write_xlsx

    path = tmp_path / "src" / f"{tag}.xlsx"
    path.parent.mkdir(exist_ok=True)
    write_xlsx(path, "Sheet1", ["itemCode", "quantity"], [[f"{tag}-{i}", i] for i in range(rows)])
    return path.read_bytes()


def put(store: Any, name: str, data: bytes, prefix: str = PREFIX) -> str:
    key = f"{prefix}/{name}"
    obstore.put(store, key, data)
    return key


def ns(when: datetime) -> int:
    return int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1000


def snapshot(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Every file's (inode, size, mtime_ns): what a no-op must leave exactly as it was."""
    return {p.name: (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.iterdir())}


@pytest.fixture(params=["memory", "s3"])
def store(request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        return open_store("memory://")
    return open_store(request.getfixturevalue("s3_url"))


def test_first_mirror_downloads_all_and_a_second_downloads_nothing(store: Any,
                                                                   tmp_path: Path) -> None:
    keys = sorted(put(store, f"purchaseOrder_1811{d:02d}.xlsx", workbook(tmp_path, f"d{d}"))
                  for d in (1, 2, 3))
    put(store, "older/purchaseOrder_181001.xlsx", b"in a sub-folder: not this folder's")
    local = tmp_path / "mirror"

    first = mirror_prefix(store, PREFIX, local)

    assert first == Mirrored(tuple(keys), (), 0)
    for key in keys:
        name = key.rsplit("/", 1)[1]
        assert (local / name).read_bytes() == bytes(obstore.get(store, key).bytes())
    assert sorted(p.name for p in local.iterdir()) == sorted(
        [STATE] + [k.rsplit("/", 1)[1] for k in keys])
    before = snapshot(local)
    fingerprints = {p.name: Fingerprint.of(p) for p in local.iterdir()}

    second = mirror_prefix(store, PREFIX, local)

    assert second.downloaded == ()
    assert second.removed == ()
    assert second.unchanged == 3
    assert snapshot(local) == before  # no file rewritten, not even the state
    assert {p.name: Fingerprint.of(p) for p in local.iterdir()} == fingerprints


def test_an_overwritten_object_is_the_only_one_downloaded_again(store: Any,
                                                                tmp_path: Path) -> None:
    put(store, "a.xlsx", workbook(tmp_path, "a"))
    key_b = put(store, "b.xlsx", workbook(tmp_path, "b"))
    local = tmp_path / "mirror"
    mirror_prefix(store, PREFIX, local)
    a_before = snapshot(local)["a.xlsx"]
    b_fingerprint = Fingerprint.of(local / "b.xlsx")
    new_b = workbook(tmp_path, "b2", rows=9)
    put(store, "b.xlsx", new_b)

    again = mirror_prefix(store, PREFIX, local)

    assert again == Mirrored((key_b,), (), 1)
    assert (local / "b.xlsx").read_bytes() == new_b
    assert snapshot(local)["a.xlsx"] == a_before
    assert Fingerprint.of(local / "b.xlsx") != b_fingerprint


def test_same_size_replacement_still_changes_dpos_fingerprint(store: Any,
                                                              tmp_path: Path) -> None:
    """S3 keeps whole seconds: bytes replaced within the second by others of the same size
    would keep (size, mtime) and dpo's cache would serve the old rows."""
    key = put(store, "a.xlsx", b"A" * 100)
    local = tmp_path / "mirror"
    mirror_prefix(store, PREFIX, local)
    before = Fingerprint.of(local / "a.xlsx")
    put(store, "a.xlsx", b"B" * 100)

    assert mirror_prefix(store, PREFIX, local).downloaded == (key,)
    assert (local / "a.xlsx").read_bytes() == b"B" * 100
    assert Fingerprint.of(local / "a.xlsx") != before
    # ...and the next no-op leaves it as it is
    after = snapshot(local)
    assert mirror_prefix(store, PREFIX, local).downloaded == ()
    assert snapshot(local) == after


def test_a_deleted_object_removes_its_local_copy_only(store: Any, tmp_path: Path) -> None:
    put(store, "a.xlsx", workbook(tmp_path, "a"))
    key_b = put(store, "b.xlsx", workbook(tmp_path, "b"))
    local = tmp_path / "mirror"
    local.mkdir()
    mine = local / "notes.xlsx"  # a file the mirror did not make
    mine.write_bytes(b"the operator's own file")
    mirror_prefix(store, PREFIX, local)
    obstore.delete(store, key_b)

    gone = mirror_prefix(store, PREFIX, local)

    assert gone == Mirrored((), (key_b,), 1)
    assert not (local / "b.xlsx").exists()
    assert (local / "a.xlsx").exists()
    assert mine.read_bytes() == b"the operator's own file"
    assert "b.xlsx" not in json.loads((local / STATE).read_text())
    # every object gone: the mirror's files go, the operator's stays
    obstore.delete(store, f"{PREFIX}/a.xlsx")
    assert mirror_prefix(store, PREFIX, local).removed == (f"{PREFIX}/a.xlsx",)
    assert sorted(p.name for p in local.iterdir()) == [STATE, "notes.xlsx"]


def test_a_local_copy_changed_by_hand_is_downloaded_again(store: Any, tmp_path: Path) -> None:
    key = put(store, "a.xlsx", workbook(tmp_path, "a"))
    local = tmp_path / "mirror"
    mirror_prefix(store, PREFIX, local)
    (local / "a.xlsx").write_bytes(b"edited")

    assert mirror_prefix(store, PREFIX, local).downloaded == (key,)
    assert (local / "a.xlsx").read_bytes() == bytes(obstore.get(store, key).bytes())
    (local / "a.xlsx").unlink()
    assert mirror_prefix(store, PREFIX, local).downloaded == (key,)
    assert (local / "a.xlsx").exists()


_MIRROR_IN_A_CHILD = """
import sys
from pathlib import Path
from dpo.inputs.mirror import mirror_prefix
from dpo.store.objects.client import open_store
mirror_prefix(open_store(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
"""


def test_a_copy_left_by_a_mirror_killed_mid_download_goes_when_its_object_does(
        s3_url: str, tmp_path: Path) -> None:
    """kill -9 after the first download's rename, before the state records it: the state
    written before the downloads lists it (pending), so once its object is deleted the next
    mirror deletes the copy instead of leaving a stale source for dpo to read."""
    store = open_store(s3_url)
    put(store, "b.xlsx", workbook(tmp_path, "b"))
    local = tmp_path / "mirror"
    mirror_prefix(store, PREFIX, local)  # b is mirrored; a is then the one download (in order)
    key_a = put(store, "a.xlsx", workbook(tmp_path, "a"))
    killed = subprocess.run([sys.executable, "-c", _MIRROR_IN_A_CHILD, s3_url, PREFIX, str(local)],
                            env={**os.environ, "DPO_CRASH_AT": "mirror:download:renamed#1"},
                            capture_output=True, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    assert (local / "a.xlsx").exists()
    obstore.delete(store, key_a)

    done = mirror_prefix(store, PREFIX, local)

    assert done == Mirrored((), (key_a,), 1)
    assert sorted(p.name for p in local.iterdir()) == [STATE, "b.xlsx"]


def test_upper_case_names_are_kept_and_mtime_is_the_objects_last_modified(
        store: Any, tmp_path: Path) -> None:
    key = put(store, "monthlyReports_201811.XLSB", b"\x00binary workbook bytes")
    local = tmp_path / "mirror"
    mirror_prefix(store, PREFIX, local)

    names = [p.name for p in local.iterdir() if p.name != STATE]
    assert names == ["monthlyReports_201811.XLSB"]
    assert (local / names[0]).stat().st_mtime_ns == ns(obstore.head(store, key)["last_modified"])


def test_an_object_named_like_the_mirrors_state_is_refused(store: Any, tmp_path: Path) -> None:
    put(store, "a.xlsx", b"a")
    put(store, STATE, b"{}")
    local = tmp_path / "mirror"

    with pytest.raises(ConfigError) as caught:
        mirror_prefix(store, PREFIX, local)

    assert f"{PREFIX}/{STATE}" in str(caught.value)
    assert not local.exists() or not any(local.iterdir())  # refused before any download


@pytest.mark.parametrize("name", ["..", "..\\evil.xlsb", "a\\..\\..\\b.xlsx"])
def test_a_key_that_would_escape_the_folder_is_refused(s3_url: str, tmp_path: Path,
                                                       name: str) -> None:
    """obstore cannot write such keys; another S3 client can (boto3 here)."""
    import boto3

    bucket = s3_url.removeprefix("s3://").split("/")[0]
    boto3.client("s3").put_object(Bucket=bucket, Key=f"{PREFIX}/{name}", Body=b"x")
    boto3.client("s3").put_object(Bucket=bucket, Key=f"{PREFIX}/fine.xlsx", Body=b"y")
    store = open_store(f"s3://{bucket}")
    local = tmp_path / "work" / "mirror"

    with pytest.raises(ConfigError) as caught:
        mirror_prefix(store, PREFIX, local)

    assert f"{PREFIX}/{name[:2]}" in str(caught.value)  # the key named (as far as obstore parsed it)
    assert caught.value.file is not None and ".." in caught.value.file
    assert not local.exists() or not any(local.iterdir())
    assert list((tmp_path / "work").rglob("*")) in ([], [local])


def test_mirror_object_heads_and_downloads_only_a_changed_object(store: Any,
                                                                 tmp_path: Path) -> None:
    key = put(store, "databaseSchemas.json", b'{"dynamicDB": {}}', prefix="config")
    target = tmp_path / "work" / "databaseSchemas.json"

    assert mirror_object(store, key, target) is True
    assert target.read_bytes() == b'{"dynamicDB": {}}'
    assert target.stat().st_mtime_ns == ns(obstore.head(store, key)["last_modified"])
    before = snapshot(target.parent)

    assert mirror_object(store, key, target) is False
    assert snapshot(target.parent) == before

    put(store, "databaseSchemas.json", b'{"dynamicDB": {"x": 1}}', prefix="config")
    assert mirror_object(store, key, target) is True
    assert target.read_bytes() == b'{"dynamicDB": {"x": 1}}'


def test_mirror_object_of_a_missing_object_names_its_url(store: Any, tmp_path: Path) -> None:
    with pytest.raises(DpoError) as caught:
        mirror_object(store, "config/nope.json", tmp_path / "nope.json")

    assert caught.value.error_type is ErrorType.FILE_NOT_FOUND
    assert "config/nope.json" in str(caught.value)
    assert str(caught.value).split(":")[0] in ("s3", "memory")
    assert not (tmp_path / "nope.json").exists()


def test_a_store_failure_names_the_key_and_never_the_credentials(
        s3_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = "dpo-SECRET-never-shown-4711"
    for name, value in {"AWS_ACCESS_KEY_ID": "dpo-key", "AWS_SECRET_ACCESS_KEY": secret,
                        "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": s3_server}.items():
        monkeypatch.setenv(name, value)
    store = open_store("s3://no-such-bucket-dpo")

    with pytest.raises(DpoError) as caught:
        mirror_prefix(store, PREFIX, tmp_path / "mirror")

    assert PREFIX in str(caught.value)
    assert secret not in str(caught.value) and secret not in repr(caught.value.__dict__)
    assert not (tmp_path / "mirror").exists()


@pytest.mark.parametrize(("value", "expected"), [
    ("s3://bucket/prefix", True), ("S3://Bucket/x", True), ("gs://b", True), ("az://c/p", True),
    ("abfs://c@acct.dfs.core.windows.net/p", True), ("ABFSS://c/p", True), ("memory://", True),
    ("C:\\x", False), ("c:/exports", False), ("/srv/exports", False), ("exports/s3://x", False),
    ("http://host/x", False), ("file:///x", False), ("", False),
])
def test_is_url(value: str, expected: bool) -> None:
    assert is_url(value) is expected


@pytest.mark.parametrize(("url", "expected"), [
    ("s3://bucket/a/b/", ("s3://bucket", "a/b")),
    ("s3://bucket", ("s3://bucket", "")),
    ("S3://bucket//", ("s3://bucket", "")),
    ("gs://b/exports", ("gs://b", "exports")),
    ("az://container/x/y.json", ("az://container", "x/y.json")),
    ("memory://", ("memory://", "")),
    ("memory:///a/b", ("memory://", "a/b")),
])
def test_split_url(url: str, expected: tuple[str, str]) -> None:
    assert split_url(url) == expected


@pytest.mark.parametrize("url", ["s3:///prefix", "s3://b/a/../c", "s3://b/a//c", "/local/path",
                                 "C:\\x"])
def test_split_url_refuses(url: str) -> None:
    with pytest.raises(ConfigError):
        split_url(url)


def test_an_unreadable_state_stops_the_mirror_instead_of_guessing(store: Any,
                                                                  tmp_path: Path) -> None:
    put(store, "a.xlsx", b"a")
    local = tmp_path / "mirror"
    mirror_prefix(store, PREFIX, local)
    (local / STATE).write_text("{not json")

    with pytest.raises(IntegrityError) as caught:
        mirror_prefix(store, PREFIX, local)

    assert str(local / STATE) in str(caught.value)
    assert (local / "a.xlsx").read_bytes() == b"a"


def test_a_folder_mirror_and_a_file_mirror_share_a_folder(store: Any, tmp_path: Path) -> None:
    """The schema file mirrored into the sources' folder: its sidecar state is not the
    folder's, so the folder mirror neither takes it for a deleted object's copy nor lists it."""
    key_a = put(store, "a.xlsx", b"a")
    schema = put(store, "databaseSchemas.json", b"{}", prefix="config")
    local = tmp_path / "mirror"
    mirror_prefix(store, PREFIX, local)
    assert mirror_object(store, schema, local / "databaseSchemas.json") is True
    obstore.delete(store, key_a)

    assert mirror_prefix(store, PREFIX, local) == Mirrored((), (key_a,), 0)
    assert (local / "databaseSchemas.json").read_bytes() == b"{}"
    assert mirror_object(store, schema, local / "databaseSchemas.json") is False


def test_list_tree_gives_each_folders_objects_from_one_listing(store: Any,
                                                               tmp_path: Path) -> None:
    from dpo.inputs.mirror import list_tree

    put(store, "top.xlsx", b"not in a folder")
    put(store, "a.xlsb", b"1", prefix=f"{PREFIX}/monthly")
    put(store, "b.xlsb", b"2", prefix=f"{PREFIX}/monthly")
    put(store, "po.xlsx", b"3", prefix=f"{PREFIX}/orders")
    put(store, "deep.xlsx", b"4", prefix=f"{PREFIX}/orders/old")

    tree = list_tree(store, PREFIX)

    assert {f: sorted(names) for f, names in tree.items()} == {
        "monthly": ["a.xlsb", "b.xlsb"], "orders": ["po.xlsx"]}
    done = mirror_prefix(store, f"{PREFIX}/monthly", tmp_path / "monthly", tree["monthly"])
    assert sorted(done.downloaded) == [f"{PREFIX}/monthly/a.xlsb", f"{PREFIX}/monthly/b.xlsb"]
    assert (tmp_path / "monthly" / "b.xlsb").read_bytes() == b"2"

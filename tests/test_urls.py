"""Path settings as object-storage URLs (dpo.urls, config.resolve_paths): where each one's
local mirror is, and the annotation_path rules of a remote store (docs/storage.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpo.config import load_settings, resolve_paths
from dpo.errors import ConfigError
from dpo.urls import key_under, local_mirror, normal_url


def paths_of(tmp_path: Path, **settings: str):  # -> dpo.config.Paths
    return resolve_paths(load_settings(root_dir=str(tmp_path), **settings))


def test_url_settings_keep_their_url_and_work_in_a_mirror_under_the_root(tmp_path: Path) -> None:
    paths = paths_of(tmp_path, default_dir="S3://plant-data/hamburg/",
                     dynamic_db_source_dir="s3://exports/hamburg/dynamicDatabase",
                     databaseSchemas_path="s3://exports/hamburg/databaseSchemas.json")
    root = tmp_path.resolve()
    assert paths.store_url == "s3://plant-data/hamburg"
    assert paths.default_dir == root / ".dpo-work/s3/plant-data/hamburg"
    assert paths.source_dir == root / ".dpo-work/s3/exports/hamburg/dynamicDatabase"
    assert paths.schema_path == root / ".dpo-work/s3/exports/hamburg/databaseSchemas.json"
    assert paths.annotations_key == "DataLoaderAgent/newest/path_annotations.json"
    version = paths.default_dir / "DataLoaderAgent/versions/t/20261128_0600.ab.parquet"
    assert paths.location(version) == (
        "s3://plant-data/hamburg/DataLoaderAgent/versions/t/20261128_0600.ab.parquet")
    # a local working file of a remote plant keeps its local name: it is not on the store
    assert paths.location(paths.phase1_output("t")).startswith(".dpo-work/")


def test_annotation_path_of_a_remote_store_must_be_inside_it(tmp_path: Path) -> None:
    inside = paths_of(tmp_path, default_dir="s3://b/plant",
                      annotation_path="s3://b/plant/consumers/pointer.json")
    assert inside.annotations_key == "consumers/pointer.json"
    with pytest.raises(ConfigError, match="inside default_dir"):
        paths_of(tmp_path, default_dir="s3://b/plant", annotation_path="s3://other/pointer.json")
    with pytest.raises(ConfigError, match="inside default_dir"):
        paths_of(tmp_path, default_dir="s3://b/plant", annotation_path="pointer.json")
    with pytest.raises(ConfigError, match="default_dir is not"):
        paths_of(tmp_path, annotation_path="s3://b/plant/pointer.json")


def test_a_key_with_dot_dot_never_names_a_folder_outside_the_mirror(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        local_mirror(tmp_path, "s3://b/plant/../../etc")
    with pytest.raises(ConfigError):
        paths_of(tmp_path, default_dir="s3://b/../x")
    assert local_mirror(tmp_path, "memory://a/b") == tmp_path.resolve() / ".dpo-work/memory/_/a/b"


def test_normal_url_and_key_under() -> None:
    assert normal_url("GS://bucket/a/b/") == "gs://bucket/a/b"
    assert normal_url("az://container") == "az://container"
    assert key_under("s3://b/plant/x/y.json", "s3://b/plant") == "x/y.json"
    assert key_under("s3://b/plantation/y.json", "s3://b/plant") is None
    assert key_under("s3://c/plant/y.json", "s3://b/plant") is None

"""Inputs on object storage (docs/storage.md): the sources folder, the schema and the master
files, mirrored into their local copies (dpo.urls.local_mirror) before a run reads them.

Only what changed is downloaded (listing and ETags: dpo.inputs.mirror), and a downloaded file
keeps the object's last-modified time, so the local fingerprints the incremental run and the
no-change run compare stay as they were when nothing changed. Nothing here runs for a plant
whose paths are all local: obstore is imported only when a setting is a URL.
"""

from __future__ import annotations

from loguru import logger

from dpo.config import Paths, Settings
from dpo.schema import Schema, TableSpec
from dpo.store.objects.client import follow_settings, open_bucket


def mirror_schema(paths: Paths, settings: Settings) -> None:
    """The schema, when it is a URL, brought up to date locally (it names everything else)."""
    if paths.schema_url is None:
        return
    from dpo.inputs.mirror import mirror_object

    follow_settings(settings)
    store, key = open_bucket(paths.schema_url, settings.storage_options)
    if mirror_object(store, key, paths.schema_path):
        logger.info("⬇️ schema {} downloaded (changed)", paths.schema_url)


def mirror_inputs(paths: Paths, settings: Settings) -> None:
    """Every input on object storage brought up to date locally (`dpo validate`; a run does
    the two steps itself, around its own reading of the schema)."""
    if paths.schema_url is None and paths.source_url is None and not paths.schema_path.is_file():
        return  # no schema to name master files: validate_sources says so
    mirror_schema(paths, settings)
    from dpo.schema import load_schema

    mirror_sources(paths, load_schema(paths.schema_path, paths.root), settings)


def mirror_sources(paths: Paths, schema: Schema, settings: Settings) -> None:
    """Every dynamic table's folder under a URL `dynamic_db_source_dir` (one listing for all),
    and every master file whose schema `path` is a URL, brought up to date locally."""
    remote = [spec for spec in schema if spec.url is not None]
    if paths.source_url is None and not remote:
        return
    from dpo.inputs.mirror import list_tree, mirror_prefix

    follow_settings(settings)
    if paths.source_url is not None:
        store, prefix = open_bucket(paths.source_url, settings.storage_options)
        tree = list_tree(store, prefix)  # every table's folder from one listing
        for spec in schema.dynamic:
            folder = spec.path.name
            done = mirror_prefix(store, f"{prefix}/{folder}".strip("/"),
                                 paths.source_dir / folder, tree.get(folder, {}))
            if done.downloaded or done.removed:
                logger.info("⬇️ {}/{}: {} downloaded, {} removed, {} unchanged",
                            paths.source_url, folder, len(done.downloaded), len(done.removed),
                            done.unchanged)
    _mirror_master_files(remote, settings.storage_options)


def _mirror_master_files(remote: list[TableSpec], options: dict[str, str]) -> None:
    """Master files, by folder: one listing for a folder of several (a HEAD for a lone one).
    A file that cannot be fetched is not left behind in an old copy: its table then fails in
    Phase 2 as a missing file does, naming it."""
    if not remote:
        return
    from dpo.errors import DpoError
    from dpo.inputs.mirror import list_folder, mirror_object

    folders: dict[str, list[TableSpec]] = {}
    for spec in remote:
        assert spec.url is not None
        folders.setdefault(spec.url.rpartition("/")[0], []).append(spec)
    for folder_url, specs in folders.items():
        store, folder = open_bucket(folder_url, options)
        try:
            listed = list_folder(store, folder) if len(specs) > 1 else {}
        except DpoError as exc:
            logger.error("❌ {}: {}", folder_url, exc.message)
            listed = {}
        for spec in specs:
            key = open_bucket(str(spec.url), options)[1]
            try:
                if mirror_object(store, key, spec.path, listed.get(key.rpartition("/")[2])):
                    logger.info("⬇️ {} downloaded (changed)", spec.url)
            except DpoError as exc:
                logger.error("❌ {}: {} (the table fails: no old copy is used)", spec.url,
                             exc.message)
                spec.path.unlink(missing_ok=True)

"""Reading a published table: `dpo.open_table`, the consumer's one way, the same call for a
store on disk and on object storage (docs/behaviour.md, section 11).

The plant's settings are resolved as a run resolves them (arguments > DPO_* environment >
dpo.toml > defaults); the version comes from the store through its interface
(dpo.store.api.Store: the file on disk, or the object downloaded into the plant's working
folder as the commands do), and its content is proven against the hash recorded when it was
written before anything is given back. A wrong table, version, column or filter is a
ConfigError naming what there is; a version whose content does not match its hash is an
IntegrityError naming the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dpo.errors import ConfigError, DpoError, IntegrityError

if TYPE_CHECKING:
    import pyarrow as pa

    from dpo.config import Settings
    from dpo.store.api import Store, VersionInfo


def open_table(table: str, root: str | Path | None = None, version: str | None = None, *,
               columns: Sequence[str] | None = None, filters: Any = None,
               config_file: str | Path | None = None, **settings: Any) -> pa.Table:
    """The current version of `table` (or the version named by its stamp, as `dpo versions`
    lists it), hash-verified, as a pyarrow.Table.

    `root` is the plant folder (default: the current directory); `settings` are dpo's settings
    (`default_dir="s3://bucket/plant"`, `storage_options={...}`...), over the environment and
    `<root>/dpo.toml` (or `config_file`). `columns` keeps those columns, in that order;
    `filters` keeps the rows they match, in pyarrow.parquet's form (`[("moldNo", "=", "M1")]`,
    a list of such lists for OR, or a pyarrow.compute expression). `.to_pandas()` of the
    result has the schema's dtypes.
    """
    store, _ = open_plant_store(root, config_file, **settings)
    chosen = pick_version(store, table, version)
    return select(read_version(store, chosen), table, columns, filters)


def open_plant_store(root: str | Path | None, config_file: str | Path | None = None,
                     **settings: Any) -> tuple[Store, Settings]:
    """The store of the plant at `root`, to read, and its settings; ConfigError when the
    folder holds no plant (nothing is created there)."""
    from dpo.config import load_settings, plant_problem, resolve_paths
    from dpo.store.session import open_store_for

    given = {k: v for k, v in settings.items() if v is not None}
    loaded = load_settings(config_file, root_dir=str(root) if root is not None else None,
                           **given)
    paths = resolve_paths(loaded)
    problem = plant_problem(paths)
    if problem:
        raise ConfigError(problem)
    return open_store_for(paths, loaded), loaded


def known_table(store: Store, name: str) -> None:
    """ConfigError naming the tables (and the closest one) when `name` is not one of them: the
    schema's tables and the published ones."""
    import difflib

    from dpo.schema import load_schema

    try:
        names = {spec.name for spec in load_schema(store.paths.schema_path, store.paths.root)}
    except DpoError:
        names = set()  # no readable schema: the published tables are all there is to name
    names |= set(store.annotations())
    if name in names:
        return
    close = difflib.get_close_matches(name, sorted(names), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ConfigError(f"unknown table '{name}'{hint}; tables: {', '.join(sorted(names)) or 'none'}")


def pick_version(store: Store, table: str, version: str | None) -> VersionInfo:
    """The current version of `table`, or the one whose stamp is `version`."""
    known_table(store, table)
    versions = store.list_versions(table)
    found = next((v for v in versions if (v.stamp == version if version else v.current)), None)
    if found is not None:
        return found
    if version is None:
        raise ConfigError(f"no version of {table} is published yet (no run has published it)")
    listed = ", ".join(v.stamp for v in versions) or "none yet"
    raise ConfigError(f"no version {version} of {table}; versions: {listed}")


def read_version(store: Store, version: VersionInfo) -> pa.Table:
    """The version's data, its content proven against the hash recorded when it was written
    (and, on object storage, the hash its manifest recorded)."""
    from dpo.tables.meta import META_HASH
    from dpo.tables.parquet import read_verified

    try:
        path = store.local_file(version.stored)
        data = read_verified(path)
    except IntegrityError as exc:
        raise IntegrityError(
            f"version {version.stamp} of {version.table} is damaged: {exc.message}; read "
            f"another version (dpo versions {version.table}) or roll back to one",
            file=exc.file, table=version.table) from exc
    recorded = (data.schema.metadata or {}).get(META_HASH)
    if version.content_hash and recorded and recorded.decode() != version.content_hash:
        raise IntegrityError(f"version {version.stamp} of {version.table}: {path} records hash "
                             f"{recorded.decode()[:12]}, the store {version.content_hash[:12]}",
                             file=str(path), table=version.table)
    return data


def select(data: pa.Table, table: str, columns: Sequence[str] | None, filters: Any
           ) -> pa.Table:
    """The rows `filters` match (any column may be filtered on), then `columns`."""
    names = data.column_names
    if isinstance(columns, str):
        columns = [columns]
    missing = [c for c in columns or () if c not in names]
    if missing:
        raise ConfigError(f"{table} has no column {', '.join(missing)}; columns: "
                          f"{', '.join(names)}")
    if filters is not None:
        data = _filtered(data, table, filters)
    return data if columns is None else data.select(list(columns))


def _filtered(data: pa.Table, table: str, filters: Any) -> pa.Table:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        expression = filters if isinstance(filters, pc.Expression) else \
            pq.filters_to_expression(filters)
        return data.filter(expression)
    except (pa.ArrowException, ValueError, TypeError, KeyError) as exc:
        said = (str(exc).splitlines() or [type(exc).__name__])[0]  # pyarrow adds the schema
        raise ConfigError(f"filters {filters!r} on {table}: {said}; columns: "
                          f"{', '.join(data.column_names)}") from exc

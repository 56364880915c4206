"""Settings from arguments, environment (DPO_*), a TOML file and defaults; the only reader of config.

Precedence: explicit argument > environment > config file > default. Every path resolves
against one root directory (the working directory unless `root_dir` is given) and must stay
inside it.

Plain dataclasses and stdlib parsing, not pydantic-settings: importing that costs more than a
whole no-change run is allowed to take (see BENCHMARKS.md).
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from loguru import logger

from dpo.errors import CellError, ConfigError
from dpo.schema import resolve_within
from dpo.urls import is_url, key_under, local_mirror, normal_url

DEFAULTS = {
    "dynamic_db_source_dir": "database/dynamicDatabase",
    "databaseSchemas_path": "database/databaseSchemas.json",
    "annotation_path": "agents/shared_db/DataLoaderAgent/newest/path_annotations.json",
    "default_dir": "agents/shared_db",
}
POLICIES = ("fail", "quarantine")
EXECUTORS = ("auto", "threads", "processes", "dask")  # collect.executors
ERROR_CELL_POLICIES = ("null", "fail", "quarantine")


@dataclass(frozen=True)
class Settings:
    """Everything a run can be told. Field names follow the seed's constructor arguments."""

    root_dir: str | None = None
    dynamic_db_source_dir: str = DEFAULTS["dynamic_db_source_dir"]
    databaseSchemas_path: str = DEFAULTS["databaseSchemas_path"]
    annotation_path: str = DEFAULTS["annotation_path"]
    default_dir: str = DEFAULTS["default_dir"]
    max_retries: int = 3
    on_bad_rows: str = "fail"  # or "quarantine"
    on_error_cells: str = "null"  # Excel error / uncalculated formula: null | fail | quarantine
    drop_total_rows: bool = False  # totals rows are kept, with a warning, unless this is set
    keep_history: int = 30  # historical versions kept per table
    workers: int = 0  # reader threads; 0: size to the machine (orchestrator.default_workers)
    notify_urls: tuple[str, ...] = field(default_factory=tuple)
    recipient: str = "plant-data-team"
    lock_timeout: float = 0.0  # seconds to wait for another run's lock
    incremental: bool = True  # reuse the per-file cache of unchanged sources
    prometheus_path: str | None = None
    plant_name: str | None = None  # names the plant in notifications (default: the root folder)
    # `dpo serve`: bearer token of POST /run (no token: no such endpoint). Never printed.
    serve_token: str | None = field(default=None, repr=False)
    # where Phase 1's batch task runs: auto (threads or processes, collect.early) | threads |
    # processes | dask
    executor: str = "auto"
    scheduler: str | None = None  # dask: tcp://HOST:PORT (else DASK_SCHEDULER_ADDRESS, else local)
    # Object storage (docs/storage.md): obstore's options for every s3:// gs:// az:// path, from
    # `[dpo.storage_options]`; they override the standard environment. Never printed.
    storage_options: dict[str, str] = field(default_factory=dict, repr=False)
    lease_ttl: float = 60.0  # seconds the store lease lasts unless renewed (a remote store)
    # Run only these schema tables (`dpo run --tables a,b`); empty: every table. The others
    # keep their published versions (docs/behaviour.md, section 6).
    tables: tuple[str, ...] = field(default_factory=tuple)
    storage_timeout: float = 30.0  # seconds one object-storage request may take
    storage_retry_budget: float = 60.0  # seconds one object-storage operation keeps retrying
    # The data checks file (dpo.checks); default: dataChecks.toml beside the schema file.
    checks_path: str | None = None

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.max_retries <= 20:
            problems.append(f"max_retries must be 0..20, got {self.max_retries}")
        if self.on_bad_rows not in POLICIES:
            problems.append(f"on_bad_rows must be one of {POLICIES}, got {self.on_bad_rows!r}")
        if self.on_error_cells not in ERROR_CELL_POLICIES:
            problems.append(f"on_error_cells must be one of {ERROR_CELL_POLICIES}, "
                            f"got {self.on_error_cells!r}")
        if self.executor not in EXECUTORS:
            problems.append(f"executor must be one of {EXECUTORS}, got {self.executor!r}")
        if self.keep_history < 1:
            problems.append(f"keep_history must be >= 1, got {self.keep_history}")
        if self.lease_ttl < 5:
            problems.append(f"lease_ttl must be >= 5 seconds, got {self.lease_ttl}")
        if self.storage_timeout <= 0 or self.storage_retry_budget < 0:
            problems.append("storage_timeout must be positive and storage_retry_budget not "
                            "negative")
        if self.workers < 0 or self.lock_timeout < 0:
            problems.append("workers and lock_timeout must not be negative")
        if problems:
            raise ConfigError("invalid settings: " + "; ".join(problems))


    def row_policy(self, on_bad_rows: str | None = None, on_error_cells: str | None = None
                   ) -> RowPolicy:
        return RowPolicy(on_bad_rows or self.on_bad_rows, on_error_cells or self.on_error_cells,
                         self.drop_total_rows)


_FIELDS = {f.name: f for f in fields(Settings)}


@dataclass(frozen=True)
class RowPolicy:
    """What to do with rows that cannot load as they are (docs/behaviour.md, "Policies")."""

    on_bad_rows: str = "fail"  # a value that does not fit its type: fail | quarantine
    on_error_cells: str = "null"  # an Excel error / uncalculated formula: null | fail | quarantine
    drop_total_rows: bool = False  # totals rows are kept (and warned about) unless this is set

    def quarantines(self, cell: CellError, *, bad_values: bool = True) -> bool:
        """Does `cell`'s row go to quarantine (rather than fail the table)?"""
        if cell.excel_error:
            return self.on_error_cells == "quarantine"
        return bad_values and self.on_bad_rows == "quarantine"


CONFIG_NAME = "dpo.toml"
CHECKS_NAME = "dataChecks.toml"  # beside the schema file unless checks_path says otherwise


def load_settings(config_file: str | Path | None = None, **explicit: Any) -> Settings:
    """Build Settings; `explicit` holds only arguments the caller actually gave (None = not given).

    The config file is `config_file` (a relative path resolves against the root, like every
    other path), else `<root>/dpo.toml` when there is one.
    """
    values: dict[str, Any] = {}
    env = _from_env()
    base = Path(explicit.get("root_dir") or env.get("root_dir") or os.getcwd())
    if config_file is not None:
        path = base / Path(config_file).expanduser()  # an absolute path stays as it is
        values.update(_read_toml(path))
        logger.debug("settings: config file {}", path)
    elif (base / CONFIG_NAME).is_file():
        values.update(_read_toml(base / CONFIG_NAME))
        logger.debug("settings: config file {} (found in the root)", base / CONFIG_NAME)
    values.update(env)
    values.update({k: v for k, v in explicit.items() if v is not None})
    unknown = sorted(set(values) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
    return Settings(**{name: _coerce(name, value) for name, value in values.items()})


def _from_env() -> dict[str, str]:
    return {name: os.environ[f"DPO_{name.upper()}"] for name in _FIELDS
            if f"DPO_{name.upper()}" in os.environ}


def _coerce(name: str, value: Any) -> Any:
    """Turn file/env values into the field's type, with a message naming the setting."""
    kind = str(_FIELDS[name].type)
    try:
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "bool":
            return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
        if kind.startswith("dict"):
            found = json.loads(value) if isinstance(value, str) else value
            if not isinstance(found, dict):
                raise TypeError(name)
            return {str(k): str(v) for k, v in found.items()}
        if kind.startswith("tuple"):
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(i).strip() for i in items if str(i).strip())
        return None if value is None else str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name}: {value!r} is not a valid {kind}") from exc


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}", file=str(path)) from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}", file=str(path)) from exc
    section = data.get("dpo", data)
    if not isinstance(section, dict):
        raise ConfigError(f"config file {path}: [dpo] must be a table", file=str(path))
    return section


@dataclass(frozen=True)
class Paths:
    """The resolved locations of one pipeline; all inside `root`.

    A setting given as a URL (docs/storage.md) keeps its URL here, and its Path is the local
    mirror dpo works in (dpo.urls.local_mirror): the sources and the schema are downloaded
    there, and a remote `default_dir` keeps its working files (Phase 1's output, the caches,
    the ledger, the reports) there while its versioned store is the object store itself.
    """

    root: Path
    source_dir: Path
    schema_path: Path
    annotation_path: Path
    default_dir: Path
    store_url: str | None = None  # default_dir as a URL: the versioned store is remote
    source_url: str | None = None
    schema_url: str | None = None
    annotations_key: str | None = None  # path_annotations.json's key in the remote store
    checks_path: Path | None = None  # the data checks file (absent file: no checks)

    @property
    def checks_file(self) -> Path:
        return self.checks_path or self.schema_path.parent / CHECKS_NAME

    @property
    def remote(self) -> bool:
        return self.store_url is not None

    def location(self, path: Path) -> str:
        """How results name `path`: relative to the root, or as its URL when it is the mirror
        of a remote version object or source (a local working file keeps its local name)."""
        versions = f"{self.store_url}/DataLoaderAgent/versions" if self.store_url else None
        for url in (versions, self.source_url):
            if url is None:
                continue
            mirror = local_mirror(self.root, url)
            if path.is_relative_to(mirror):
                return url.rstrip("/") + "/" + path.relative_to(mirror).as_posix()
        return self.relative(path)

    @property
    def output_dir(self) -> Path:
        return self.default_dir / "DataPipelineOrchestrator"

    @property
    def collector_dir(self) -> Path:
        return self.default_dir / "dynamicDatabase"

    def phase1_output(self, table: str) -> Path:
        """Phase 1's output of a dynamic table (Phase 2's input for it)."""
        return self.collector_dir / f"{table}.parquet"

    def quarantine_path(self, table: str) -> Path:
        """Where a table's rejected rows go (both phases)."""
        return self.collector_dir / "quarantine" / f"{table}.parquet"

    def checks_quarantine_path(self, table: str) -> Path:
        """Where rows a quarantine-severity data check left out go (dpo.checks)."""
        return self.collector_dir / "quarantine" / f"{table}.checks.parquet"

    @property
    def loader_dir(self) -> Path:
        return self.default_dir / "DataLoaderAgent"

    @property
    def cache_dir(self) -> Path:
        """Incremental state: rebuilt when missing or wrong, never the source of truth."""
        return self.default_dir / ".dpo-cache"

    def relative(self, path: Path) -> str:
        """`path` relative to the root where possible (as path_annotations.json stores it)."""
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)


def resolve_paths(settings: Settings) -> Paths:
    root = Path(settings.root_dir or os.getcwd()).resolve()
    hint = "; set root_dir (--root) to a folder that contains it"

    def inside(value: str, what: str) -> Path:
        if is_url(value):
            return local_mirror(root, value)
        try:
            return resolve_within(root, value, what)
        except ConfigError as exc:
            raise ConfigError(exc.message + hint) from exc

    store_url = settings.default_dir if is_url(settings.default_dir) else None
    return Paths(
        root=root,
        source_dir=inside(settings.dynamic_db_source_dir, "dynamic_db_source_dir"),
        schema_path=inside(settings.databaseSchemas_path, "databaseSchemas_path"),
        annotation_path=_annotation_path(settings, root, store_url, inside),
        default_dir=inside(settings.default_dir, "default_dir"),
        store_url=normal_url(store_url) if store_url else None,
        source_url=_url_or_none(settings.dynamic_db_source_dir),
        schema_url=_url_or_none(settings.databaseSchemas_path),
        annotations_key=_annotations_key(settings, store_url),
        checks_path=_checks_path(settings, inside),
    )


def _checks_path(settings: Settings, inside: Callable[[str, str], Path]) -> Path | None:
    if settings.checks_path is None:
        return None
    if is_url(settings.checks_path):
        raise ConfigError(f"checks_path {settings.checks_path} is a URL: the checks file is "
                          "read from this machine (put it beside the schema file, or a local "
                          "path)")
    return inside(settings.checks_path, "checks_path")


def _url_or_none(value: str) -> str | None:
    return normal_url(value) if is_url(value) else None


REMOTE_ANNOTATIONS = "DataLoaderAgent/newest/path_annotations.json"


def _annotations_key(settings: Settings, store_url: str | None) -> str | None:
    """Where a remote store's path_annotations.json goes: under the store, at the place the
    default puts it on disk, or where a URL `annotation_path` inside the store says."""
    value = settings.annotation_path
    if store_url is None:
        if is_url(value):
            raise ConfigError(f"annotation_path {value} is a URL but default_dir is not: the "
                              "annotations live with the store (make default_dir a URL too)")
        return None
    if value == DEFAULTS["annotation_path"]:
        return REMOTE_ANNOTATIONS
    key = key_under(value, store_url) if is_url(value) else None
    if not key:
        raise ConfigError(f"annotation_path {value!r} must be a URL inside default_dir "
                          f"{store_url} (or left unset: {store_url}/{REMOTE_ANNOTATIONS})")
    return key


def _annotation_path(settings: Settings, root: Path, store_url: str | None,
                     inside: Callable[[str, str], Path]) -> Path:
    key = _annotations_key(settings, store_url)
    if store_url is not None and key is not None:
        return local_mirror(root, f"{store_url.rstrip('/')}/{key}")
    return inside(settings.annotation_path, "annotation_path")


def plant_problem(paths: Paths) -> str | None:
    """Why `paths` is no plant to look at, or None. Commands that only read (history, metrics,
    dashboard, versions, diff) and rollback refuse a wrong --root instead of creating folders."""
    if not paths.root.is_dir():
        return f"no plant at {paths.root}: the folder does not exist"
    if paths.remote:  # the store is the object store: its local mirror may not exist yet
        return None
    if not paths.schema_path.is_file() and not paths.default_dir.is_dir():
        return (f"no plant at {paths.root}: neither {paths.relative(paths.schema_path)} nor "
                f"{paths.relative(paths.default_dir)} exists there (wrong --root?)")
    return None

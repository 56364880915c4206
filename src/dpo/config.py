"""Settings from arguments, environment (DPO_*), a TOML file and defaults; the only reader of config.

Precedence: explicit argument > environment > config file > default. Every path resolves
against one root directory (the working directory unless `root_dir` is given) and must stay
inside it.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from dpo.errors import ConfigError
from dpo.schema import resolve_within

DEFAULTS = {
    "dynamic_db_source_dir": "database/dynamicDatabase",
    "databaseSchemas_path": "database/databaseSchemas.json",
    "annotation_path": "agents/shared_db/DataLoaderAgent/newest/path_annotations.json",
    "default_dir": "agents/shared_db",
}


class Settings(BaseSettings):
    """Everything a run can be told. Field names follow the seed's constructor arguments."""

    model_config = SettingsConfigDict(env_prefix="DPO_", extra="forbid", populate_by_name=True)

    root_dir: str | None = None
    dynamic_db_source_dir: str = DEFAULTS["dynamic_db_source_dir"]
    databaseSchemas_path: str = DEFAULTS["databaseSchemas_path"]
    annotation_path: str = DEFAULTS["annotation_path"]
    default_dir: str = DEFAULTS["default_dir"]
    max_retries: int = Field(default=3, ge=0, le=20)
    on_bad_rows: Literal["fail", "quarantine"] = "fail"
    keep_history: int = Field(default=30, ge=1)
    workers: int = Field(default=0, ge=0)  # 0: size to the machine
    notify_urls: list[str] = Field(default_factory=list)
    recipient: str = "plant-data-team"
    lock_timeout: float = Field(default=0.0, ge=0)  # seconds to wait for another run
    prometheus_path: str | None = None


def load_settings(config_file: str | Path | None = None, **explicit: Any) -> Settings:
    """Build Settings; `explicit` holds only arguments the caller actually gave (not None)."""
    given = {k: v for k, v in explicit.items() if v is not None}
    file_values: dict[str, Any] = {}
    if config_file is not None:
        file_values = _read_toml(Path(config_file))
    # Init values beat the environment in pydantic-settings; the file must not, so drop
    # file values that the environment sets.
    from_file = {k: v for k, v in file_values.items() if f"DPO_{k.upper()}" not in os.environ}
    try:
        return Settings(**{**from_file, **given})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from exc


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
    """The resolved locations of one pipeline; all inside `root`."""

    root: Path
    source_dir: Path
    schema_path: Path
    annotation_path: Path
    default_dir: Path

    @property
    def output_dir(self) -> Path:
        return self.default_dir / "DataPipelineOrchestrator"

    @property
    def collector_dir(self) -> Path:
        return self.default_dir / "dynamicDatabase"

    @property
    def loader_dir(self) -> Path:
        return self.default_dir / "DataLoaderAgent"

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
        try:
            return resolve_within(root, value, what)
        except ConfigError as exc:
            raise ConfigError(exc.message + hint) from exc

    return Paths(
        root=root,
        source_dir=inside(settings.dynamic_db_source_dir, "dynamic_db_source_dir"),
        schema_path=inside(settings.databaseSchemas_path, "databaseSchemas_path"),
        annotation_path=inside(settings.annotation_path, "annotation_path"),
        default_dir=inside(settings.default_dir, "default_dir"),
    )

"""Object-storage URLs in path settings (docs/storage.md): which values are URLs, and where their
local working copy lives. Stdlib only: the no-change run and `dpo --help` import it.

Every remote location has one local mirror under the root, `<root>/.dpo-work/<scheme>/<bucket>/
<key>`: the sources and master files dpo reads (downloaded when their ETag changes), the
store's version objects it has read or written, and the working files of a plant whose
`default_dir` is a URL (Phase 1's output, the caches, the ledger, the reports). One rule for
all of them, so two settings naming the same object share one copy.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from dpo.errors import ConfigError

WORK = ".dpo-work"
SCHEMES = ("s3", "gs", "az", "abfs", "abfss", "memory")
_URL_RE = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)$")


def is_url(value: str | Path) -> bool:
    """An object-storage URL (`s3://`, `gs://`, `az://`, `abfs(s)://`, `memory://`). A Windows
    path (`C:\\x`) or a plain path is not."""
    match = _URL_RE.match(str(value)) if isinstance(value, str) else None
    return bool(match and match.group("scheme").lower() in SCHEMES)


def split_url(url: str) -> tuple[str, str]:
    """`s3://bucket/a/b/` -> (`s3://bucket`, `a/b`): the store to open and the key prefix in it.
    A key part with `..` or `.` is refused: it would name a folder outside the mirror."""
    match = _URL_RE.match(url)
    if not match or match.group("scheme").lower() not in SCHEMES:
        raise ConfigError(f"{url!r} is not an object-storage URL ({', '.join(SCHEMES)})")
    scheme = match.group("scheme").lower()
    bucket, _, key = match.group("rest").partition("/")
    if scheme == "memory":  # memory:// has no bucket: everything after it is the key
        bucket, key = "", match.group("rest")
    elif not bucket:
        raise ConfigError(f"{url!r} names no bucket")
    parts = [p for p in key.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ConfigError(f"{url!r}: '.' and '..' are not allowed in an object key")
    return f"{scheme}://{bucket}", "/".join(parts)


def join_key(prefix: str, key: str) -> str:
    return f"{prefix}/{key}" if prefix else key


def local_mirror(root: Path, url: str) -> Path:
    """Where the local copy of `url` lives: `<root>/.dpo-work/<scheme>/<bucket>/<key>`."""
    base, key = split_url(url)
    scheme, _, bucket = base.partition("://")
    parts = PurePosixPath(scheme, bucket or "_", *[p for p in key.split("/") if p]).parts
    return root.resolve() / WORK / Path(*parts)


def key_under(url: str, base_url: str) -> str | None:
    """The key of `url` relative to `base_url` (a prefix URL), or None when it is elsewhere."""
    base, prefix = split_url(base_url)
    other, key = split_url(url)
    if other != base or not (prefix == "" or key == prefix or key.startswith(prefix + "/")):
        return None
    return key[len(prefix):].lstrip("/")

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
SCHEMES = frozenset({"s3", "gs", "az", "abfs", "abfss", "memory"})
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.DOTALL)


def is_url(value: str | Path) -> bool:
    """True for an object-storage URL (`s3://`, `gs://`, `az://`, `abfs(s)://`, `memory://`,
    the scheme in any case); a local path, `C:\\x` included, is not one."""
    found = _URL.match(value) if isinstance(value, str) else None
    return found is not None and found.group(1).lower() in SCHEMES


def split_url(url: str) -> tuple[str, str]:
    """`s3://bucket/a/b/` -> ("s3://bucket", "a/b"): the store to open and the prefix in it
    (no slash at either end); `memory://a` -> ("memory://", "a"). The scheme is lower-cased.
    A prefix with an empty, `.` or `..` part is refused: it would name a folder outside the
    local mirror."""
    found = _URL.match(url)
    if found is None or found.group(1).lower() not in SCHEMES:
        raise ConfigError(f"{url}: not an object-storage URL (s3://, gs://, az://, abfs://, "
                          "memory://)", file=url)
    scheme, rest = found.group(1).lower(), found.group(2)
    if scheme == "memory":
        root, path = "memory://", rest
    else:
        container, _, path = rest.partition("/")
        if not container:
            raise ConfigError(f"{url}: no bucket or container in the URL", file=url)
        root = f"{scheme}://{container}"
    prefix = path.strip("/")
    if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
        raise ConfigError(f"{url}: the prefix has an empty, '.' or '..' part", file=url)
    return root, prefix


def normal_url(url: str) -> str:
    """`url` as dpo names it: the scheme lower-cased, no slash at the end."""
    base, prefix = split_url(url)
    return f"{base}/{prefix}" if prefix else base


def local_mirror(root: Path, url: str) -> Path:
    """Where the local copy of `url` lives: `<root>/.dpo-work/<scheme>/<bucket>/<key>`."""
    base, key = split_url(url)
    scheme, _, bucket = base.partition("://")
    parts = PurePosixPath(scheme, bucket or "_", *key.split("/") if key else ()).parts
    return root.resolve() / WORK / Path(*parts)


def key_under(url: str, base_url: str) -> str | None:
    """The key of `url` relative to `base_url` (a prefix URL), or None when it is elsewhere."""
    base, prefix = split_url(base_url)
    other, key = split_url(url)
    if other != base or not (prefix == "" or key == prefix or key.startswith(prefix + "/")):
        return None
    return key[len(prefix):].lstrip("/")

"""The one door to object storage (obstore): opening a client from a URL, and every request
the project makes (get, put, list, head, delete), each failure mapped here to what dpo says.

The mapping (the one place for it):

- an object that is not there: FileNotFoundError (obstore's NotFoundError is one), raised as is;
- the protocol's own outcomes: `ObjectExists` (a create-only put found the key) and
  `ObjectChanged` (an If-Match request found another version), for the caller to interpret;
- a name obstore refuses (`..`, `.`, an empty part): ConfigError naming the object;
- any other failure of a request: a DpoError naming the object and the action, never the
  credentials (the message of an auth failure can echo request headers, so only the error's
  kind is kept).

obstore is imported when a store is opened or a request made, never by a local no-change run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from dpo.errors import ConfigError, DpoError, ErrorType
from dpo.store.objects import retry

if TYPE_CHECKING:
    from obstore import ObjectMeta
    from obstore.store import ObjectStore

    from dpo.config import Settings

# obstore's InvalidPathError quotes the path it could not parse (no request, so no secrets).
_INVALID_PATH = re.compile(r'Path "([^"]*)"')


class ObjectExists(Exception):
    """A create-only put found the key taken (by another writer, or by this one's own retry)."""


class ObjectChanged(Exception):
    """A request conditional on an ETag (If-Match) found the object changed since."""


# -- opening -----------------------------------------------------------------------------------
def open_store(url: str, options: Mapping[str, str] | None = None) -> ObjectStore:
    """The obstore store of `url` (`s3://bucket/prefix`, `gs://…`, `az://…`, `memory://`).

    Credentials and endpoint come from the standard environment (AWS_ENDPOINT_URL,
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION: obstore reads them) or `options`;
    a plain-HTTP endpoint is allowed when its URL says http:// (a local test server, MinIO).
    Nothing here logs `options`: they may hold secrets.
    """
    try:
        from obstore.store import MemoryStore
    except ImportError as exc:
        raise ConfigError(f"{url}: object storage needs obstore: pip install 'dpo[s3]'") from exc
    if url == "memory://":
        return MemoryStore()
    # One client per store and credentials for the process: opening one costs ~5 ms (a run
    # opens the store's and the inputs' more than once), and a client keeps its connections.
    key = (url, tuple(sorted((options or {}).items())), retry.policy(),
           tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(_CLOUD_ENV))))
    if key not in _OPENED:
        _OPENED[key] = _open(url, options)
    return _OPENED[key]


def follow_settings(settings: Settings) -> None:
    """Requests from now on follow `settings` (storage_timeout, storage_retry_budget): called
    by whoever opens a store for a plant, before opening it."""
    retry.configure(timeout=settings.storage_timeout, budget=settings.storage_retry_budget)


def open_bucket(url: str, options: Mapping[str, str] | None = None) -> tuple[ObjectStore, str]:
    """The store of `url`'s bucket and the key `url` names in it: one client per bucket for
    every object of it that a run reads (open_store keeps it)."""
    from dpo.urls import split_url

    base, key = split_url(url)
    return open_store(base, options), key


_CLOUD_ENV = ("AWS_", "GOOGLE_", "AZURE_")
_OPENED: dict[tuple[Any, ...], ObjectStore] = {}


def _open(url: str, options: Mapping[str, str] | None) -> ObjectStore:
    from obstore.store import from_url

    config: dict[str, Any] = dict(options or {})
    missing = retry.without_credentials(url, config)
    if missing:
        raise ConfigError(missing, file=url)
    config.pop(retry.INSTANCE_CREDENTIALS, None)  # dpo's own key, not obstore's
    endpoint = config.get("endpoint") or config.get("aws_endpoint") or \
        os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL", "")
    try:
        # obstore's TypedDicts per scheme: the keys are checked by obstore itself, at run time
        return from_url(url, config=cast(Any, config or None),
                        client_options=cast(Any, retry.client_options(endpoint)),
                        retry_config=cast(Any, retry.retry_config()))
    except (ValueError, OSError) as exc:  # obstore's config errors derive from these
        raise ConfigError(f"{url}: cannot open the object store ({type(exc).__name__})",
                          file=url) from exc


def storage_error(action: str, key: str, exc: BaseException) -> DpoError:
    """An obstore failure as a dpo error naming the object (module docstring)."""
    return DpoError(f"cannot {action} {key} on the object store ({type(exc).__name__})",
                    error_type=ErrorType.WRITE_ERROR, file=key)


def object_url(store: ObjectStore, key: str) -> str:
    """`key` as a URL for messages: scheme, bucket and the store's prefix (never its config
    beyond the bucket name, which holds no secret)."""
    scheme = {"S3Store": "s3", "GCSStore": "gs", "AzureStore": "az",
              "MemoryStore": "memory"}.get(type(store).__name__, "object")
    config = getattr(store, "config", None) or {}
    container = config.get("bucket") or config.get("container_name") or ""
    prefix = getattr(store, "prefix", None) or ""
    path = "/".join(str(p).strip("/") for p in (prefix, key) if p)
    return f"{scheme}://{container}/{path}" if scheme != "memory" else f"memory:///{path}"


# -- requests ----------------------------------------------------------------------------------
@contextmanager
def _mapped(store: ObjectStore, action: str, key: str) -> Iterator[None]:
    """obstore's failures as dpo's (module docstring)."""
    from obstore.exceptions import (
        AlreadyExistsError,
        BaseError,
        InvalidPathError,
        PreconditionError,
    )

    try:
        yield
    except FileNotFoundError:
        raise
    except AlreadyExistsError as exc:
        raise ObjectExists(key) from exc
    except PreconditionError as exc:
        raise ObjectChanged(key) from exc
    except InvalidPathError as exc:  # obstore refuses `..`, `.` and empty parts itself
        quoted = _INVALID_PATH.search(str(exc))
        named = quoted.group(1) if quoted else key
        raise ConfigError(f"{object_url(store, named)}: an object whose name is not a plain "
                          "file name ('..', '.', or an empty part); refused",
                          file=named) from exc
    except (BaseError, OSError, ValueError) as exc:
        raise storage_error(action, key, exc) from exc


def get_bytes(store: ObjectStore, key: str) -> bytes:
    """The whole object (small ones: manifests, holds, a version proven in memory)."""
    import obstore

    with _mapped(store, "read", key):
        return retry.retried(store, object_url(store, key), "read",
                             lambda: bytes(obstore.get(store, key).bytes()))


def get_with_meta(store: ObjectStore, key: str) -> tuple[bytes, ObjectMeta]:
    """The whole object and the server's metadata for that very version (ETag, time)."""
    import obstore

    def call() -> tuple[bytes, ObjectMeta]:
        got = obstore.get(store, key)
        return bytes(got.bytes()), got.meta

    with _mapped(store, "read", key):
        return retry.retried(store, object_url(store, key), "read", call)


def stream(store: ObjectStore, key: str, write: Callable[[bytes], object], *,
           if_match: str | None = None) -> tuple[ObjectMeta, int]:
    """The object streamed into `write` (a large workbook is never held whole in memory);
    its metadata and the bytes written. `if_match`: that version or ObjectChanged."""
    import obstore

    with _mapped(store, "read", key):
        got = retry.retried(store, object_url(store, key), "read", lambda: obstore.get(
            store, key, options={"if_match": if_match} if if_match else None))
        written = 0
        for chunk in got:
            write(chunk)
            written += len(chunk)
        return got.meta, written


def put(store: ObjectStore, key: str, data: bytes, *, mode: Any = "overwrite",
        multipart: bool | None = None) -> str | None:
    """Put `data` at `key` (`mode`: "overwrite", "create" or {"e_tag": …}); its new ETag."""

    with _mapped(store, "write", key):
        return retry.put(store, object_url(store, key), key, data, mode=mode,
                         use_multipart=multipart)


def delete(store: ObjectStore, keys: list[str]) -> None:
    import obstore

    if not keys:
        return
    with _mapped(store, "delete", keys[0]):
        retry.retried(store, object_url(store, keys[0]), "delete",
                      lambda: obstore.delete(store, keys))


def head(store: ObjectStore, key: str) -> ObjectMeta:
    import obstore

    with _mapped(store, "read", key):
        return retry.retried(store, object_url(store, key), "read",
                             lambda: obstore.head(store, key))


def list_objects(store: ObjectStore, prefix: str | None) -> list[ObjectMeta]:
    """Every object under `prefix` (all pages)."""
    import obstore

    with _mapped(store, "list", prefix or "/"):  # a page cut off: the listing read again
        return retry.retried(store, object_url(store, prefix or ""), "list",
                             lambda: [meta for chunk in obstore.list(store, prefix=prefix or None)
                                      for meta in chunk])


def list_keys(store: ObjectStore, prefix: str | None) -> list[str]:
    return [meta["path"] for meta in list_objects(store, prefix)]


def list_level(store: ObjectStore, prefix: str | None) -> tuple[list[ObjectMeta], list[str]]:
    """The objects directly under `prefix`, and the "folders" (common prefixes) below it."""
    import obstore

    with _mapped(store, "list", prefix or "/"):
        found = retry.retried(store, object_url(store, prefix or ""), "list",
                              lambda: obstore.list_with_delimiter(store, prefix=prefix or None))
        return list(found["objects"]), list(found["common_prefixes"])


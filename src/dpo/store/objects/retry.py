"""Every request dpo makes to object storage: retried within a budget, an ambiguous write read
back, every failure one line naming the URL and what to do (docs/storage.md, "Faults").

obstore's own retries are switched off (`retry_config()`): it retries a 5xx but not a
conditional PUT whose connection broke after sending (object_store's `RetryableRequest::send`
retries transport timeouts only for idempotent requests, and never an "unknown" body error), and
its budget is per request. Here each *operation* has one budget (`Policy.budget` seconds), with
capped exponential backoff and jitter (tenacity) between tries:

- a read, a listing, a delete or a plain overwrite is simply tried again;
- a create-only or If-Match PUT that fails ambiguously (a 5xx, a reset, a timeout, an answer
  lost after the server applied it) is *read back*: the key holds our bytes = done (its ETag
  returned); absent (create) or still the ETag we matched (If-Match) = not done, tried again;
  anything else = another writer won (AlreadyExistsError / PreconditionError, as obstore would
  have said).

Stdlib + tenacity; obstore is imported when a call is made.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from dpo.errors import ConfigError, DpoError, ErrorType

if TYPE_CHECKING:
    from obstore.store import ObjectStore

T = TypeVar("T")


@dataclass(frozen=True)
class Policy:
    """How long one request may take and how long one operation keeps retrying (seconds)."""

    timeout: float = 30.0  # one request, from connecting to the last byte of the answer
    connect_timeout: float = 5.0
    budget: float = 60.0  # retrying one operation, in total
    first_wait: float = 0.2  # backoff: a random wait up to first_wait * 2^try ("full jitter"),
    max_wait: float = 5.0  # capped


_POLICY = [Policy()]


def configure(*, timeout: float, budget: float) -> None:
    """The process's policy (from Settings.storage_timeout / storage_retry_budget)."""
    _POLICY[0] = Policy(timeout=timeout, connect_timeout=min(5.0, timeout), budget=budget)


def policy() -> Policy:
    return _POLICY[0]


def client_options(endpoint: str) -> dict[str, Any]:
    """obstore's client options: the timeouts set, never left to the library's defaults."""
    now = policy()
    options: dict[str, Any] = {"timeout": f"{now.timeout:g}s",
                               "connect_timeout": f"{now.connect_timeout:g}s"}
    if endpoint.startswith("http://"):
        options["allow_http"] = True
    return options


def retry_config() -> dict[str, Any]:
    """obstore retries nothing: every retry is here, under one budget per operation."""
    return {"max_retries": 0, "retry_timeout": timedelta(seconds=policy().budget),
            "backoff": {"init_backoff": timedelta(seconds=0.1),
                        "max_backoff": timedelta(seconds=1), "base": 2}}


INSTANCE_CREDENTIALS = "instance_credentials"  # dpo's own key in [dpo.storage_options]
_TRUE = ("1", "true", "yes")


def without_credentials(url: str, config: Mapping[str, str]) -> str | None:
    """Why an S3 store would have to ask the cloud metadata endpoint (169.254.169.254) for
    credentials, as the message to stop with; None when it has credentials of its own, or
    the configuration asks for the machine's instance role (`instance_credentials = "true"`
    in [dpo.storage_options]). obstore asks that endpoint whenever it finds no key: off a
    cloud machine that is a request to an address nobody configured, and a long wait."""
    if not url.startswith(("s3://", "s3a://")):
        return None
    given = {k.lower().removeprefix("aws_"): str(v) for k, v in config.items()}
    env = os.environ
    if given.get(INSTANCE_CREDENTIALS, "").lower() in _TRUE:
        return None
    if ({"access_key_id", "secret_access_key"} <= given.keys()
            or given.get("skip_signature", "").lower() in _TRUE
            or (env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"))
            or env.get("AWS_SKIP_SIGNATURE", "").lower() in _TRUE
            or any(env.get(k) for k in ("AWS_WEB_IDENTITY_TOKEN_FILE",
                                        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                                        "AWS_CONTAINER_CREDENTIALS_FULL_URI"))):
        return None
    return (f"no credentials for {url}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or "
            "access_key_id and secret_access_key in [dpo.storage_options]); on a cloud machine "
            f"with an instance role, set {INSTANCE_CREDENTIALS} = \"true\" there instead")


# -- what went wrong ---------------------------------------------------------------------------
TRANSIENT = ("throttled", "server", "connection", "unreachable")
_KINDS: tuple[tuple[str, str], ...] = (
    ("bucket", r"NoSuchBucket"),
    ("credentials", r"InvalidAccessKeyId|SignatureDoesNotMatch|InvalidToken|ExpiredToken|"
                    r"Unauthenticated|401 Unauthorized"),
    ("region", r"PermanentRedirect|AuthorizationHeaderMalformed|IllegalLocationConstraint|"
               r"redirect without LOCATION|301 Moved Permanently"),
    ("denied", r"AccessDenied|PermissionDenied|403 Forbidden"),
    ("tls", r"(?i)certificate|InvalidContentType|CorruptMessage|tls handshake|ssl"),
    ("unreachable", r"tcp connect error|dns error|ConnectionRefused|Connection refused|"
                    r"kind: Connect,"),
    ("throttled", r"SlowDown|503 Service Unavailable|429 Too Many Requests|"
                  r"TooManyRequests|RequestLimitExceeded"),
    ("server", r"non-2xx status code: 5\d\d|InternalError"),
    ("connection", r"error sending request|body error|TimedOut|kind: Timeout|"
                   r"kind: Interrupted|connection closed|IncompleteMessage|reset by peer"),
)


def kind_of(exc: BaseException) -> str:
    """The kind of an obstore failure: one of TRANSIENT, a configuration problem (bucket,
    credentials, region, denied, tls), `missing` (no such object) or `other`."""
    # Without the URLs and object names it quotes: a bucket or key may spell anything.
    text = re.sub(r"\S+://\S+|location \S+", "", str(exc))
    for kind, pattern in _KINDS:
        if re.search(pattern, text):
            return kind
    if isinstance(exc, FileNotFoundError):
        return "missing"
    from obstore.exceptions import PermissionDeniedError, UnauthenticatedError

    if isinstance(exc, UnauthenticatedError):
        return "credentials"
    if isinstance(exc, PermissionDeniedError):
        return "denied"
    return "other"


def _transient(exc: BaseException) -> bool:
    from obstore.exceptions import BaseError

    return isinstance(exc, BaseError | OSError | _NotApplied) and kind_of(exc) in TRANSIENT


def endpoint_of(store: ObjectStore) -> str:
    """The endpoint the store talks to, as configured or from the environment obstore read."""
    config = getattr(store, "config", None) or {}
    return str(config.get("endpoint") or os.environ.get("AWS_ENDPOINT_URL_S3")
               or os.environ.get("AWS_ENDPOINT_URL") or "the provider's default endpoint")


def problem(exc: BaseException, store: ObjectStore, url: str, action: str, *,
            tries: int = 1, seconds: float = 0.0) -> DpoError:
    """An obstore failure as one line naming the URL and what to do; a ConfigError (exit 2)
    when the configuration is at fault. Never the failure's own text: an authentication
    error's can echo request headers."""
    kind = kind_of(exc)
    endpoint = endpoint_of(store)
    config = getattr(store, "config", None) or {}
    bucket = config.get("bucket") or config.get("container_name") or "?"
    fixes = {
        "bucket": f"the bucket {bucket} does not exist at {endpoint}: create it, or correct "
                  "default_dir (or the input's URL)",
        "credentials": f"{endpoint} refused the credentials: check AWS_ACCESS_KEY_ID and "
                       "AWS_SECRET_ACCESS_KEY (or access_key_id and secret_access_key in "
                       "[dpo.storage_options])",
        "region": f"the bucket {bucket} is in another region than "
                  f"{config.get('region') or 'the one configured'}: set AWS_REGION (or region "
                  "in [dpo.storage_options]) to the bucket's region",
        "denied": f"access denied: the credentials in use may not {action} it; grant them "
                  "read, write, list and delete on the bucket",
        "tls": f"TLS failed with {endpoint}: its certificate is not trusted, or it does not "
               "speak https (a plain-HTTP server's endpoint starts with http://)",
        "unreachable": f"cannot reach {endpoint} ({tries} tries over {seconds:.0f} s): check "
                       "the endpoint (AWS_ENDPOINT_URL or endpoint in [dpo.storage_options]) "
                       "and the network",
    }
    if kind in fixes:
        return ConfigError(f"cannot {action} {url}: {fixes[kind]}", file=url)
    said = {"throttled": "throttled (503 SlowDown)", "server": "server errors (5xx)",
            "connection": "connections broken or timed out", "missing": "no such object",
            }.get(kind, f"failed ({type(exc).__name__})")
    retry = (f" after {tries} tries over {seconds:.0f} s (storage_retry_budget "
             f"{policy().budget:g} s); run again later" if kind in TRANSIENT else "")
    return DpoError(f"cannot {action} {url}: the object store {said}{retry}",
                    error_type=ErrorType.WRITE_ERROR if action in ("write", "delete")
                    else ErrorType.FILE_READ_ERROR, file=url)


# -- retrying ----------------------------------------------------------------------------------
@contextmanager
def _named(store: ObjectStore, url: str, action: str, started: float,
           tries: Callable[[], int]) -> Iterator[None]:
    """A failure escaping the block, once retrying is over, as one line (problem())."""
    from obstore.exceptions import AlreadyExistsError, BaseError, PreconditionError

    try:
        yield
    except (AlreadyExistsError, PreconditionError):
        raise  # the protocol's own outcomes: the caller says what they mean
    except FileNotFoundError as exc:
        if kind_of(exc) == "bucket":
            raise problem(exc, store, url, action) from exc
        raise  # no such object: the caller decides
    except (BaseError, OSError, _NotApplied) as exc:
        if kind_of(exc) == "other" and not isinstance(exc, _NotApplied):
            raise  # not a failure of the request: the caller's mapping names it
        raise problem(exc, store, url, action, tries=tries(),
                      seconds=time.monotonic() - started) from exc


def retried(store: ObjectStore, url: str, action: str, call: Callable[[], T]) -> T:
    """`call()` (one request, or a listing read whole), tried again on a transient failure
    until the budget is spent; then any failure of the request as one line."""
    from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

    now = policy()
    retrying = Retrying(stop=stop_after_delay(now.budget), reraise=True,
                        wait=wait_random_exponential(multiplier=now.first_wait,
                                                     max=now.max_wait),
                        retry=retry_if_exception(_transient))
    started = time.monotonic()
    with _named(store, url, action, started,
                lambda: int(retrying.statistics.get("attempt_number", 1))):
        return retrying(call)


def put(store: ObjectStore, url: str, key: str, data: bytes, *, mode: Any,
        use_multipart: bool | None) -> str | None:
    """Put `data`; its ETag. `mode`: "overwrite", "create" (AlreadyExistsError if another
    writer's object is there) or {"e_tag": …} (PreconditionError if the object changed).
    An ambiguous failure of a conditional put is read back (module docstring)."""
    import obstore
    from obstore.exceptions import AlreadyExistsError, PreconditionError

    tried = [0]

    def attempt() -> str | None:
        try:
            return obstore.put(store, key, data, mode=mode,
                               use_multipart=use_multipart)["e_tag"]
        except (AlreadyExistsError, PreconditionError):
            if tried[0] == 0:
                raise  # nothing of ours can be there yet
            found = _read_back(store, url, key)
            if found is not None and found[0] == data:
                return found[1]  # an earlier try of ours landed; its answer was lost
            raise
        except Exception as exc:
            if mode == "overwrite" or not _transient(exc):
                raise
            return _settle(store, url, key, data, mode, exc)
        finally:
            tried[0] += 1

    return retried(store, url, "write", attempt)


class _NotApplied(Exception):
    """A conditional put that did not land: try it again (raised with the cause's text, so it
    is classified as the same transient failure)."""


def _settle(store: ObjectStore, url: str, key: str, data: bytes, mode: Any,
            cause: BaseException) -> str | None:
    """After an ambiguous failure of a conditional put: ours (its ETag), or raise."""
    from obstore.exceptions import AlreadyExistsError, PreconditionError

    found = _read_back(store, url, key)
    if found is not None and found[0] == data:
        return found[1]  # it landed: the answer was lost
    if mode == "create" and found is not None:
        raise AlreadyExistsError(f"{key}: another writer created it first")
    if isinstance(mode, dict) and found is None:
        raise PreconditionError(f"{key}: deleted by another writer")
    if isinstance(mode, dict) and found is not None and found[1] != mode.get("e_tag"):
        raise PreconditionError(f"{key}: changed by another writer")
    raise _NotApplied(str(cause)) from cause


def _read_back(store: ObjectStore, url: str, key: str) -> tuple[bytes, str | None] | None:
    import obstore

    def call() -> tuple[bytes, str | None]:
        got = obstore.get(store, key)
        return bytes(got.bytes()), got.meta.get("e_tag")

    try:
        return retried(store, url, "read", call)
    except FileNotFoundError:
        return None

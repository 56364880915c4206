"""One run at a time across machines: a lease object on the store, `_dpo/lease.json`.

The object-storage counterpart of dpo.store.local.lock (docs/storage.md): no machine's lock reaches
another machine, and no kernel frees the lease of a holder that died, so it expires.

- acquire: a create-only put; if the lease exists, it is taken over only if released or
  expired, by a put conditional on the ETag that was read (a compare-and-swap: of two runs
  taking over, one wins).
- renew (every `ttl / 3`, on a thread) and release: puts conditional on the holder's own ETag;
  a release leaves a tombstone (an unconditional delete could remove a lease another run has
  just taken over), which the next run takes over.
- expiry is judged by the server's clock: the lease's last_modified against the last_modified
  of an object put just now (`_dpo/clock`); the local clocks of the machines never meet.

Every body holds a fresh token and a renewal count: S3's ETag is the body's MD5, so two equal
bodies would make a stale compare-and-swap succeed.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from loguru import logger

from dpo.errors import DpoError, PipelineLocked
from dpo.store.objects.client import ObjectChanged, ObjectExists, get_with_meta, head, put

if TYPE_CHECKING:
    from obstore.store import ObjectStore

LEASE = "_dpo/lease.json"
CLOCK = "_dpo/clock"


@dataclass(frozen=True)
class Seen:
    """The lease as read: its body and the server's ETag and last-modified time for it."""

    body: dict[str, Any]
    e_tag: str | None
    last_modified: datetime

    def holder(self) -> str:
        who = self.body.get("holder", {})
        if not isinstance(who, dict):
            return "unknown holder"
        return (f"host {who.get('host', '?')}, pid {who.get('pid', '?')}, "
                f"started {who.get('started_at', '?')}")

    def expires(self) -> datetime:
        return self.last_modified + timedelta(seconds=float(self.body.get("ttl_seconds", 0)))


class Lease:
    """The run lease of `store`. `acquire()` or raise PipelineLocked naming the holder."""

    def __init__(self, store: ObjectStore, *, ttl: float = 60.0,
                 local: str | None = None) -> None:
        self.store = store
        self.ttl = ttl
        # This machine's working folder (machine id + path), given only by a caller that holds
        # its local run lock: a lease left by a run of that same folder is then known dead.
        self.local = local
        self.e_tag: str | None = None
        self.lost: PipelineLocked | None = None  # set when a renewal finds it taken over
        self._count = 0
        self._token = uuid.uuid4().hex
        self._started = datetime.now().isoformat(timespec="seconds")

    def _body(self, *, released: bool = False) -> bytes:
        self._count += 1
        return json.dumps({
            "holder": {"host": socket.gethostname(), "pid": os.getpid(),
                       "started_at": self._started, "local": self.local},
            "token": self._token, "count": self._count, "ttl_seconds": self.ttl,
            "released": released,
        }).encode()

    def acquire(self) -> None:
        # Read first: a store that ran before holds a released lease (a tombstone), taken
        # over in one more request; only a store that never ran needs the create.
        for _ in range(3):  # the lease can appear or vanish between the read and the write
            seen = self.read()
            if seen is None:
                try:
                    self.e_tag = self._put(self._body(), "create")
                    return
                except ObjectExists:
                    continue  # another run created it first: read what it wrote
            if self._left_here(seen):
                self.e_tag = self._swap(seen, f"the lease left by a run killed here "
                                              f"({seen.holder()})")
                return
            if not seen.body.get("released") and self.server_now() < seen.expires():
                raise PipelineLocked(
                    f"another dpo run holds the store lease {LEASE} ({seen.holder()}) until "
                    f"{seen.expires():%Y-%m-%d %H:%M:%S} UTC unless renewed; wait for it to "
                    "finish", file=LEASE)
            state = "released" if seen.body.get("released") else "expired"
            self.e_tag = self._swap(seen, f"the {state} lease of {seen.holder()}")
            return
        raise PipelineLocked(f"the store lease {LEASE} keeps changing; another run is starting",
                             file=LEASE)

    def _left_here(self, seen: Seen) -> bool:
        """The lease was taken by a run of this very working folder on this machine: that run
        is over (this process holds the folder's run lock, which the kernel frees when a
        process dies), so its lease need not be waited out."""
        who = seen.body.get("holder")
        return (self.local is not None and isinstance(who, dict)
                and who.get("local") == self.local and not seen.body.get("released"))

    def check(self) -> None:
        """Raise if the lease was lost: called before a commit, which it must not make then."""
        if self.lost is not None:
            raise self.lost

    def renew(self) -> None:
        """Extend the lease; PipelineLocked if it was taken over (it had expired)."""
        self.e_tag = self._update(self._body(), "renew")

    def release(self) -> None:
        """Give the lease up (a tombstone, see the module docstring); a lease already taken
        over is left to its new holder. A release that cannot be made is a warning: the
        lease expires on its own, and whatever the run did stands."""
        try:
            self._update(self._body(released=True), "release")
        except PipelineLocked:
            pass  # taken over: someone else's now, nothing of ours
        except DpoError as exc:
            logger.warning("⚠️ the store lease was not released ({}); it expires by itself "
                           "within {:g} s", exc.message, self.ttl)
        self.e_tag = None

    def _swap(self, seen: Seen, what: str) -> str | None:
        try:
            return self._put(self._body(), {"e_tag": seen.e_tag})
        except (ObjectChanged, FileNotFoundError) as exc:
            now = self.read()
            raise PipelineLocked(f"another dpo run took over {what} first "
                                 f"({now.holder() if now else 'since released'})",
                                 file=LEASE) from exc

    def _update(self, body: bytes, action: str) -> str | None:
        if self.e_tag is None:
            raise PipelineLocked(f"cannot {action} the store lease: this run does not hold it",
                                 file=LEASE)
        try:
            return self._put(body, {"e_tag": self.e_tag})
        except (ObjectChanged, FileNotFoundError) as exc:
            now = self.read()
            raise PipelineLocked(f"the store lease was taken over while this run held it "
                                 f"({now.holder() if now else 'deleted'}): it had expired",
                                 file=LEASE) from exc

    def read(self) -> Seen | None:
        try:
            data, meta = get_with_meta(self.store, LEASE)
        except FileNotFoundError:
            return None
        try:
            body = json.loads(data)
        except ValueError:
            body = {}  # unreadable: no holder, no ttl, so expired: taken over
        return Seen(body if isinstance(body, dict) else {}, meta["e_tag"], meta["last_modified"])

    def server_now(self) -> datetime:
        """The server's time now: the last_modified of an object put for the purpose."""
        self._put(b"", "overwrite", key=CLOCK)
        return head(self.store, CLOCK)["last_modified"]

    def _put(self, body: bytes, mode: Any, *, key: str = LEASE) -> str | None:
        return put(self.store, key, body, mode=mode)


@contextmanager
def store_lease(store: ObjectStore, *, ttl: float = 60.0,
                local: str | None = None) -> Iterator[Lease]:
    """Hold the store's lease for the block, renewed every ttl/3 on a daemon thread; released
    at the end. A renewal that fails (the lease was taken over) makes `lease.check()` raise
    during the block (the caller checks before its commit), and is a warning after it."""
    lease = Lease(store, ttl=ttl, local=local)
    lease.acquire()
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(ttl / 3):
            try:
                lease.renew()
            except PipelineLocked as exc:
                lease.lost = exc
                return
            except DpoError:
                continue  # the store unreachable for now: the next tick tries again

    thread = threading.Thread(target=renew, name="dpo-lease", daemon=True)
    thread.start()
    try:
        yield lease
    finally:
        stop.set()
        thread.join()
        if lease.lost is None:
            lease.release()
    if lease.lost is not None:
        # Every commit of the block called check() first: a lease lost after the last one
        # changes nothing the block did, so it is said, not raised.
        logger.warning("⚠️ {}", lease.lost.message)

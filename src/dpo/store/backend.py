"""The store the pipeline and the commands use: on disk (VersionStore) or on object storage
(RemoteVersionStore), chosen by `default_dir` (docs/storage.md), behind one interface.

`store_session` is the one way to hold a store for writing: the local run lock always (it
guards the local working files), and for a remote store also the store lease (one run at a
time across machines, dpo.store.lease), whose loss stops the next commit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from dpo.config import Paths, Settings
from dpo.fsio import stamp_key
from dpo.store.lock import run_lock

if TYPE_CHECKING:
    import pyarrow as pa

    from dpo.store.holds import Hold
    from dpo.store.versions import PublishOutcome, VersionInfo


class Store(Protocol):
    """What the loader, the healing, the diff, the no-change run and the commands ask of a
    store. `stored` strings are versions as the annotations name them: a path relative to the
    root on disk, a URL on object storage."""

    paths: Paths

    def annotations(self) -> dict[str, str]: ...
    def location(self, table: str) -> str | None: ...
    def current_hash(self, table: str) -> str | None: ...
    def list_versions(self, table: str) -> list[VersionInfo]: ...
    def versions_at(self, stamp: str) -> dict[str, str]: ...
    def pointer_history(self, table: str) -> list[tuple[str, str]]: ...
    def commit_token(self) -> str | None: ...
    def has(self, stored: str) -> bool: ...
    def leftovers(self) -> list[Path] | list[str]: ...
    def local_copy(self, stored: str) -> Path: ...
    def current_file(self, table: str) -> Path | None: ...
    def previous_file(self, stored: str) -> Path: ...
    def fetch(self, version: VersionInfo) -> Path: ...
    def holds(self) -> dict[str, Hold]: ...
    def share(self, reports: list[Path]) -> list[str]: ...
    def recover(self) -> list[str]: ...
    def publish(self, tables: Mapping[str, tuple[pa.Table | Path, Mapping[bytes, bytes]]]
                ) -> PublishOutcome: ...
    def rollback(self, targets: Mapping[str, str], *,
                 command: str = "dpo rollback") -> list[VersionInfo]: ...


def open_store_for(paths: Paths, settings: Settings, *,
                   clock: Callable[[], datetime] = datetime.now,
                   guard: Callable[[], None] | None = None) -> Store:
    """The plant's store, to read (a writer uses store_session)."""
    from dpo.store.versions import VersionStore

    if paths.store_url is None:
        return VersionStore(paths, keep_history=settings.keep_history, clock=clock)
    from dpo.store.manifests import open_store
    from dpo.store.remote import RemoteVersionStore

    return RemoteVersionStore(paths, open_store(paths.store_url, settings.storage_options),
                              keep_history=settings.keep_history, clock=clock, guard=guard)


@contextmanager
def store_session(paths: Paths, settings: Settings, *,
                  clock: Callable[[], datetime] = datetime.now,
                  timeout: float | None = None) -> Iterator[Store]:
    """The store, held for one writer for the block (PipelineLocked, exit 4, if another has
    it). A remote store's holds are read at the start and written back at the end."""
    with run_lock(paths.output_dir, timeout=settings.lock_timeout if timeout is None
                  else timeout):
        if paths.store_url is None:
            yield open_store_for(paths, settings, clock=clock)
            return
        from dpo.store.lease import store_lease
        from dpo.store.manifests import open_store
        from dpo.store.remote import RemoteVersionStore

        objects = open_store(paths.store_url, settings.storage_options)
        with store_lease(objects, ttl=settings.lease_ttl, local=_machine_folder(paths)) as lease:
            store = RemoteVersionStore(paths, objects, keep_history=settings.keep_history,
                                       clock=clock, guard=lease.check)
            store.pull_holds()
            try:
                yield store
            finally:
                if lease.lost is None:  # a lost lease is another run's to write under
                    store.push_holds()


def _machine_folder(paths: Paths) -> str:
    """This machine and working folder, for the lease (dpo.store.lease.Lease.local): the host
    name and the OS's machine id (containers of one image share the id, cloned VMs the host
    name; both at once is a clone of a whole machine), and the folder."""
    import socket

    try:
        machine = Path("/etc/machine-id").read_text(encoding="utf-8").strip()
    except OSError:
        machine = ""
    return f"{socket.gethostname()}:{machine}:{paths.output_dir}"


def versions_at(current: Mapping[str, str], versions: Callable[[str], list[VersionInfo]],
                stamp: str) -> dict[str, str]:
    """For rollback of all tables: each table's newest version at or before `stamp`."""
    key = stamp_key(stamp)
    targets: dict[str, str] = {}
    for table in current:
        older = [v for v in versions(table) if stamp_key(v.stamp) <= key]
        if older:
            targets[table] = older[-1].stamp
    return targets

"""The store the pipeline and the commands use: on disk (dpo.store.local) or on object storage
(dpo.store.objects), chosen by `default_dir` (docs/storage.md), behind dpo.store.api.Store.

`store_session` is the one way to hold a store for writing: the local run lock always (it
guards the local working files), and for a store on object storage also the store lease (one
run at a time across machines, dpo.store.objects.lease), whose loss stops the next commit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from dpo.config import Paths, Settings
from dpo.store.api import Store
from dpo.store.local.lock import run_lock


def open_store_for(paths: Paths, settings: Settings, *,
                   clock: Callable[[], datetime] = datetime.now) -> Store:
    """The plant's store, to read (a writer uses store_session)."""
    if paths.store_url is None:
        from dpo.store.local.versions import VersionStore

        return VersionStore(paths, keep_history=settings.keep_history, clock=clock)
    from dpo.store.objects.client import follow_settings, open_store
    from dpo.store.objects.store import ObjectVersionStore

    follow_settings(settings)
    return ObjectVersionStore(paths, open_store(paths.store_url, settings.storage_options),
                              keep_history=settings.keep_history, clock=clock)


@contextmanager
def store_session(paths: Paths, settings: Settings, *,
                  clock: Callable[[], datetime] = datetime.now,
                  timeout: float | None = None) -> Iterator[Store]:
    """The store, held for one writer for the block (PipelineLocked, exit 4, if another has
    it)."""
    with run_lock(paths.output_dir, timeout=settings.lock_timeout if timeout is None
                  else timeout):
        if paths.store_url is None:
            yield open_store_for(paths, settings, clock=clock)
            return
        from dpo.store.objects.client import follow_settings, open_store
        from dpo.store.objects.lease import store_lease
        from dpo.store.objects.store import ObjectVersionStore

        follow_settings(settings)
        client = open_store(paths.store_url, settings.storage_options)
        with store_lease(client, ttl=settings.lease_ttl, local=_machine_folder(paths)) as lease:
            yield ObjectVersionStore(paths, client, keep_history=settings.keep_history,
                                     clock=clock, guard=lease.check)


def _machine_folder(paths: Paths) -> str:
    """This machine and working folder, for the lease (dpo.store.objects.lease.Lease.local):
    the host name and the OS's machine id (containers of one image share the id, cloned VMs
    the host name; both at once is a clone of a whole machine), and the folder."""
    import socket

    try:
        machine = Path("/etc/machine-id").read_text(encoding="utf-8").strip()
    except OSError:
        machine = ""
    return f"{socket.gethostname()}:{machine}:{paths.output_dir}"

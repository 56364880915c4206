"""The run lease on the store (dpo.store.objects.lease): two processes, one wins and the other gets
PipelineLocked naming the holder; a released lease and an expired one (its holder killed -9)
are taken over; renewal and release are conditional on the holder's own ETag. On a real
S3-compatible server (moto's on 127.0.0.1), and on MemoryStore where no server is needed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any

import pytest

from dpo.errors import PipelineLocked
from dpo.store.objects.client import open_store
from dpo.store.objects.lease import Lease, store_lease

HOLDER = """
import sys
from dpo.store.objects.lease import Lease
from dpo.store.objects.client import open_store
lease = Lease(open_store(sys.argv[1]), ttl=float(sys.argv[2]))
lease.acquire()
print("held", flush=True)
sys.stdin.readline()  # until the test says so (or kills this process)
lease.release()
print("released", flush=True)
"""


def start_holder(url: str, ttl: float) -> subprocess.Popen[str]:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, url, str(ttl)], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              env=dict(os.environ))
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    return holder


def acquire_when_free(lease: Lease, deadline: float) -> int:
    """Acquire, retrying while locked; the number of refusals before it worked."""
    refused = 0
    while True:
        try:
            lease.acquire()
            return refused
        except PipelineLocked:
            refused += 1
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_two_processes_one_holds_the_other_is_refused_until_release(s3_url: str) -> None:
    holder = start_holder(s3_url, ttl=60)
    try:
        with pytest.raises(PipelineLocked, match=f"pid {holder.pid}, started"):
            Lease(open_store(s3_url), ttl=60).acquire()
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "released"
    finally:
        holder.kill()
        holder.wait()
    mine = Lease(open_store(s3_url), ttl=60)
    mine.acquire()  # the released lease (a tombstone) is taken over at once
    seen = mine.read()
    assert seen is not None and seen.body["holder"]["pid"] == os.getpid()


def test_a_killed_holders_lease_is_taken_over_once_expired_by_the_servers_clock(
        s3_url: str) -> None:
    holder = start_holder(s3_url, ttl=3)
    os.kill(holder.pid, signal.SIGKILL)  # never renews nor releases
    holder.wait()
    mine = Lease(open_store(s3_url), ttl=60)
    refused = acquire_when_free(mine, deadline=time.monotonic() + 20)
    assert refused >= 1  # refused while the dead holder's lease still ran
    seen = mine.read()
    assert seen is not None and seen.body["holder"]["pid"] == os.getpid()
    assert seen.body["token"] == mine._token


@pytest.fixture(params=["memory", "s3"])
def store(request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        return open_store("memory://")
    return open_store(request.getfixturevalue("s3_url"))


def test_renewal_and_release_are_conditional_on_the_holders_etag(store: Any) -> None:
    first = Lease(store, ttl=0.5)
    first.acquire()
    tag = first.e_tag
    first.renew()
    assert first.e_tag != tag  # every body differs, so every ETag does
    # Expired (first stopped renewing): a second run takes it over by compare-and-swap...
    second = Lease(store, ttl=60)
    acquire_when_free(second, deadline=time.monotonic() + 10)
    # ...and the first run's renewal, conditional on its old ETag, finds it gone.
    with pytest.raises(PipelineLocked, match="taken over while this run held it"):
        first.renew()
    first.release()  # a no-op: it is second's lease now
    seen = second.read()
    assert seen is not None and seen.body["token"] == second._token
    assert not seen.body["released"]
    second.release()
    seen = second.read()
    assert seen is not None and seen.body["released"] and seen.body["token"] == second._token


def renewals(lease: Lease) -> int:
    return lease._count - 1  # every body counts; the first was the acquire's


def test_store_lease_renews_while_held_and_releases_at_the_end(store: Any) -> None:
    # S3's last-modified times are whole seconds: a ttl of a few seconds keeps the margins
    with store_lease(store, ttl=3) as lease:
        first_tag = lease.e_tag
        refused = 0
        end = time.monotonic() + 60
        while renewals(lease) < 4:  # every ttl/3: more than a whole ttl, renewed
            assert time.monotonic() < end, "the lease was not renewed"
            with pytest.raises(PipelineLocked):  # never expired meanwhile
                Lease(store, ttl=60).acquire()
            refused += 1
            time.sleep(0.1)
        lease.check()
        assert lease.e_tag != first_tag and refused >= 1
        with pytest.raises(PipelineLocked):
            Lease(store, ttl=60).acquire()
    after = Lease(store, ttl=60)
    after.acquire()  # released: free at once
    assert after.e_tag is not None


def test_a_lease_holds_for_its_whole_ttl_by_the_servers_clock(store: Any) -> None:
    """Not renewed, a lease is refused to others until its last_modified + ttl on the
    server's clock, and no longer: a refusal is seen in its last second, then a takeover.
    Each attempt is dated by the server's clock read just before it (a lower bound of the
    time the lease was judged at: the server's clock does not go back)."""
    ttl = 4.0  # S3's last-modified times are whole seconds: refusals late enough to tell
    holder = Lease(store, ttl=ttl)
    holder.acquire()
    seen = holder.read()
    assert seen is not None
    expires = seen.last_modified + timedelta(seconds=ttl)  # not Seen.expires: it is tested
    contender = Lease(store, ttl=60)
    latest_refusal = None
    end = time.monotonic() + 10 * ttl
    while True:
        assert time.monotonic() < end, "the lease was never taken over"
        before = contender.server_now()
        try:
            contender.acquire()
            break
        except PipelineLocked:
            latest_refusal = before
            time.sleep(0.1)
    taken = contender.read()

    assert latest_refusal is not None
    assert latest_refusal >= expires - timedelta(seconds=1)  # held into its last second
    assert taken is not None and taken.last_modified >= expires  # and taken over after it
    assert taken.body["token"] == contender._token

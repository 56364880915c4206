"""The store on object storage under real network faults (docs/storage.md, "Faults").

`dpo` runs as a real subprocess against tests/faultproxy.py, a proxy in front of the S3 server
that answers 503 SlowDown or 500, resets connections, drops answers the server applied, delays
and truncates, by a seeded policy. After every command a fault-free client checks the store
against what the command said (faulttools.Plant). `DPO_SOAK=1` runs every targeted fault and
many more seeds (`DPO_SOAK_SEEDS`, default 12), and writes the counts to `DPO_SOAK_REPORT` if
set (RELIABILITY.md).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest
from faultproxy import KINDS, FaultProxy, Rule
from faulttools import TABLE, Plant, view

pytestmark = pytest.mark.usefixtures("s3_server")

SOAK = os.environ.get("DPO_SOAK") == "1"
SEEDS = list(range(100, 100 + int(os.environ.get("DPO_SOAK_SEEDS", "12")))) if SOAK else [1]


def soak_report(name: str, plant: Plant, proxy: FaultProxy) -> None:
    """With DPO_SOAK_REPORT set, one JSON line per scenario: what RELIABILITY.md counts."""
    path = os.environ.get("DPO_SOAK_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"scenario": name, "commands": plant.tally.commands,
                                  "exits": dict(plant.tally.exits),
                                  "faults": dict(proxy.injected),
                                  "requests": proxy.requests}) + "\n")


@pytest.mark.parametrize("seed", SEEDS)
def test_random_faults_on_every_command_leave_the_truth_told(
        tmp_path: Path, s3_url: str, s3_server: str, seed: int) -> None:
    """Faults on 10-20% of all requests, through fresh, changed, added and no-change runs, a
    rollback, a run under its hold, a release and a run after it."""
    with FaultProxy(s3_server, seed=seed) as proxy:
        rate = 0.10 + (seed % 3) * 0.05
        proxy.set_rules(Rule(KINDS, rate=rate, delay=0.3))
        plant = Plant(tmp_path, s3_url, proxy)
        plant.run()  # fresh
        plant.change_a_file(4000 + seed)
        plant.run()
        plant.add_files()
        plant.run()
        plant.run()  # no change
        if plant.rollback():
            plant.run()  # under the hold
            plant.release()
            plant.run()
        proxy.set_rules()
        plant.settle()
        soak_report(f"random-{seed}", plant, proxy)
    assert sum(proxy.injected.values()) > 0, "no fault was injected"


AMBIGUOUS_WRITES = {
    "version": Rule(("drop",), method="PUT", key=r"/DataLoaderAgent/versions/", limit=1),
    "manifest": Rule(("drop",), method="PUT", key=r"/_dpo/manifests/\d{8}\.json$", limit=1),
    "manifest-reset": Rule(("reset",), method="PUT", key=r"/_dpo/manifests/\d{8}\.json$",
                           limit=1),
    "manifest-503": Rule(("slowdown",), method="PUT", key=r"/_dpo/manifests/\d{8}\.json$",
                         limit=1),
    "annotations": Rule(("drop",), method="PUT", key=r"/path_annotations\.json$", limit=1),
    "reports": Rule(("drop",), method="PUT", key=r"/DataPipelineOrchestrator/reports/",
                    limit=1),
    "lease-acquire": Rule(("drop",), method="PUT", key=r"/_dpo/lease\.json$", limit=1),
    "lease-release": Rule(("drop",), method="PUT", key=r"/_dpo/lease\.json$",
                          body=rb'"released": true', limit=1),
    "lease-release-503": Rule(("internal",), method="PUT", key=r"/_dpo/lease\.json$",
                              body=rb'"released": true', limit=12),
    # past the retry budget (BUDGET below): after the commit, a warning, never a failed run
    "annotations-past-budget": Rule(("slowdown",), method="PUT",
                                    key=r"/path_annotations\.json$"),
    "lease-release-past-budget": Rule(("slowdown",), method="PUT", key=r"/_dpo/lease\.json$",
                                      body=rb'"released": true'),
    "manifest-past-budget": Rule(("slowdown",), method="PUT",
                                 key=r"/_dpo/manifests/\d{8}\.json$"),
    "retention-listing": Rule(("truncate",), method="GET", key=r"list-type=2.*versions/",
                              limit=1),
    "manifest-listing": Rule(("truncate",), method="GET", key=r"list-type=2.*_dpo/manifests/",
                             limit=1),
}


# In `make test` (bounded): the commit's and the lease's own writes, a cut-off listing, and a
# write failing past its budget after the commit; the soak runs every one.
IN_SUITE = ("manifest", "manifest-reset", "lease-release", "retention-listing",
            "annotations-past-budget")


@pytest.mark.parametrize("write", sorted(AMBIGUOUS_WRITES) if SOAK else IN_SUITE)
def test_an_ambiguous_fault_on_each_step_of_a_publish(
        tmp_path: Path, s3_url: str, s3_server: str, write: str) -> None:
    """The server applied the request (or did not) and the client never heard: the run still
    says exactly what the store holds, on a fresh store and on a change."""
    with FaultProxy(s3_server, seed=7) as proxy:
        plant = Plant(tmp_path, s3_url, proxy, lease_ttl="60",
                      budget="2" if write.endswith("past-budget") else None)
        proxy.set_rules(AMBIGUOUS_WRITES[write])
        plant.run()
        proxy.set_rules(AMBIGUOUS_WRITES[write])  # a fresh limit for the second run
        plant.change_a_file(7777)
        plant.run()
        taken = sum(proxy.injected.values())
        proxy.set_rules()
        plant.settle()
        soak_report(f"ambiguous-{write}", plant, proxy)
    assert taken > 0, f"the {write} fault was never injected"


def test_a_lost_lease_renewal_after_the_commit_does_not_fail_the_run(
        tmp_path: Path, s3_url: str, s3_server: str) -> None:
    """The annotations write is held for longer than a renewal period, and the renewal's
    answer is lost (the server applied it): the run committed and says so (exit 0, not 4)."""
    with FaultProxy(s3_server, seed=3) as proxy:
        plant = Plant(tmp_path, s3_url, proxy, lease_ttl="5")
        proxy.set_rules(
            Rule(("delay",), method="PUT", key=r"/path_annotations\.json$", delay=4.0, limit=1),
            Rule(("drop",), method="PUT", key=r"/_dpo/lease\.json$",
                 body=rb'"released": false', skip=1, limit=1))
        plant.run()
        assert proxy.injected["drop"] == 1 and proxy.injected["delay"] == 1, proxy.log
        proxy.set_rules()
        plant.settle()
        soak_report("lost-renewal", plant, proxy)


@pytest.mark.parametrize("storm", ["version-reads", "commit"] if SOAK else ["commit"])
def test_a_rollback_that_fails_under_503s_changes_neither_manifest_nor_holds(
        tmp_path: Path, s3_url: str, s3_server: str, storm: str) -> None:
    with FaultProxy(s3_server, seed=5) as proxy:
        plant = Plant(tmp_path, s3_url, proxy, lease_ttl="60", budget="2")
        plant.run(faults=False)
        plant.change_a_file(31337)
        plant.run(faults=False)
        before = view(s3_url)
        # every read of a version object, or every put of a manifest, answers 503 past the
        # retry budget (the holds are written just before the commit: they must be put back)
        proxy.set_rules(Rule(("slowdown",), method="GET", key=r"/DataLoaderAgent/versions/")
                        if storm == "version-reads" else
                        Rule(("slowdown",), method="PUT", key=r"/_dpo/manifests/"))
        assert plant.rollback()
        assert proxy.injected["slowdown"] > 0
        after = view(s3_url)
        assert after.head() == before.head() and after.holds == before.holds
        assert TABLE not in plant.held
        proxy.set_rules()
        plant.run()  # the next no-change run publishes nothing new
        assert view(s3_url).manifests == after.manifests
        plant.settle()
        soak_report(f"rollback-under-503s-{storm}", plant, proxy)


def test_faults_are_counted_by_kind(s3_server: str) -> None:
    """The proxy's own check: each kind is taken and counted (what the suite's counts rely on)."""
    import http.client

    with FaultProxy(s3_server, seed=0) as proxy:
        host, port = proxy.url.removeprefix("http://").split(":")
        for kind in KINDS:
            proxy.set_rules(Rule((kind,), key=r"/no-such-bucket", delay=0.01))
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
            try:
                conn.request("GET", "/no-such-bucket/some-key")
                conn.getresponse().read()
            except (ConnectionError, http.client.HTTPException):
                pass
            finally:
                conn.close()
    assert proxy.injected == Counter({k: 1 for k in KINDS})

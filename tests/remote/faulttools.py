"""The checks of the fault-injection suite (test_s3_faults.py): a plant whose store is on the S3
server behind the fault proxy, commands run as real `dpo` subprocesses, and after each one a
fault-free client's view of the store against what the command said."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import obstore
from faultproxy import FaultProxy
from pipelinetools import dpo, make_plant, run, set_cell
from storetools import published_hashes

from dpo.store.objects.client import open_store
from dpo.tables.parquet import read_verified_bytes

ALLOWED_EXITS = {0, 1, 3, 4}
TABLE = "purchaseOrders"  # the table rolled back and released


@dataclass(frozen=True)
class View:
    """The store as a fault-free client reads it."""

    objects: dict[str, bytes]

    @property
    def manifests(self) -> dict[int, bytes]:
        return {int(k[-13:-5]): v for k, v in self.objects.items()
                if k.startswith("_dpo/manifests/")}

    def head(self) -> tuple[int, bytes] | None:
        found = self.manifests
        return (max(found), found[max(found)]) if found else None

    def head_tables(self) -> dict[str, dict[str, Any]]:
        head = self.head()
        return dict(json.loads(head[1])["tables"]) if head else {}

    def head_hashes(self) -> dict[str, str]:
        return {t: e["content_hash"] for t, e in self.head_tables().items()}

    @property
    def holds(self) -> bytes | None:
        return self.objects.get("DataLoaderAgent/holds.json")

    def versions(self, table: str) -> list[dict[str, Any]]:
        """The distinct versions of `table` over the kept manifests, oldest first."""
        seen: dict[str, dict[str, Any]] = {}
        for _, body in sorted(self.manifests.items()):
            entry = json.loads(body)["tables"].get(table)
            if entry:
                seen.setdefault(entry["key"], entry)
        return list(seen.values())


def view(url: str) -> View:
    store = open_store(url)
    return View({meta["path"]: bytes(obstore.get(store, meta["path"]).bytes())
                 for chunk in obstore.list(store) for meta in chunk})


@dataclass
class Tally:
    """What a scenario did: commands run, their exits, the faults the proxy injected."""

    commands: int = 0
    exits: Counter[int] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)


class Plant:
    """A plant storing on `url` through `proxy`, and its reference twin storing on a local disk
    (the same sources, run without faults): what a fault-free run publishes."""

    def __init__(self, tmp: Path, url: str, proxy: FaultProxy | None, *,
                 lease_ttl: str = "5", budget: str | None = None) -> None:
        self.root = make_plant(tmp / "plant").root
        self.reference = make_plant(tmp / "reference").root
        self.url = url
        self.proxy = proxy
        self.lease_ttl = lease_ttl
        self.budget = budget  # storage_retry_budget of the runs under faults (None: default)
        self.held: dict[str, str] = {}  # table -> the content hash a hold keeps it at
        self.tally = Tally()
        self._expected: dict[str, str] | None = None

    # -- the sources -------------------------------------------------------------------------
    def change_a_file(self, value: int) -> None:
        for root in (self.root, self.reference):
            po = sorted((root / "database/dynamicDatabase").rglob("purchaseOrder*.xlsx"))[0]
            set_cell(po, 0, "itemQuantity", value)
        self._expected = None

    def add_files(self) -> None:
        for root in (self.root, self.reference):
            make_plant(root, months=3)  # the third month: a report and an order file more
        self._expected = None

    def expected(self) -> dict[str, str]:
        """What a fault-free run publishes from the sources as they are now."""
        if self._expected is None:
            assert run(self.reference)["overall_status"] == "success"
            self._expected = published_hashes(self.reference)
        return {**self._expected, **self.held}

    # -- commands ----------------------------------------------------------------------------
    def env(self, faults: bool) -> dict[str, str]:
        endpoint = self.proxy.url if faults and self.proxy else os.environ["AWS_ENDPOINT_URL"]
        budget = {"DPO_STORAGE_RETRY_BUDGET": self.budget} if faults and self.budget else {}
        return {"AWS_ENDPOINT_URL": endpoint, "DPO_LEASE_TTL": self.lease_ttl, **budget}

    def dpo(self, *args: str, faults: bool = True) -> Any:
        before = Counter(self.proxy.injected) if self.proxy else Counter()
        done = dpo(*args, "--root", self.root, "--default-dir", self.url,
                   env=self.env(faults), timeout=300)
        self.tally.commands += 1
        self.tally.exits[done.returncode] += 1
        if self.proxy:
            self.tally.faults.update(Counter(self.proxy.injected) - before)
        said = f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        assert done.returncode in ALLOWED_EXITS, said
        assert "Traceback" not in done.stdout + done.stderr, said
        return done

    def run(self, *, faults: bool = True) -> View:
        """`dpo run`; then the store holds what the run said: a success published what the
        sources give, a failure left the newest manifest as it was; the ledger agrees."""
        before = view(self.url)
        done = self.dpo("run", "--json", faults=faults)
        after = view(self.url)
        check_store(after)
        said = f"exit {done.returncode}: {done.stderr[-2000:]}"
        if done.returncode == 0:
            assert after.head_hashes() == self.expected(), said
        elif done.returncode in (1, 4):
            assert after.head() == before.head(), said
        self.check_ledger(done.returncode)
        return after

    def check_ledger(self, code: int) -> None:
        history = dpo("history", "--json", "--root", self.root, "--default-dir", self.url,
                      env=self.env(False))
        if code == 4 and history.returncode != 0:
            return  # refused before anything was recorded (another holder)
        assert history.returncode == 0, history.stderr
        runs = [r for r in json.loads(history.stdout) if r["kind"] == "run"]
        assert not [r for r in runs if "running" in (r["state"], r["overall_status"])], runs[:3]
        status = {0: "success", 1: "failed", 3: "partial_success"}.get(code)
        if status and runs:
            assert runs[0]["overall_status"] == status, (code, runs[0])

    def rollback(self) -> bool:
        """`dpo rollback TABLE --to <an older version>`: a success points the table at it and
        holds it; a failure changes neither the newest manifest nor the holds. False when the
        table has no older version to go to."""
        before = view(self.url)
        current = before.head_tables().get(TABLE)
        older = [v for v in before.versions(TABLE) if current and v["key"] != current["key"]]
        if not older:
            return False
        target = older[0]
        done = self.dpo("rollback", TABLE, "--to", target["version"])
        after = view(self.url)
        check_store(after)
        if done.returncode == 0:
            assert after.head_tables()[TABLE]["key"] == target["key"]
            assert TABLE in json.loads(after.holds or b"{}"), after.holds
            self.held[TABLE] = target["content_hash"]
        else:
            assert after.head() == before.head(), done.stderr[-2000:]
            assert after.holds == before.holds, done.stderr[-2000:]
        return True

    def release(self) -> None:
        before = view(self.url)
        done = self.dpo("rollback", TABLE, "--release")
        after = view(self.url)
        check_store(after)
        if done.returncode == 0:
            assert TABLE not in json.loads(after.holds or b"{}")
            self.held.pop(TABLE, None)
        else:
            assert after.holds == before.holds, done.stderr[-2000:]

    def settle(self) -> None:
        """A fault-free run publishes what the sources give, a no-change rerun publishes
        nothing, and nothing temporary is left on the store."""
        self.run(faults=False)
        settled = view(self.url)
        again = self.run(faults=False)
        assert again.manifests == settled.manifests
        check_store(again, final=True)

    def copy_for_another_machine(self, tmp: Path) -> Path:
        other = tmp / "machine-b"
        shutil.copytree(self.root / "database", other / "database")
        return other


def check_store(found: View, *, final: bool = False) -> None:
    """What every reader may rely on at any time: the annotations parse and name objects that
    exist, and every version a kept manifest lists exists and reads with its hash. `final`:
    nothing a run in flight or a crash leaves (unreferenced versions, task segments)."""
    raw = found.objects.get("DataLoaderAgent/newest/path_annotations.json")
    if raw is not None:
        annotations = json.loads(raw)
        assert isinstance(annotations, dict)
        missing = [k for k in annotations.values() if k not in found.objects]
        assert not missing, f"annotations name missing objects {missing}"
    referenced: set[str] = set()
    for _, body in sorted(found.manifests.items()):
        for entry in json.loads(body)["tables"].values():
            if entry["key"] in referenced:
                continue
            referenced.add(entry["key"])
            assert entry["key"] in found.objects, f"a manifest lists missing {entry['key']}"
            read_verified_bytes(found.objects[entry["key"]], entry["key"],
                                entry["content_hash"])
    if final:
        versions = {k for k in found.objects if k.startswith("DataLoaderAgent/versions/")}
        assert versions == referenced, f"left behind: {versions - referenced}"
        assert not [k for k in found.objects if k.startswith("_dpo/tasks/")]
        head = found.head()
        assert head is not None
        annotations = json.loads(found.objects["DataLoaderAgent/newest/path_annotations.json"])
        assert annotations == {t: e["key"] for t, e in json.loads(head[1])["tables"].items()}

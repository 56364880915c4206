"""Issue #19, item 2: an operator who may read the plant but not write it sees everything.

A real run writes the plant; then `chmod -R a-w` makes it read-only and the read commands run
as real `dpo` subprocesses without the capabilities that let root ignore permissions (as root:
`setpriv` drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH; as another user: as is).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import skip_or_fail
from pipelinetools import LEDGER, dpo, every_file, make_plant

UNPRIVILEGED = ["--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search"]


def unprivileged_prefix() -> list[str]:
    """What makes a command unable to bypass file permissions (nothing for a non-root user)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        skip_or_fail("setpriv (util-linux) is not installed: cannot drop root's permission bypass")
    probe = subprocess.run([setpriv, *UNPRIVILEGED, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        skip_or_fail(f"setpriv cannot drop capabilities here: {probe.stderr.strip()}")
    return [str(setpriv), *UNPRIVILEGED]


def read_only_dpo(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """`dpo ARGS` as a real subprocess that cannot write what its permissions forbid."""
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("COLUMNS", None)
    return subprocess.run([*unprivileged_prefix(), sys.executable, "-m", "dpo.cli",
                           *map(str, args)], env=env, capture_output=True, text=True, timeout=60)


def chmod_tree(root: Path, *, writable: bool) -> None:
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        bits = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
        path.chmod(mode | stat.S_IWUSR if writable else mode & ~bits)


@pytest.fixture
def read_only_plant(tmp_path: Path) -> Iterator[Path]:
    """A plant after one real run, then made read-only for everyone (`chmod -R a-w`)."""
    root = tmp_path / "plant"
    make_plant(root, months=1, rows_per_month=20)
    done = dpo("run", "--root", root)
    assert done.returncode == 0, done.stderr[-2000:]
    chmod_tree(root, writable=False)
    yield root
    chmod_tree(root, writable=True)  # let pytest clean it up


def contents(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in every_file(root)}


def test_read_commands_work_on_a_plant_the_operator_may_only_read(
        read_only_plant: Path, tmp_path: Path) -> None:
    root = read_only_plant
    before = contents(root)

    health = read_only_dpo("health", "--root", root, "--json")
    history = read_only_dpo("history", "--root", root, "--json")
    metrics = read_only_dpo("metrics", "--root", root, "--json")
    prometheus = read_only_dpo("metrics", "--root", root, "--prometheus")
    plain = {cmd: read_only_dpo(cmd, "--root", root) for cmd in ("health", "history", "metrics")}
    page = tmp_path / "elsewhere" / "dashboard.html"
    page.parent.mkdir()
    dashboard = read_only_dpo("dashboard", "--root", root, "--out", page)
    default_dashboard = read_only_dpo("dashboard", "--root", root)

    for done in (health, history, metrics, prometheus, dashboard, default_dashboard,
                 *plain.values()):
        assert "Traceback" not in done.stderr and "readonly database" not in done.stderr, \
            done.stderr[-2000:]
    report = json.loads(health.stdout)
    assert health.returncode == 1  # degraded: this user cannot run the pipeline
    assert report["write_permission"] is False
    assert report["last_run"]["status"] == "success"
    assert report["reasons"] == [f"no write permission on {root / 'agents' / 'shared_db'}"]
    assert "writable: false" in plain["health"].stdout
    assert history.returncode == 0, history.stderr
    assert [r["overall_status"] for r in json.loads(history.stdout)] == ["success"]
    assert plain["history"].returncode == 0 and "success" in plain["history"].stdout
    assert metrics.returncode == 0 and json.loads(metrics.stdout)["window"]["runs"] == 1
    assert prometheus.returncode == 0 and "dpo_runs{" in prometheus.stdout
    assert plain["metrics"].returncode == 0, plain["metrics"].stderr
    assert dashboard.returncode == 0 and "<html" in page.read_text()
    # The plant's own dashboard cannot be replaced: one line that says what to do instead.
    assert default_dashboard.returncode == 1
    assert default_dashboard.stderr.count("\n") == 1 and "--out FILE" in default_dashboard.stderr
    # Nothing was written: no journal, no migration, no -wal/-shm beside the ledger.
    assert contents(root) == before
    assert sorted(p.name for p in (root / LEDGER).parent.iterdir()
                  if p.name.startswith("runs.sqlite")) == ["runs.sqlite"]

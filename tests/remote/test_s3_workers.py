"""A Dask cluster whose workers cannot see the run's disk (each runs in its own mount namespace,
with an empty tmpfs over the test's folder: as on another machine), sources and store on a
real S3 server (moto's): the workers read the sources from the bucket and put their segments
there (collect.cluster), and the tables published equal a local run's on the same files."""

from __future__ import annotations

import logging
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import skip_or_fail
from pipelinetools import Clock, make_plant, run
from uploadtools import upload_plant_inputs


def import_distributed() -> Any:
    """dask.distributed, or a skip on a machine without the dask extra (a failure under CI:
    importorskip would skip there too, silently)."""
    try:
        import distributed
    except ImportError:
        skip_or_fail("these tests need dask.distributed: pip install 'dpo[dask]'")
    return distributed


@pytest.fixture
def blind_cluster(s3_url: str, tmp_path: Path) -> Iterator[str]:
    """A scheduler here and two `dask worker` processes that see an empty folder where this
    test's files are (`unshare --mount` + a tmpfs over tmp_path). The AWS_* variables the
    s3_url fixture set are theirs too: a worker uses its own credentials."""
    distributed = import_distributed()
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "mount", "-t",
                            "tmpfs", "none", str(tmp_path)], capture_output=True)
    if probe.returncode != 0:
        skip_or_fail("workers blind to this disk need `unshare --mount` (root, CAP_SYS_ADMIN)")
    cluster = distributed.LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=None)
    workers: list[subprocess.Popen[bytes]] = []
    home = Path(tempfile.mkdtemp(prefix="dpo-workers-"))
    worker = shlex.join([sys.executable, "-m", "distributed.cli.dask_worker",
                         cluster.scheduler_address, "--nthreads", "1", "--no-dashboard",
                         "--no-nanny", "--local-directory", str(home)])
    try:
        for _ in range(2):
            workers.append(subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                 f"mount -t tmpfs none {shlex.quote(str(tmp_path))} && exec {worker}"],
                cwd=home, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with distributed.Client(cluster.scheduler_address) as client:
            client.wait_for_workers(2, timeout=90)
        yield str(cluster.scheduler_address)
    finally:
        for process in workers:
            process.terminate()
            process.wait(timeout=30)
        cluster.close()
        shutil.rmtree(home, ignore_errors=True)


def hashes(result: dict[str, Any]) -> dict[str, str]:
    return {t["table"]: t["content_hash"] for t in result["loader_result"]["details"]}


def test_workers_that_cannot_see_this_disk_read_sources_from_s3_and_put_segments_there(
        tmp_path: Path, s3_url: str, blind_cluster: str,
        caplog: pytest.LogCaptureFixture) -> None:
    plant = make_plant(tmp_path / "local", months=3)
    clock = Clock()
    expected = run(plant.root, clock=clock)
    inputs = upload_plant_inputs(plant.root / "database", f"{s3_url}/inputs")
    machine = tmp_path / "machine"
    machine.mkdir()
    caplog.set_level(logging.INFO, logger="werkzeug")

    result = run(machine, clock=clock, executor="dask", scheduler=blind_cluster,
                 default_dir=f"{s3_url}/plant", **inputs)

    assert result["overall_status"] == "success", result
    assert hashes(result) == hashes(expected)
    requests = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
    source_gets = [m for m in requests
                   if re.search(r'"GET /[^?" ]+/inputs/dynamicDatabase/[^?" ]+\.xls[bx] ', m)]
    sources = sorted(p.name for p in (plant.root / "database/dynamicDatabase").rglob("*.xls*"))
    # each source fetched twice: by this machine's mirror, and by the worker that read it
    assert len(source_gets) == 2 * len(sources), source_gets
    segment_puts = [m for m in requests if re.search(r'"PUT /[^ ]+/plant/_dpo/tasks/', m)]
    assert len(segment_puts) >= 2  # a segment per batch (each of its files' rows), per table
    from test_s3_plant import objects

    assert objects(f"{s3_url}/plant", "_dpo/tasks/") == {}  # the run deleted its segments

"""Object storage vs local disk: whole `dpo run` processes, the store (and the inputs) on a local
S3-compatible server (moto's ThreadedMotoServer, started here on 127.0.0.1).

    .venv/bin/python bench/remote.py [--repeat 5] [--out bench/out] [--plants plant,real]

Per plant (bench/run.py makes them: `plant` the demo generator's 120 months, `real` the
sample plant's own workbooks copied under many dates), medians of --repeat runs:
  local_fresh     `dpo run`, every path on the local disk, an empty output folder
  local_nochange  `dpo run` again, every path local, nothing changed (what the remote one adds to)
  s3_store_fresh  `default_dir` on s3:// (the versioned store remote), sources local; a new
                  store prefix and a new local working folder each run
  s3_all_fresh    every path on s3:// (sources, schema, master files, store): a fresh machine,
                  so the inputs are downloaded too
  s3_nochange     every path on s3://, nothing changed since the last run: listings and ETags,
                  no object read (tests/remote/test_s3_plant.py pins the "no object read")
Ratios are to local_fresh, measured in this same session. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent / "tests"))  # tests/uploadtools.py: the inputs' uploader
from run import DPO, make_plants, make_real_plant, timed  # noqa: E402 - bench/run.py beside this

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
               "AWS_REGION": "us-east-1"}


def start_server() -> tuple[Any, str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def make_bucket(endpoint: str) -> str:
    import boto3

    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench",
                 aws_secret_access_key="bench", region_name="us-east-1").create_bucket(
        Bucket=bucket)
    return bucket


def run_seconds(root: Path, env: dict[str, str]) -> float:
    seconds, _, out = timed([*DPO, "run", "--root", str(root), "--no-notify", "--json"], env)
    assert json.loads(out)["overall_status"] == "success", out[-2000:]
    return seconds


def measure_plant(plant: Path, endpoint: str, repeat: int) -> dict[str, float]:
    bucket = make_bucket(endpoint)
    from uploadtools import upload_plant_inputs

    named = upload_plant_inputs(plant / "database", f"s3://{bucket}/inputs")
    inputs = {f"DPO_{k.upper()}": v for k, v in named.items()}
    work = plant / ".dpo-work"
    found: dict[str, list[float]] = {k: [] for k in ("local_fresh", "local_nochange",
                                                      "s3_store_fresh", "s3_all_fresh",
                                                      "s3_nochange")}
    for _ in range(repeat):  # interleaved: a drift of the machine hits every figure alike
        shutil.rmtree(plant / "agents", ignore_errors=True)
        found["local_fresh"].append(run_seconds(plant, {}))
        found["local_nochange"].append(run_seconds(plant, {}))
        shutil.rmtree(work, ignore_errors=True)
        store = {"DPO_DEFAULT_DIR": f"s3://{bucket}/store-{uuid.uuid4().hex[:8]}"}
        found["s3_store_fresh"].append(run_seconds(plant, store))
        shutil.rmtree(work, ignore_errors=True)
        every = {**inputs, "DPO_DEFAULT_DIR": f"s3://{bucket}/all-{uuid.uuid4().hex[:8]}"}
        found["s3_all_fresh"].append(run_seconds(plant, every))
        found["s3_nochange"].append(run_seconds(plant, every))
    shutil.rmtree(work, ignore_errors=True)
    return {k: statistics.median(v) for k, v in found.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "out")
    parser.add_argument("--plants", default="plant,real")
    args = parser.parse_args()
    plant, _ = make_plants(args.out)
    plants = {"plant": plant, "real": make_real_plant(args.out)}
    server, endpoint = start_server()
    os.environ.update({**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint})
    try:
        for name in args.plants.split(","):
            root = plants[name]
            if root is None:
                print(f"{name}: no samples beside the checkout; skipped")
                continue
            figures = measure_plant(root, endpoint, args.repeat)
            local = figures["local_fresh"]
            for key, seconds in figures.items():
                print(f"{name:<6} {key:<15} {seconds:7.3f} s  {seconds / local:5.2f}x local fresh")
    finally:
        server.stop()


if __name__ == "__main__":
    main()

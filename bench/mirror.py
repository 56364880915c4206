"""Mirroring remote sources (dpo.inputs.mirror.mirror_prefix) from a local S3 server (moto's
ThreadedMotoServer on 127.0.0.1): 120 real sample workbooks (copies of ../shared/samples'
monthly report and purchase orders under many dates, 60 + 60 in two source folders, as a
plant lays them out), mirrored into a fresh local folder (everything downloaded), then again
with nothing changed (one listing per folder, nothing downloaded), then with one object
replaced (one download).

    .venv/bin/python bench/mirror.py [--repeat 7] [--samples ../shared/samples/database]

Medians of --repeat; each figure is both folders' mirror_prefix calls together. Nothing here
is asserted anywhere; the sanity checks below only stop a wrong measurement.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import obstore

from dpo.inputs.mirror import Mirrored, mirror_prefix
from dpo.store.objects.client import open_store

FOLDERS = {  # source folder -> (sample files, name of the copy for the i-th date)
    "monthlyReports_history": (["monthlyReports_201811.xlsb"],
                               lambda i: f"monthlyReports_{2000 + i // 12}{i % 12 + 1:02d}.xlsb"),
    "purchaseOrders_history": (["purchaseOrder_181020.xlsx", "purchaseOrder_181101.xlsx"],
                               lambda i: f"purchaseOrder_{10 + i // 12:02d}{i % 12 + 1:02d}01.xlsx"),
}
PER_FOLDER = 60


def upload(store: Any, samples: Path) -> int:
    total = 0
    for folder, (files, name_of) in FOLDERS.items():
        blobs = [(samples / "dynamicDatabase" / folder / f).read_bytes() for f in files]
        for i in range(PER_FOLDER):
            data = blobs[i % len(blobs)]
            obstore.put(store, f"sources/{folder}/{name_of(i)}", data)
            total += len(data)
    return total


def mirror_all(store: Any, local: Path) -> list[Mirrored]:
    return [mirror_prefix(store, f"sources/{folder}", local / folder) for folder in FOLDERS]


def timed(action: Callable[[], list[Mirrored]]) -> tuple[float, list[Mirrored]]:
    started = time.perf_counter()
    done = action()
    return time.perf_counter() - started, done


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--samples", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared/samples/database")
    args = parser.parse_args()

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update({"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_REGION": "us-east-1",
                       "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"})
    try:
        import boto3

        bucket = f"dpo-bench-{uuid.uuid4().hex[:12]}"
        boto3.client("s3").create_bucket(Bucket=bucket)
        store = open_store(f"s3://{bucket}")
        size = upload(store, args.samples)
        first, noop, one = [], [], []
        for n in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                local = Path(tmp)
                took, done = timed(partial(mirror_all, store, local))
                assert sum(len(m.downloaded) for m in done) == 2 * PER_FOLDER
                first.append(took)
                took, done = timed(partial(mirror_all, store, local))
                assert all(m.downloaded == () and m.unchanged == PER_FOLDER for m in done)
                noop.append(took)
                # one report replaced (its last bytes changed: a new ETag, the same size)
                key = "sources/monthlyReports_history/monthlyReports_200001.xlsb"
                data = bytes(obstore.get(store, key).bytes())
                obstore.put(store, key, data[:len(data) - len(str(n))] + str(n).encode())
                took, done = timed(partial(mirror_all, store, local))
                assert [len(m.downloaded) for m in done] == [1, 0]
                one.append(took)
        print(f"120 workbooks ({size / 1e6:.1f} MB) in 2 folders on moto (127.0.0.1), "
              f"medians of {args.repeat}:")
        for label, values in (("first mirror (120 GETs)", first),
                              ("no-op mirror (2 listings, 0 GETs)", noop),
                              ("one object replaced (2 listings, 1 GET)", one)):
            print(f"  {label:42s} {statistics.median(values) * 1000:8.1f} ms"
                  f"   (min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f})")
    finally:
        server.stop()


if __name__ == "__main__":
    main()

"""`dpo serve` figures: the warm run after one changed file vs the floor, memory over 200 runs,
idle CPU.

    .venv/bin/python bench/serve.py [--repeat 7] [--runs 200] [--idle 60] [--out bench/out]

On bench/run.py's plant (120 monthly .xlsb x 700 rows + 120 PO .xlsx + 6 master tables),
copied to `<out>/serve-plant` so the service starts on an empty output folder:

  floor            bench/floor.py (median of --repeat), as in bench/run.py
  warm_onechanged  a service started with --no-watch: one monthly report rewritten, then
                   POST /run; seconds from the POST to the replaced path_annotations.json
                   (the published pointer), median of --repeat
  cli_onechanged   the same change, then `dpo run` as a fresh process (bench/run.py's figure),
                   median of --repeat, same session
  rss_mb           the service's VmRSS when idle after its 10th, 25th, 50th, 100th, 150th and
                   --runs-th run (each run after one changed monthly report)
  idle_cpu         a second service, watching the plant with a nightly --schedule, left alone
                   for --idle seconds after its start run: CPU seconds / wall seconds
  start            seconds from starting `dpo serve` until /health answers; RSS after its start run
  imports          what a fresh interpreter pays to import http.server, and all the modules only
                   `dpo serve` imports (the HTTP server, prometheus_client, watchfiles, cronsim)
Nothing here is asserted; it prints and writes <out>/serve.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import PYTHON, make_plants, median_of, timed  # noqa: E402 - bench/run.py beside this

TOKEN = "bench-token-0123456789abcdef"
ANNOTATIONS = Path("agents/shared_db/DataLoaderAgent/newest/path_annotations.json")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    def __init__(self, root: Path, log: Path, *args: str) -> None:
        self.port = free_port()
        self.started = time.perf_counter()
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [PYTHON, "-m", "dpo.cli", "serve", "--root", str(root), "--listen",
                 f"127.0.0.1:{self.port}", "--no-notify", *args],
                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "DPO_SERVE_TOKEN": TOKEN})
        self.start_seconds = self.wait(self.answers, "/health") - self.started

    def call(self, path: str, method: str = "GET") -> Any:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method,
                                     data=b"" if method == "POST" else None,
                                     headers={"Authorization": f"Bearer {TOKEN}"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return json.loads(err.read())

    def answers(self) -> bool:
        try:
            self.call("/health")
        except (urllib.error.URLError, ConnectionError):
            return False
        return True

    def wait(self, condition: Callable[[], Any], what: str, poll: float = 0.05) -> float:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dpo serve exited while waiting for {what}")
            if condition():
                return time.perf_counter()
            time.sleep(poll)
        raise RuntimeError(f"timed out waiting for {what}")

    def idle_after(self, runs: int) -> None:
        def idle() -> bool:
            state = self.call("/health")["service"]
            return bool(state["runs_completed"] >= runs and not state["run_in_progress"]
                        and not state["next_run"]["follow_up_pending"])
        self.wait(idle, f"run {runs}")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


SERVE_ONLY = ("http.server", "prometheus_client", "prometheus_client.parser", "watchfiles",
              "cronsim")
_IMPORT_PROBE = """
import json, sys, time
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
before, started = rss(), time.perf_counter()
for name in sys.argv[1:]:
    __import__(name)
print(json.dumps({"seconds": time.perf_counter() - started, "rss_mb": rss() - before}))
"""


def import_cost(repeat: int, modules: tuple[str, ...]) -> dict[str, float]:
    """What importing `modules` costs a fresh interpreter (median seconds, RSS added)."""
    runs = [json.loads(subprocess.run([PYTHON, "-c", _IMPORT_PROBE, *modules], check=True,
                                      capture_output=True, text=True).stdout)
            for _ in range(repeat)]
    return {"seconds": statistics.median(r["seconds"] for r in runs),
            "rss_mb": statistics.median(r["rss_mb"] for r in runs)}


def warm_run(service: Service, root: Path, change: Callable[[], None], runs: int) -> float:
    """Change one report, POST /run; seconds until the annotations file is replaced."""
    change()
    pointer = root / ANNOTATIONS
    before = pointer.stat().st_mtime_ns
    started = time.perf_counter()
    service.call("/run", "POST")
    while pointer.stat().st_mtime_ns == before:
        time.sleep(0.002)
    seconds = time.perf_counter() - started
    service.idle_after(runs)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=HERE / "out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    timed([PYTHON, "-c", "pass"])  # start bench/run.py's spawner while this process is small
    subprocess.run([PYTHON, "-m", "compileall", "-q", str(HERE.parent / "src")], check=True)
    plant, _ = make_plants(args.out)
    root = args.out / "serve-plant"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(plant / "database", root / "database")
    months = sorted((root / "database/dynamicDatabase/monthlyReports_history").glob("*.xlsb"))
    counter = iter(range(100_000))

    def change_one() -> None:
        from dpo.demo.plant import write_monthly_report

        write_monthly_report(months[-1], month="2028-10", n_rows=700, seed=100 + next(counter))

    results: dict[str, Any] = {"floor": median_of(args.repeat, [
        PYTHON, str(HERE / "floor.py"), str(plant), str(args.out / "floor")])}
    results["imports"] = {"http.server": import_cost(args.repeat, ("http.server",)),
                          "serve_only": import_cost(args.repeat, SERVE_ONLY)}
    service = Service(root, args.out / "serve-bench.log", "--no-watch")
    results["start"] = {"seconds": service.start_seconds}
    service.idle_after(1)
    results["start"]["rss_mb_after_first_run"] = service.rss_mb()
    done = 1
    warm = []
    for _ in range(args.repeat):
        done += 1
        warm.append(warm_run(service, root, change_one, done))
    results["warm_onechanged"] = {"seconds": statistics.median(warm), "all": warm}
    results["cli_onechanged"] = median_of(args.repeat, [
        PYTHON, "-m", "dpo.cli", "run", "--root", str(root), "--no-notify"], before=change_one)
    rss: dict[int, float] = {}
    while done < args.runs:
        done += 1
        warm_run(service, root, change_one, done)
        if done in (10, 25, 50, 100, 150, args.runs):
            rss[done] = service.rss_mb()
    results["rss_mb"] = rss
    service.stop()

    idle = Service(root, args.out / "serve-idle.log", "--schedule", "30 2 * * *")
    idle.idle_after(1)
    time.sleep(2)  # let the start run's after-work (reports, dashboard) end
    cpu, wall = idle.cpu_seconds(), time.perf_counter()
    time.sleep(args.idle)
    results["idle_cpu"] = {"percent_of_one_core": 100 * (idle.cpu_seconds() - cpu)
                                                  / (time.perf_counter() - wall),
                           "seconds": args.idle, "rss_mb": idle.rss_mb()}
    idle.stop()
    results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                          "load_avg_at_end": os.getloadavg()}
    (args.out / "serve.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(report(results, args.runs))


def report(r: dict[str, Any], runs: int) -> str:
    floor = r["floor"]["seconds"]
    warm, cli = r["warm_onechanged"]["seconds"], r["cli_onechanged"]["seconds"]
    rss = r["rss_mb"]
    first, last = rss.get(10), rss.get(runs)
    growth = f"{100 * (last - first) / first:+.1f}%" if first and last else "n/a"
    imports = r["imports"]
    return "\n".join([
        f"floor                      {floor:.3f} s",
        f"warm service, one changed  {warm:.3f} s  {warm / floor:.2f}x floor",
        f"fresh dpo run, one changed {cli:.3f} s  {cli / floor:.2f}x floor",
        f"RSS after 10 runs {first:.0f} MB, after {runs} runs {last:.0f} MB ({growth}); "
        + ", ".join(f"{n}: {mb:.0f}" for n, mb in rss.items()),
        f"idle CPU {r['idle_cpu']['percent_of_one_core']:.3f}% of one core over "
        f"{r['idle_cpu']['seconds']:.0f} s (RSS {r['idle_cpu']['rss_mb']:.0f} MB)",
        f"start until /health answers {r['start']['seconds']:.3f} s; RSS after the start run "
        f"{r['start']['rss_mb_after_first_run']:.0f} MB",
        f"imports: http.server {1000 * imports['http.server']['seconds']:.1f} ms, "
        f"+{imports['http.server']['rss_mb']:.1f} MB; all serve-only modules "
        f"({', '.join(SERVE_ONLY)}) {1000 * imports['serve_only']['seconds']:.1f} ms, "
        f"+{imports['serve_only']['rss_mb']:.1f} MB",
    ])


if __name__ == "__main__":
    main()

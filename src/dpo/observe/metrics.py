"""The seed's Key Metrics, computed from the run ledger; JSON and Prometheus text exposition.

Definitions (over the runs of a window: `--since`, or the newest RECENT_RUNS after a run).
A run has *ended* when it is finished or interrupted; runs still running are not counted.

- pipeline_success_rate: ended runs with overall_status `success` / ended runs.
- phase_success_rates: per phase, finished runs where the phase ran and did not fail
  (status `success` or `warning`) / finished runs where it ran (a skipped Phase 2 did not run).
- rollback_frequency: events with a rollback / events, where an event is an ended run or a
  manual rollback (`dpo rollback`, recorded in the ledger's manual_actions): (ended runs with
  at least one rollback + manual rollbacks) / (ended runs + manual rollbacks).
- processing_time: per phase (`total`, `collector`, `loader`) over finished runs: median, p95
  (nearest rank), mean, latest (the newest finished run), count and sum, in seconds.
- data_quality: per table, its latest published row count (runs that published nothing do
  not count), duplicates removed and rows rejected summed over the window, runs
  in which it changed or failed; errors by type; data-quality warnings by kind (summed over
  the window's finished runs, and the newest finished run's) and the newest finished run's
  count.
- notification_triggers: ended runs that asked for manual review / ended runs, and the
  notifications sent, failed and disabled (run with notifications off), per component.

Stdlib only (the exposition is written by hand, no prometheus_client): the `.prom` file is
written after every run. Names follow Prometheus' conventions (docs/behaviour.md, "Metrics"):
`_total` only on counters (none here: every family is a gauge or a summary of the window),
base units in names (`_seconds`, `_ratio` for a fraction 0-1).
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dpo.config import Paths, Settings
from dpo.observe.ledger import Snapshot
from dpo.observe.ledgerschema import CHANGED, DUPLICATES, FAILED, REJECTED, ROWS

RECENT_RUNS = 200  # what the after-run .prom file and the dashboard look at
PHASE_TIMES = {"total": "duration_s", "collector": "collector_s", "loader": "loader_s"}
PHASE_OK = ("success", "warning")
OVERALL = ("success", "partial_success", "failed", "interrupted")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """'30m', '24h', '7d', '2w', '90s' -> seconds (ValueError otherwise)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text.lower())
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"duration must look like 30m, 24h or 7d, got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def since_epoch(since: str | None, now: float | None = None) -> float | None:
    return None if since is None else (time.time() if now is None else now) - parse_duration(since)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def _stats(values: list[float]) -> dict[str, Any]:
    """`values` newest first."""
    if not values:
        return {"count": 0, "sum": 0.0, "median": None, "p95": None, "mean": None,
                "latest": None}
    ordered = sorted(values)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return {"count": len(values), "sum": round(sum(values), 6),
            "median": round(statistics.median(ordered), 6), "p95": p95,
            "mean": round(statistics.fmean(values), 6), "latest": values[0]}


def compute(snap: Snapshot, *, window: str = "all runs") -> dict[str, Any]:
    runs = snap.runs  # newest first
    ended = [r for r in runs if r["state"] != "running"]
    finished = [r for r in runs if r["state"] == "finished"]
    ended_ids = {r["run_id"] for r in ended}
    statuses = Counter(str(r["overall_status"]) for r in ended)
    phases: dict[str, dict[str, int]] = {}
    for phase in ("collector", "loader"):
        ran = [r[f"{phase}_status"] for r in finished
               if r[f"{phase}_status"] not in (None, "skipped")]
        phases[phase] = {"ran": len(ran), "succeeded": sum(s in PHASE_OK for s in ran),
                         "skipped": sum(r[f"{phase}_status"] == "skipped" for r in finished)}
    rolled = [r for r in ended if r["rollbacks"]]
    manual = sum(a["action"] == "rollback" for a in snap.actions)
    notes = [n for n in snap.notifications if n["run_id"] in ended_ids]
    outcomes = Counter(n["outcome"] for n in notes)
    by_component: dict[str, dict[str, int]] = {}
    for n in notes:
        counts = by_component.setdefault(str(n["component"]), {"sent": 0, "failed": 0,
                                                               "disabled": 0})
        counts[n["outcome"]] = counts.get(n["outcome"], 0) + 1
    noted = {n["run_id"] for n in notes}
    return {
        "window": {"description": window, "runs": len(runs), "ended": len(ended),
                   "oldest_started_at": runs[-1]["started_at"] if runs else None,
                   "newest_started_at": runs[0]["started_at"] if runs else None},
        "runs_by_status": {s: statuses.get(s, 0) for s in OVERALL}
        | {s: n for s, n in statuses.items() if s not in OVERALL},
        "pipeline_success_rate": _rate(statuses["success"], len(ended)),
        "phase_success_rates": {p: _rate(c["succeeded"], c["ran"]) for p, c in phases.items()},
        "phase_runs": phases,
        "rollback_frequency": _rate(len(rolled) + manual, len(ended) + manual),
        "rollbacks": {"runs_with_rollback": len(rolled), "manual": manual,
                      "total": sum(r["rollbacks"] or 0 for r in ended) + manual,
                      "failed": sum(r["rollbacks_failed"] or 0 for r in ended),
                      "succeeded": sum((r["rollbacks"] or 0) - (r["rollbacks_failed"] or 0)
                                       for r in ended)},
        "processing_time": {
            phase: _stats([float(r[col]) for r in finished if r[col] is not None])
            for phase, col in PHASE_TIMES.items()},
        "data_quality": _quality(snap, finished, ended_ids),
        "checks": _checks(snap),
        "notification_triggers": {
            "runs_with_notifications": len(noted), "rate": _rate(len(noted), len(ended)),
            "total": len(notes), "sent": outcomes.get("sent", 0),
            "failed": outcomes.get("failed", 0), "disabled": outcomes.get("disabled", 0),
            "by_component": by_component},
        "last_run": _last(runs),
    }


def _quality(snap: Snapshot, finished: list[dict[str, Any]],
             ended_ids: set[str]) -> dict[str, Any]:
    sums: dict[str, list[int]] = {}  # table -> [duplicates, rejected, changed, failed, runs]
    latest: dict[str, int] = {}
    for run in snap.runs:  # newest first: the first row count seen is the latest
        for name, counts in snap.table_stats.get(run["run_id"], {}).items():
            total = sums.get(name)
            if total is None:
                total = sums[name] = [0, 0, 0, 0, 0]
            total[0] += counts[DUPLICATES]
            total[1] += counts[REJECTED]
            total[2] += counts[CHANGED]
            total[3] += counts[FAILED]
            total[4] += 1
            if counts[ROWS] is not None and name not in latest:
                latest[name] = counts[ROWS]
    tables = {name: {"rows": latest.get(name), "duplicates_removed": t[0], "rows_rejected": t[1],
                     "changed_runs": t[2], "failed_runs": t[3], "runs": t[4]}
              for name, t in sorted(sums.items())}
    errors = Counter(str(e["error_type"]) for e in snap.errors if e["run_id"] in ended_ids)
    warnings: Counter[str] = Counter()
    by_run = [json.loads(run.get("warnings_by_kind") or "{}") for run in finished]
    for found in by_run:
        warnings.update(found)
    # The newest finished run's, with 0 for a kind the window saw but it did not: a gauge per
    # kind that drops to 0 rather than vanishing.
    latest_kinds = {kind: (by_run[0].get(kind, 0) if by_run else 0) for kind in warnings}
    return {"tables": tables,
            "records_latest": finished[0]["records_count"] if finished else None,
            "errors_by_type": dict(sorted(errors.items())),
            "warnings_by_kind": dict(sorted(warnings.items())),
            "warnings_by_kind_latest": dict(sorted(latest_kinds.items())) if by_run else {},
            "warnings_latest": finished[0].get("warnings_count") or 0 if finished else None}


def _checks(snap: Snapshot) -> dict[str, Any]:
    """Each data check as the newest run that ran it left it (a run where nothing changed runs
    none): its status and failing rows; and how many checks are in each status."""
    order = {run["run_id"]: i for i, run in enumerate(snap.runs)}  # 0: the newest
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for row in sorted(snap.checks, key=lambda r: order.get(r["run_id"], len(order))):
        latest.setdefault((str(row["table_name"]), str(row["check_name"])), row)
    statuses = Counter(str(r["status"]) for r in latest.values())
    return {"by_status": {s: statuses.get(s, 0) for s in ("passed", "failed", "skipped")},
            "latest": [{"table": t, "check": c, "status": r["status"], "severity": r["severity"],
                        "failing_rows": r["failing_rows"] or 0, "run_id": r["run_id"]}
                       for (t, c), r in sorted(latest.items())]}


def _last(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not runs:
        return None
    run = runs[0]
    return {k: run[k] for k in ("run_id", "started_at", "started_epoch", "finished_at", "state",
                                "overall_status", "collector_status", "loader_status",
                                "duration_s")}


# -- Prometheus text exposition format 0.0.4 ------------------------------------------------
def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float | int | bool) -> str:
    if isinstance(value, bool | int):
        return str(int(value))
    return "NaN" if math.isnan(value) else repr(float(value))


Sample = tuple[dict[str, object], float | int | None]


class _Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples: Iterable[Sample],
               suffix: str = "") -> None:
        rows = [(labels, v) for labels, v in samples if v is not None]
        if not rows and kind != "summary":
            return
        self.lines += [f"# HELP dpo_{name} {help_text}", f"# TYPE dpo_{name} {kind}"]
        self.samples(name + suffix, rows)

    def samples(self, name: str, rows: Iterable[Sample]) -> None:
        for labels, value in rows:
            if value is None:
                continue
            text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            self.lines.append(f"dpo_{name}{{{text}}} {_num(value)}" if text
                              else f"dpo_{name} {_num(value)}")


def prometheus_text(m: dict[str, Any]) -> str:
    out = _Exposition()
    out.lines.append(f"# dpo metrics over {m['window']['description']} "
                     f"({m['window']['runs']} runs)")
    out.family("runs", "gauge", "Runs in the window by overall status.",
               [({"status": s}, n) for s, n in m["runs_by_status"].items()])
    out.family("pipeline_success_ratio", "gauge", "Ended runs with overall status success, 0-1.",
               [({}, m["pipeline_success_rate"])])
    out.family("phase_success_ratio", "gauge", "Runs where the phase ran and did not fail, 0-1.",
               [({"phase": p}, r) for p, r in m["phase_success_rates"].items()])
    out.family("rollback_frequency_ratio", "gauge",
               "Ended runs with a rollback and manual rollbacks / ended runs and manual rollbacks, 0-1.",
               [({}, m["rollback_frequency"])])
    rb = m["rollbacks"]
    out.family("rollbacks", "gauge", "Rollbacks in the window by outcome (manual: dpo rollback).",
               [({"outcome": "succeeded"}, rb["succeeded"]), ({"outcome": "failed"}, rb["failed"]),
                ({"outcome": "manual"}, rb["manual"])])
    times = m["processing_time"]
    out.family("run_duration_seconds", "summary", "Run and phase durations (finished runs).", [])
    for phase, st in times.items():
        out.samples("run_duration_seconds", [({"phase": phase, "quantile": "0.5"}, st["median"]),
                                             ({"phase": phase, "quantile": "0.95"}, st["p95"])])
        out.samples("run_duration_seconds_sum", [({"phase": phase}, st["sum"])])
        out.samples("run_duration_seconds_count", [({"phase": phase}, st["count"])])
    out.family("last_run_duration_seconds", "gauge", "Durations of the newest finished run.",
               [({"phase": p}, st["latest"]) for p, st in times.items()])
    last = m["last_run"]
    if last:
        out.family("last_run_timestamp_seconds", "gauge", "Start of the newest run (Unix time).",
                   [({}, last["started_epoch"])])
        states = (*OVERALL, "running")
        current = last["overall_status"] or last["state"]
        out.family("last_run_status", "gauge", "1 for the status of the newest run.",
                   [({"status": s}, int(s == current)) for s in states])
    dq = m["data_quality"]
    for key, help_text in (("rows", "Latest row count per table."),
                           ("duplicates_removed", "Duplicate rows removed per table."),
                           ("rows_rejected", "Rows rejected per table."),
                           ("changed_runs", "Runs in which the table changed."),
                           ("failed_runs", "Runs in which the table failed.")):
        out.family(f"table_{key}", "gauge", help_text,
                   [({"table": t}, v[key]) for t, v in dq["tables"].items()])
    out.family("records", "gauge", "Records collected by the newest finished run.",
               [({}, dq["records_latest"])])
    out.family("errors", "gauge", "Errors in the window by type.",
               [({"error_type": t}, n) for t, n in dq["errors_by_type"].items()])
    out.family("data_quality_warnings", "gauge",
               "Data-quality warnings (cells loaded as NA, loose headers, merged cells, totals "
               "rows...) of the newest finished run, by kind.",
               [({"kind": k}, n) for k, n in dq["warnings_by_kind_latest"].items()])
    out.family("last_run_data_quality_warnings", "gauge",
               "Data-quality warnings of the newest finished run.",
               [({}, dq["warnings_latest"])])
    checks = m["checks"]
    out.family("checks", "gauge", "Data checks by status, each as the newest run that ran it "
               "left it.", [({"status": s}, n) for s, n in checks["by_status"].items()])
    out.family("check_failed_rows", "gauge", "Rows failing each data check when it last ran.",
               [({"table": c["table"], "check": c["check"]}, c["failing_rows"])
                for c in checks["latest"]])
    nt = m["notification_triggers"]
    out.family("notifications", "gauge", "Manual-review notifications by outcome.",
               [({"outcome": o}, nt[o]) for o in ("sent", "failed", "disabled")])
    out.family("notification_trigger_ratio", "gauge",
               "Ended runs that asked for manual review, 0-1.", [({}, nt["rate"])])
    return "\n".join(out.lines) + "\n"


def prom_path(paths: Paths, settings: Settings) -> Path:
    """Settings.prometheus_path (relative to the root), default `<output_dir>/dpo.prom`."""
    if not settings.prometheus_path:
        return paths.output_dir / "dpo.prom"
    path = Path(settings.prometheus_path).expanduser()
    return path if path.is_absolute() else paths.root / path


def replace_text(path: Path, text: str, point: str) -> None:
    """Replace `path` atomically for readers, not fsynced (dpo.fsio, durable=False).

    These files (.prom, dashboard) are derived from the ledger and rewritten after every run;
    two fsyncs per file would cost more than everything else done after a run. The file is
    staged as `<name>.tmp` first, so no temp name ends in `.prom`: node_exporter's textfile
    collector reads every *.prom file and must never see a partial one.
    """
    from dpo.fsio import atomic_write_text

    staged = path.with_name(path.name + ".tmp")
    atomic_write_text(staged, text, point, durable=False)
    os.replace(staged, path)

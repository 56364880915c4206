"""A self-contained HTML dashboard of the run ledger, and the after-run publishing step.

One file, no network: inline CSS and server-drawn inline SVG (no scripts, a CSP that forbids
loading anything). Charts: status timeline, phase durations, rows per table over time,
rollbacks and notifications per run, and the newest run's errors. Stdlib string building
(no template engine, no plotting library): it is refreshed after every run and must cost
milliseconds. The file is replaced atomically through dpo.fsio.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loguru import logger

from dpo.config import Paths, Settings
from dpo.observe.ledger import Ledger, Snapshot
from dpo.observe.ledgerschema import ADDED, CHANGED, FAILED, REMOVED, ROWS
from dpo.observe.metrics import RECENT_RUNS, compute, prom_path, prometheus_text, replace_text

STATUS_COLORS = {"success": "#2e7d32", "partial_success": "#f9a825", "failed": "#c62828",
                 "interrupted": "#6a1b9a", "running": "#1565c0"}
PHASE_COLORS = {"collector": "#283593", "loader": "#ef6c00", "other": "#9e9e9e"}
EVENT_COLORS = {"rollback ok": "#00897b", "rollback failed": "#c62828",
                "notification sent": "#5e35b1", "notification failed": "#d81b60"}
LINE_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
               "#17becf", "#bcbd22", "#7f7f7f")
WIDTH = 1100
PAD = 48  # room for the y axis labels
_CSS = """
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:16px 24px;color:#222;
background:#fff}h1{font-size:20px;margin:0 0 4px}h2{font-size:15px;margin:18px 0 6px}
.sub{color:#666;margin:0 0 10px}.cards{display:flex;gap:10px;flex-wrap:wrap}
.card{border:1px solid #ddd;border-radius:6px;padding:6px 10px;min-width:88px}
.card b{display:block;font-size:18px}.card span{color:#666;font-size:12px}
svg text{font-size:11px;fill:#444}.legend span{display:inline-block;margin-right:14px;
font-size:12px}.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
.grid{display:grid;grid-template-columns:repeat(4,1fr);gap:8px}.spark{border:1px solid #eee;
padding:4px}.spark div{font-size:12px}table{border-collapse:collapse;font-size:12px}
td,th{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
.none{color:#888;font-style:italic}
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _fmt(value: float | None, unit: str = "", digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}{unit}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def _legend(colors: dict[str, str]) -> str:
    return '<div class="legend">' + "".join(
        f'<span><i style="background:{c}"></i>{_e(k)}</span>' for k, c in colors.items()) + "</div>"


def _svg(height: int, body: list[str], label: str) -> str:
    return (f'<svg viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img" '
            f'aria-label="{_e(label)}" shape-rendering="crispEdges">{"".join(body)}</svg>')


def _slots(n: int) -> tuple[float, float]:
    """x step and bar width for n runs across the plot area."""
    step = (WIDTH - PAD - 8) / max(n, 1)
    return step, max(1.0, min(28.0, step * 0.8))


def _titles(runs: list[dict[str, Any]]) -> list[str]:
    """A tooltip per run (escaped once, shared by every chart)."""
    return [f"<title>{_e(r['run_id'])} {_e(r['overall_status'] or r['state'])} "
            f"{_fmt(r['duration_s'], ' s')}</title>" for r in runs]


def timeline(runs: list[dict[str, Any]], titles: list[str]) -> str:
    """One block per run, oldest left, coloured by overall status."""
    step, width = _slots(len(runs))
    body = [f'<rect x="{PAD + i * step:.1f}" y="8" width="{width:.1f}" height="36" '
            f'fill="{STATUS_COLORS.get(r["overall_status"] or r["state"], "#999")}">{t}</rect>'
            for i, (r, t) in enumerate(zip(runs, titles, strict=True))]
    if runs:
        body += [f'<text x="{PAD}" y="60">{_e(runs[0]["started_at"][:16])}</text>',
                 f'<text x="{WIDTH - 8}" y="60" text-anchor="end">'
                 f'{_e(runs[-1]["started_at"][:16])}</text>']
    return _svg(66, body, "status timeline") + _legend(STATUS_COLORS)


def _axis(top: float, height: float, maximum: float, unit: str) -> list[str]:
    return [f'<line x1="{PAD - 4}" y1="{top + height}" x2="{WIDTH - 8}" y2="{top + height}" '
            'stroke="#bbb"/>',
            f'<text x="{PAD - 6}" y="{top + 10}" text-anchor="end">'
            f'{_fmt(maximum, unit, 1 if unit else 0)}</text>',
            f'<text x="{PAD - 6}" y="{top + height}" text-anchor="end">0</text>']


Parts = Callable[[dict[str, Any]], tuple[float, ...]]


def _stacked(runs: list[dict[str, Any]], titles: list[str], parts: Parts,
             colors: dict[str, str], height: int, unit: str) -> list[str]:
    """Stacked bars, one per run; `parts` gives one value per colour, in order."""
    top, plot = 6, height - 12
    stacks = [parts(r) for r in runs]
    scale = plot / (max((sum(s) for s in stacks), default=0.0) or 1.0)
    step, width = _slots(len(runs))
    fills = list(colors.values())
    body = _axis(top, plot, plot / scale, unit)
    bar = f'" width="{width:.1f}" height="'
    for i, (stack, title) in enumerate(zip(stacks, titles, strict=True)):
        bottom, x, bars = float(top + plot), f'<rect x="{PAD + i * step:.1f}" y="', []
        for fill, value in zip(fills, stack, strict=True):
            if value > 0:  # whole pixels: crisp edges, and cheap to format
                h = max(1, round(value * scale))
                bottom -= h
                bars.append(f'{x}{bottom:.0f}{bar}{h}" fill="{fill}"/>')
        if bars:
            body.append(f"<g>{title}{''.join(bars)}</g>")
    return body


def durations(runs: list[dict[str, Any]], titles: list[str]) -> str:
    def parts(run: dict[str, Any]) -> tuple[float, ...]:
        c, ld, total = run["collector_s"] or 0.0, run["loader_s"] or 0.0, run["duration_s"] or 0.0
        return c, ld, max(0.0, total - c - ld)

    keep = [i for i, r in enumerate(runs) if r["state"] == "finished"]
    return _svg(180, _stacked([runs[i] for i in keep], [titles[i] for i in keep], parts,
                              PHASE_COLORS, 180, " s"), "phase durations") + _legend(PHASE_COLORS)


def events(runs: list[dict[str, Any]], titles: list[str]) -> str:
    def parts(run: dict[str, Any]) -> tuple[float, ...]:
        rb, rbf = run["rollbacks"] or 0, run["rollbacks_failed"] or 0
        return rb - rbf, rbf, run["notifications_sent"] or 0, run["notifications_failed"] or 0

    return _svg(120, _stacked(runs, titles, parts, EVENT_COLORS, 120, ""),
                "rollbacks and notifications") + _legend(EVENT_COLORS)


def _segments(values: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """Runs of consecutive points (a run without the table breaks the line), keeping only the
    ends of flat stretches: most tables keep their row count for many runs."""
    segments: list[list[tuple[int, int]]] = []
    for k, (i, v) in enumerate(values):
        if not segments or i != values[k - 1][0] + 1:
            segments.append([(i, v)])
            continue
        following = values[k + 1] if k + 1 < len(values) else None
        if values[k - 1][1] == v and following == (i + 1, v):
            continue  # inside a flat stretch
        segments[-1].append((i, v))
    return segments


def table_rows(snap: Snapshot, runs: list[dict[str, Any]]) -> str:
    """A sparkline per table: its row count in each run (a gap where the table failed)."""
    series: dict[str, list[tuple[int, int]]] = {}
    for i, run in enumerate(runs):  # oldest first
        for name, counts in snap.table_stats.get(run["run_id"], {}).items():
            points = series.get(name)
            if points is None:
                points = series[name] = []
            if counts[ROWS] is not None:
                points.append((i, counts[ROWS]))
    if not series:
        return '<p class="none">No table data yet.</p>'
    w, h = 250, 60
    span = (w - 8) / max(len(runs) - 1, 1)
    cells = []
    for k, name in enumerate(sorted(series)):
        values = series[name]
        hi = (h - 8) / (max((v for _, v in values), default=0) or 1)
        color = LINE_COLORS[k % len(LINE_COLORS)]
        shapes = []
        for seg in _segments(values):
            xy = [(4 + span * i, h - 4 - hi * v) for i, v in seg]
            if len(xy) > 1:
                coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
                shapes.append(f'<polyline points="{coords}" fill="none" stroke="{color}" '
                              'stroke-width="3"/>')
            else:
                shapes.append(f'<rect x="{xy[0][0] - 3:.1f}" y="{xy[0][1] - 3:.1f}" width="6" '
                              f'height="6" fill="{color}"/>')
        latest = f"{values[-1][1]:,} rows" if values else "no rows"
        cells.append(f'<div class="spark"><div><b>{_e(name)}</b> {latest}</div>'
                     f'<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
                     f'aria-label="rows of {_e(name)}">{"".join(shapes)}</svg></div>')
    return '<div class="grid">' + "".join(cells) + "</div>"


def _errors(snap: Snapshot) -> str:
    if not snap.runs:
        return '<p class="none">No runs recorded yet.</p>'
    last = snap.runs[0]["run_id"]
    rows = [e for e in snap.errors if e["run_id"] == last]
    heal = [h for h in snap.healing if h["run_id"] == last]
    parts = []
    if rows:
        cols = ("phase", "error_type", "table_name", "file", "sheet", "excel_row", "column_name",
                "message")
        heads = ("phase", "error type", "table", "file", "sheet", "row", "column", "message")
        parts.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in heads) + "</tr>" + "".join(
            "<tr>" + "".join(f"<td>{_e(e[c])}</td>" for c in cols) + "</tr>" for e in rows)
            + "</table>")
    else:
        parts.append(f'<p class="none">The last run ({_e(last)}) reported no errors.</p>')
    if heal:
        parts.append("<h2>Healing actions of the last run</h2><table><tr><th>action</th><th>table</th>"
                     "<th>ok</th><th>detail</th></tr>" + "".join(
                         f"<tr><td>{_e(h['action'])}</td><td>{_e(h['table_name'])}</td>"
                         f"<td>{'yes' if h['success'] else 'NO'}</td><td>{_e(h['detail'])}</td></tr>"
                         for h in heal) + "</table>")
    return "".join(parts)


def quality(runs: list[dict[str, Any]]) -> str:
    """Data-quality warnings per finished run (newest first), by kind: what was published
    differently from the sheets as written (cells loaded as NA, loose headers, merges...)."""
    finished = [r for r in runs if r["state"] == "finished"][:15]
    if not finished:
        return '<p class="none">No finished runs yet.</p>'
    kinds = sorted({k for r in finished for k in json.loads(r.get("warnings_by_kind") or "{}")})
    if not kinds:
        return '<p class="none">No data-quality warnings in the recorded runs.</p>'
    heads = ["run", "warnings", *(k.replace("_", " ") for k in kinds)]
    rows = []
    for run in finished:
        found = json.loads(run.get("warnings_by_kind") or "{}")
        cells = [run["run_id"], run.get("warnings_count") or 0, *(found.get(k, 0) for k in kinds)]
        rows.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    return ("<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in heads) + "</tr>" + "".join(rows)
            + "</table><p class=\"sub\">Each warning names its file, sheet, row and column in "
            "the run's final report.</p>")


def check_panel(snap: Snapshot) -> str:
    """Data checks per table over the newest runs that ran checks (newest first): the rows
    failing each check, "ok" when it passed, "–" when it did not run."""
    by_run = snap.by_run(snap.checks)
    runs = [r["run_id"] for r in snap.runs if r["run_id"] in by_run][:10]
    if not runs:
        return '<p class="none">No data checks ran in the recorded runs.</p>'
    cells: dict[tuple[str, str, str], dict[str, str]] = {}
    for run_id in runs:
        for c in by_run[run_id]:
            key = (str(c["table_name"]), str(c["check_name"]), str(c["severity"]))
            cells.setdefault(key, {})[run_id] = (
                f"{c['failing_rows'] or 0:,} failing" if c["status"] == "failed"
                else "ok" if c["status"] == "passed" else str(c["status"]))
    heads = ["table", "check", "severity", *runs]
    rows = ["<tr>" + "".join(f"<td>{_e(v)}</td>" for v in (
        *key, *(found.get(run_id, "–") for run_id in runs))) + "</tr>"
        for key, found in sorted(cells.items())]
    return ("<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in heads) + "</tr>"
            + "".join(rows) + "</table><p class=\"sub\">A check runs when its table (or a "
            "table it references) changes; `dpo check` runs them all on the published store."
            "</p>")


def last_tables(snap: Snapshot) -> str:
    """The newest run's tables: published rows and what its publish changed."""
    if not snap.runs:
        return '<p class="none">No runs recorded yet.</p>'
    stats = snap.table_stats.get(snap.runs[0]["run_id"], {})
    if not stats:
        return '<p class="none">The last run recorded no tables.</p>'
    rows = []
    for name, counts in sorted(stats.items()):
        rows.append(f"<tr><td>{_e(name)}</td><td>{_e(_published(counts))}</td>"
                    f"<td>{_e(_change(counts))}</td></tr>")
    return ("<table><tr><th>table</th><th>published rows</th><th>changes</th></tr>"
            + "".join(rows) + "</table>")


def _published(counts: list[Any]) -> str:
    return "–" if counts[ROWS] is None else f"{counts[ROWS]:,}"


def _change(counts: list[Any]) -> str:
    if counts[FAILED]:
        return "failed"
    if counts[ROWS] is None:
        return "not published"
    if len(counts) > REMOVED and counts[ADDED] is not None:
        return f"+{counts[ADDED]:,} / -{counts[REMOVED]:,} rows"
    return "changed" if counts[CHANGED] else "unchanged"


def _cards(m: dict[str, Any]) -> str:
    last = m["last_run"] or {}
    total = m["processing_time"]["total"]
    cards = [("last run", last.get("overall_status") or last.get("state") or "–"),
             ("success rate", _pct(m["pipeline_success_rate"])),
             ("collector ok", _pct(m["phase_success_rates"]["collector"])),
             ("loader ok", _pct(m["phase_success_rates"]["loader"])),
             ("rollback frequency", _pct(m["rollback_frequency"])),
             ("manual reviews", _pct(m["notification_triggers"]["rate"])),
             ("median run", _fmt(total["median"], " s")), ("p95 run", _fmt(total["p95"], " s")),
             ("warnings (last run)", m["data_quality"]["warnings_latest"]
              if m["data_quality"]["warnings_latest"] is not None else "–")]
    return '<div class="cards">' + "".join(
        f"<div class=\"card\"><b>{_e(v)}</b><span>{_e(k)}</span></div>" for k, v in cards) + "</div>"


def render(snap: Snapshot, metrics: dict[str, Any] | None = None, *, title: str = "dpo") -> str:
    """The dashboard page for `snap` (runs newest first, as the ledger returns them)."""
    m = metrics if metrics is not None else compute(snap)
    runs = list(reversed(snap.runs))  # charts run oldest -> newest
    empty = '<p class="none">No runs recorded yet.</p>'
    last = m["last_run"]
    sub = (f"{len(runs)} newest runs · last run {_e(last['run_id'])} started "
           f"{_e(last['started_at'])}" if last else "no runs recorded yet")
    titles = _titles(runs)
    sections = [
        ("Run status timeline", timeline(runs, titles) if runs else empty),
        ("Phase durations (seconds per finished run)",
         durations(runs, titles) if runs else empty),
        ("Tables of the last run (changes: rows added / removed by its publish)",
         last_tables(snap)),
        ("Rows per table over time", table_rows(snap, runs) if runs else empty),
        ("Rollbacks and notifications per run", events(runs, titles) if runs else empty),
        ("Data quality warnings per run", quality(snap.runs)),
        ("Data checks (failing rows per run that ran them)", check_panel(snap)),
        ("Errors of the last run", _errors(snap)),
    ]
    body = "".join(f"<h2>{_e(h)}</h2>{content}" for h, content in sections)
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "style-src 'unsafe-inline'\">"
            f"<title>{_e(title)} pipeline dashboard</title><style>{_CSS}</style></head><body>"
            f"<h1>{_e(title)} · DataPipelineOrchestrator runs</h1><p class=\"sub\">{sub}</p>"
            f"{_cards(m)}{body}</body></html>\n")


def write_dashboard(path: Path, page: str) -> None:
    replace_text(path, page, point="observe:dashboard")


def publish_observability(paths: Paths, settings: Settings, ledger: Ledger | None = None) -> None:
    """After a run: refresh the Prometheus textfile and the dashboard. Never raises (logs).

    `ledger`: the run's own ledger, whose open connection is reused and then closed.
    """
    ledger = ledger or Ledger(paths.output_dir / "runs.sqlite")
    try:
        snap = ledger.snapshot(limit=RECENT_RUNS)
        metrics = compute(snap, window=f"the newest {RECENT_RUNS} runs")
    except Exception as exc:  # noqa: BLE001 - observability must never fail a finished run
        logger.opt(exception=exc).warning("⚠️ run ledger unreadable; metrics not refreshed: {}", exc)
        return
    finally:
        ledger.close()
    steps: tuple[tuple[str, Callable[[], None]], ...] = (
        ("Prometheus file", lambda: replace_text(prom_path(paths, settings),
                                                 prometheus_text(metrics), "observe:prom")),
        ("dashboard", lambda: write_dashboard(paths.output_dir / "dashboard.html",
                                              render(snap, metrics))),
    )
    for what, step in steps:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - observability must never fail a finished run
            logger.opt(exception=exc).warning("⚠️ {} not refreshed: {}", what, exc)

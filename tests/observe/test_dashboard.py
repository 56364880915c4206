"""The HTML dashboard: refreshed after each run, self-contained, and drawn by a real Chromium.

The Chromium test renders the dashboard of real runs and an empty one, decodes both
screenshots and counts the pixels of each chart's colours: the charts must be on screen.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import skip_or_fail
from test_ledger import BAD_COLUMN, OUTPUT, cli, make_history

from dpo.observe.dashboard import EVENT_COLORS, LINE_COLORS, PHASE_COLORS, STATUS_COLORS, render
from dpo.observe.ledger import Snapshot

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """failed, success, partial_success: the last run has an error to show."""
    root = tmp_path_factory.mktemp("dashboard")
    return root, make_history(root, ("broken", "good", "broken"))


def dashboard_of(root: Path) -> str:
    return (root / OUTPUT / "dashboard.html").read_text(encoding="utf-8")


def test_dashboard_is_refreshed_after_each_run(history: tuple[Path, list[Any]]) -> None:
    root, _ = history
    page = dashboard_of(root)
    runs = json.loads(cli("history", "--root", str(root), "--json").stdout)
    assert all(r["run_id"] in page for r in runs)
    assert f"last run {runs[0]['run_id']}" in page
    for heading in ("Run status timeline", "Phase durations", "Rows per table over time",
                    "Rollbacks and notifications", "Errors of the last run"):
        assert heading in page
    # The last run's error, located, and its healing action.
    errors = page.split("Errors of the last run", 1)[1]
    assert "DATA_PROCESSING_ERROR" in errors and BAD_COLUMN in errors
    assert "monthlyReports_201811.xlsb" in errors and "rollback" in errors


def test_dashboard_is_self_contained(history: tuple[Path, list[Any]]) -> None:
    page = dashboard_of(history[0])
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    for remote in ("http://", "https://", "//cdn", "<script", "<link", "<img", "url(",
                   "@import"):
        assert remote not in page


def test_dashboard_escapes_what_it_shows() -> None:
    run = {"run_id": "<script>x</script>", "started_at": "2026-01-01T00:00:00",
           "state": "finished", "overall_status": "failed", "duration_s": 1.0,
           "collector_s": 0.5, "loader_s": 0.2, "rollbacks": 0, "rollbacks_failed": 0,
           "notifications_sent": 0, "notifications_failed": 0, "records_count": 0,
           "started_epoch": 0.0, "finished_at": None, "collector_status": "error",
           "loader_status": "skipped"}
    error = {"run_id": run["run_id"], "seq": 0, "phase": "collector", "error_type": "X",
             "table_name": "<b>t</b>", "file": "a&b.xlsb", "sheet": None, "excel_row": 2,
             "column_name": "c", "message": "<img src=x>"}
    page = render(Snapshot(runs=[run], table_stats={run["run_id"]: {"<i>": [3, 0, 0, 0, 0]}},
                           errors=[error]))
    assert "<script>x" not in page and "<img src" not in page and "<b>t</b>" not in page
    assert "&lt;script&gt;x" in page and "a&amp;b.xlsb" in page


def test_dashboard_command_writes_the_file(history: tuple[Path, list[Any]],
                                           tmp_path: Path) -> None:
    root, _ = history
    target = tmp_path / "out" / "board.html"
    out = cli("dashboard", "--root", str(root), "--out", str(target)).stdout
    assert out.strip() == str(target)
    assert target.read_text(encoding="utf-8") == dashboard_of(root)  # same runs, same page
    (tmp_path / "no-runs" / "database").mkdir(parents=True)  # a plant that never ran
    (tmp_path / "no-runs" / "database" / "databaseSchemas.json").write_text("{}", "utf-8")
    empty = cli("dashboard", "--root", str(tmp_path / "no-runs"), "--out",
                str(tmp_path / "empty.html")).stdout.strip()
    assert "No runs recorded yet" in Path(empty).read_text(encoding="utf-8")


# ---------------------------------------------------------------------------- Chromium
def chromium() -> str:
    """The Chromium binary; installed with apt-get when missing and running as root."""
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        skip_or_fail("chromium is not installed and cannot be installed (not root / no apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "install", "-y", "chromium"], ["apt-get", "update"],
                    ["apt-get", "install", "-y", "chromium"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode == 0 and shutil.which("chromium"):
            return str(shutil.which("chromium"))
    skip_or_fail(f"chromium could not be installed with apt-get: {done.stderr[-500:]}")
    return ""  # not reached: skip_or_fail raises


def screenshot(html: Path, png: Path, profile: Path) -> np.ndarray:
    proc = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={png}",
         "--window-size=1200,1600", html.resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    assert png.exists(), proc.stderr[-2000:]
    return decode_png(png.read_bytes())


def decode_png(data: bytes) -> np.ndarray:
    """RGB pixels (height, width, 3) of an 8-bit, non-interlaced PNG; Pillow when present."""
    try:
        from PIL import Image
    except ImportError:
        pass
    else:
        import io

        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, [], (0, 0, 0, 0, 0, 0, 0)
    while pos < len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + size]
        pos += 12 + size
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and interlace == 0 and color in (2, 6), header
    bpp = 3 if color == 2 else 4
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(height, -1)
    rows = np.zeros((height, width * bpp), np.uint8)
    prior = np.zeros(width * bpp, np.int64)
    for y in range(height):
        kind, line = raw[y, 0], raw[y, 1:].astype(np.int64)
        if kind == 0:
            cur = line
        elif kind == 1:
            cur = np.cumsum(line.reshape(width, bpp), axis=0).reshape(-1) & 0xFF
        elif kind == 2:
            cur = (line + prior) & 0xFF
        else:  # average / Paeth: each byte depends on the one to its left
            out, up = line.tolist(), prior.tolist()
            for i in range(len(out)):
                a = out[i - bpp] if i >= bpp else 0
                b = up[i]
                c = up[i - bpp] if i >= bpp else 0
                if kind == 3:
                    out[i] = (out[i] + (a + b) // 2) & 0xFF
                    continue
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                out[i] = (out[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
            cur = np.array(out, np.int64)
        rows[y] = cur
        prior = cur
    return rows.reshape(height, width, bpp)[:, :, :3]


def count(pixels: np.ndarray, color: str, tolerance: int = 8) -> int:
    rgb = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(pixels.astype(np.int64) - rgb).max(axis=2) <= tolerance).sum())


def test_dashboard_renders_in_chromium(history: tuple[Path, list[Any]], tmp_path: Path) -> None:
    root, _ = history
    full = screenshot(root / OUTPUT / "dashboard.html", tmp_path / "full.png", tmp_path / "p1")
    empty_html = tmp_path / "empty.html"
    empty_html.write_text(render(Snapshot(runs=[])), encoding="utf-8")
    empty = screenshot(empty_html, tmp_path / "empty.png", tmp_path / "p2")
    assert full.shape == empty.shape == (1600, 1200, 3)

    # A legend swatch is 10x10 px: more than that means the chart itself drew the colour.
    drawn = {
        "timeline": [STATUS_COLORS[s] for s in ("success", "partial_success", "failed")],
        "durations": [PHASE_COLORS["collector"], PHASE_COLORS["loader"]],
        "rows per table": list(LINE_COLORS[:8]),
        "rollbacks and notifications": [EVENT_COLORS["rollback ok"],
                                        EVENT_COLORS["rollback failed"],
                                        EVENT_COLORS["notification sent"]],
    }
    for chart, colors in drawn.items():
        for color in colors:
            assert count(full, color) > 150, f"{chart}: {color} not drawn"
            assert count(empty, color) == 0, f"empty dashboard draws {color}"
    ink = (full.min(axis=2) < 235).sum()
    assert ink > 3 * (empty.min(axis=2) < 235).sum() and ink > 60_000


def test_chart_colours_are_distinct() -> None:
    colors = [*STATUS_COLORS.values(), *PHASE_COLORS.values(), *LINE_COLORS]
    assert len(set(colors)) == len(colors)
    assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in [*colors, *EVENT_COLORS.values()])


def test_sparkline_segments_break_at_gaps_and_drop_flat_middles() -> None:
    from dpo.observe.dashboard import _segments

    assert _segments([]) == []
    assert _segments([(0, 5)]) == [[(0, 5)]]
    assert _segments([(0, 5), (1, 5), (2, 5), (3, 6), (4, 6), (6, 6), (7, 6), (8, 6)]) == [
        [(0, 5), (2, 5), (3, 6), (4, 6)], [(6, 6), (8, 6)]]

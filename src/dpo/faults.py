"""Named crash and pause points for the crash-consistency and fault-injection tests.

`DPO_CRASH_AT=<point>` makes the process kill itself with SIGKILL when it reaches that point
(`<point>#<n>` at its n-th arrival). Nothing else in dpo reads this variable; unset, a
checkpoint costs one dict lookup. `DPO_CRASH_POINTS=<file>` appends every point reached to a
file, so the tests can enumerate all durable steps of a real run.

`DPO_PAUSE_AT=<point>[#<n>]` makes the process stop at that point (a checkpoint, or one of the
`pause_point` calls placed where a test needs to change the world mid-run, e.g. between finding
a source file and reading it): it writes `<DPO_PAUSE_DIR>/paused` (its pid and the point) and
waits until `<DPO_PAUSE_DIR>/release` exists, at most `DPO_PAUSE_TIMEOUT` seconds (default 30),
then carries on. Each label pauses once per process.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


class _Hooks:
    """The test hooks' state, in one place: arrivals per point (crash and pause counts) and
    the pauses already made. One per process; nothing here is read unless DPO_* is set."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}
        self.pause_seen: dict[str, int] = {}
        self.paused: set[str] = set()


_HOOKS = _Hooks()


def checkpoint(point: str) -> None:
    log = os.environ.get("DPO_CRASH_POINTS")
    target = os.environ.get("DPO_CRASH_AT")
    if os.environ.get("DPO_PAUSE_AT"):
        pause_point(point)
    if not log and not target:
        return
    _HOOKS.seen[point] = _HOOKS.seen.get(point, 0) + 1
    label = f"{point}#{_HOOKS.seen[point]}"
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(label + "\n")
    if target in (point, label):
        os.kill(os.getpid(), signal.SIGKILL)


def pause_point(point: str) -> None:
    """Wait here for the test's release file if `DPO_PAUSE_AT` names this point (test-only)."""
    target = os.environ.get("DPO_PAUSE_AT")
    if not target:
        return
    _HOOKS.pause_seen[point] = _HOOKS.pause_seen.get(point, 0) + 1
    label = f"{point}#{_HOOKS.pause_seen[point]}"
    if target not in (point, label) or target in _HOOKS.paused:
        return
    _HOOKS.paused.add(target)
    folder = Path(os.environ.get("DPO_PAUSE_DIR") or ".")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "paused").write_text(f"{os.getpid()} {label}\n", encoding="utf-8")
    deadline = time.monotonic() + float(os.environ.get("DPO_PAUSE_TIMEOUT") or 30)
    while not (folder / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.005)

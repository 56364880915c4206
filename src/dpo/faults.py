"""Named crash points for the crash-consistency tests.

`DPO_CRASH_AT=<point>` makes the process kill itself with SIGKILL when it reaches that point
(`<point>#<n>` at its n-th arrival). Nothing else in dpo reads this variable; unset, a
checkpoint costs one dict lookup. `DPO_CRASH_POINTS=<file>` appends every point reached to a
file, so the tests can enumerate all durable steps of a real run.
"""

from __future__ import annotations

import os
import signal

_seen: dict[str, int] = {}


def checkpoint(point: str) -> None:
    log = os.environ.get("DPO_CRASH_POINTS")
    target = os.environ.get("DPO_CRASH_AT")
    if not log and not target:
        return
    _seen[point] = _seen.get(point, 0) + 1
    label = f"{point}#{_seen[point]}"
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(label + "\n")
    if target in (point, label):
        os.kill(os.getpid(), signal.SIGKILL)

"""Prometheus' naming rules (those `promtool check metrics` applies, and the unit rules of
prometheus.io/docs/practices/naming), checked on a text exposition parsed by prometheus_client."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

# Words a name must not carry: not base units (seconds, bytes, ratio) or not what the value is
# (in Prometheus a "rate" is per second; a fraction 0-1 is a ratio).
NOT_BASE_UNITS = {"milliseconds": "seconds", "ms": "seconds", "minutes": "seconds",
                  "hours": "seconds", "days": "seconds", "kilobytes": "bytes",
                  "megabytes": "bytes", "percent": "ratio", "rate": "ratio"}
HISTOGRAM_SUFFIXES = ("_count", "_sum", "_bucket")


def naming_problems(text: str) -> list[str]:
    """One line per broken rule, naming the family; [] when every family keeps them all."""
    problems: list[str] = []
    for family in text_string_to_metric_families(text):
        name, kind, help_text = family.name, family.type, family.documentation.lower()
        names = {s.name for s in family.samples}
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            problems.append(f"{name}: not snake_case")
        if not help_text:
            problems.append(f"{name}: no HELP")
        if kind == "counter" and not all(n.endswith(("_total", "_created")) for n in names):
            problems.append(f"{name}: a counter whose samples do not end in _total")
        if kind != "counter" and any(n.endswith("_total") for n in {name, *names}):
            problems.append(f"{name}: a {kind} named like a counter (_total)")
        if kind not in ("summary", "histogram") and any(
                n.endswith(HISTOGRAM_SUFFIXES) for n in {name, *names}):
            problems.append(f"{name}: a {kind} with a summary/histogram suffix")
        for word in name.split("_"):
            if word in NOT_BASE_UNITS:
                problems.append(f"{name}: '{word}' in the name; use {NOT_BASE_UNITS[word]}")
        if "0-1" in help_text and not name.endswith("_ratio"):
            problems.append(f"{name}: a fraction 0-1 not named _ratio")
        if (("seconds" in help_text or "unix time" in help_text or "duration" in help_text)
                and "_seconds" not in name):
            problems.append(f"{name}: a time not named _seconds")
    return problems

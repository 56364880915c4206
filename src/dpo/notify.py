"""Manual-review notifications: the seed's message layout, and the channels that deliver it.

Channels are apprise URLs (mailto://, json://, mmost://, slack://, ...). A failing channel is
logged and recorded, never raised: a notification problem must not fail the pipeline. URLs carry
passwords and tokens, so every place a channel is named goes through `redact_url`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from logging.handlers import BufferingHandler
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote

import apprise
from loguru import logger

_EMAIL_SCHEMES = frozenset({"mailto", "mailtos"})
# Query keys whose values only route or format a message; any other value may be a secret.
_SAFE_QUERY_KEYS = frozenset({
    "from", "to", "cc", "bcc", "reply", "name", "smtp", "mode", "format", "overflow", "cto",
    "rto", "verify", "method", "tz", "emojis", "priority", "user", "image", "footer", "channel",
})
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_NOTIFY_TYPES = {"high": apprise.NotifyType.FAILURE, "medium": apprise.NotifyType.WARNING}
_MAX_CELLS_SHOWN = 20
_WIDTH = 80


# ------------------------------------------------------------------------------ redaction

def _redaction(url: str) -> tuple[str, list[str]]:
    """The URL with its secrets hidden, and those secrets (to scrub them from other text)."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        return "***", [url]
    secrets: list[str] = []
    rest, _, fragment = rest.partition("#")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hostport = netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    email = scheme.lower() in _EMAIL_SCHEMES
    secrets += [password] if password else []
    if user and not email and not colon:  # rocket://webhook@host: a lone user is a token
        secrets, user = [*secrets, user], "***"
    host, _, port = hostport.rpartition(":")
    if not port.isdigit():
        host, port = hostport, ""
    # slack://TokenA/..., discord://id/token: there the "host" is a credential, not a machine
    if host and not (host == "localhost" or "." in host or host.startswith("[")):
        secrets, host = [*secrets, host], "***"
    out = f"{scheme}://{user}{':***' if colon else ''}{at}{host}{':' + port if port else ''}"
    if path.strip("/"):
        if email:  # mailto paths are recipient addresses, which a reader needs to see
            out += f"/{path}"
        else:
            secrets += [p for p in path.split("/") if p]
            out += "/***"
    for n, param in enumerate(p for p in query.split("&") if p):
        key, eq, value = param.partition("=")
        if eq and value and key.lower() not in _SAFE_QUERY_KEYS:
            secrets, param = [*secrets, value], f"{key}=***"
        out += ("?" if n == 0 else "&") + param
    if fragment:
        secrets, out = [*secrets, fragment], out + "#***"
    return out, secrets


def redact_url(url: str) -> str:
    """`url` with passwords, tokens and webhook paths replaced by ***; safe to log and report."""
    return _redaction(url)[0]


def _scrub(text: str, secrets: Sequence[str] = ()) -> str:
    """Hide known secrets (raw and %-decoded) and any URL left in free text."""
    for form in {f for s in secrets for f in (s, unquote(s)) if len(f) >= 3}:
        text = text.replace(form, "***")  # (shorter "secrets" would garble ordinary words)
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


# ------------------------------------------------------------------------------- handlers

class NotificationHandler(Protocol):
    def send_notification(self, recipient: str, subject: str, message: str,
                          priority: str) -> bool: ...


@dataclass(frozen=True)
class ChannelFailure:
    channel: str  # always redacted
    reason: str  # scrubbed of that channel's secrets

    def __str__(self) -> str:
        return f"{self.channel}: {self.reason}"


def describe_handler(handler: object) -> str:
    describe = getattr(handler, "describe", None)
    return str(describe()) if callable(describe) else type(handler).__name__


def _failures_of(handler: object, name: str) -> list[ChannelFailure]:
    found = [f for f in getattr(handler, "failures", []) if isinstance(f, ChannelFailure)]
    return found or [ChannelFailure(name, "send_notification returned False")]


class MockNotificationHandler:
    """Records each notification and reports success; for tests and dev mode."""

    def __init__(self) -> None:
        self.sent: list[dict[str, str]] = []

    def describe(self) -> str:
        return "mock"

    def send_notification(self, recipient: str, subject: str, message: str,
                          priority: str = "high") -> bool:
        logger.info("📧 [mock] notification to {} ({}): {}", recipient, priority, subject)
        self.sent.append({"recipient": recipient, "subject": subject, "message": message,
                          "priority": priority})
        return True


class FileNotificationHandler:
    """Writes each notification as a text file, mode 0o600 since it may quote plant data."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def describe(self) -> str:
        return f"file:{self.folder}"

    def send_notification(self, recipient: str, subject: str, message: str,
                          priority: str = "high") -> bool:
        now = datetime.now().astimezone()
        slug = re.sub(r"[^A-Za-z0-9]+", "_", subject).strip("_")[:60] or "notification"
        text = (f"To: {recipient}\nSubject: {subject}\nPriority: {priority}\n"
                f"Date: {now.isoformat(timespec='seconds')}\n\n{message}")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            # O_EXCL: never overwrite an earlier notification; 0o600 from creation on
            path = self.folder / f"{now:%Y%m%d_%H%M%S_%f}_{slug}.txt"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                os.fchmod(fh.fileno(), 0o600)  # umask can only narrow it; be explicit anyway
                fh.write(text)
        except OSError as exc:
            logger.error("❌ Could not write notification into {}: {}", self.folder, exc)
            return False
        logger.info("📧 Notification '{}' written to {}", subject, path)
        return True


class AppriseNotificationHandler:
    """Delivers through apprise URLs one channel at a time, so each failure is attributable.

    `failures` holds the failures of the latest send only.
    """

    def __init__(self, urls: Sequence[str], *, timeout: float = 10.0) -> None:
        self._urls = [u.strip() for u in urls if u.strip()]
        self.timeout = timeout
        self.failures: list[ChannelFailure] = []
        for url in self._urls:  # report bad configuration at start-up, not at 6 a.m.
            with _quarantined_logs():
                plugin = apprise.Apprise.instantiate(url)
            if plugin is None:
                logger.warning("⚠️ apprise does not understand notification URL {}",
                               redact_url(url))

    def channels(self) -> list[str]:
        return [redact_url(u) for u in self._urls]

    def describe(self) -> str:
        return "apprise[" + ", ".join(self.channels()) + "]"

    def send_notification(self, recipient: str, subject: str, message: str,
                          priority: str = "high") -> bool:
        self.failures = []
        if not self._urls:
            self.failures.append(ChannelFailure("apprise", "no notification URL configured"))
            logger.warning("⚠️ No notification channel configured; '{}' not sent", subject)
            return False
        logger.info("📧 Sending '{}' for {} ({}) via {}", subject, recipient, priority,
                    ", ".join(self.channels()))
        for url in self._urls:
            channel, secrets = _redaction(url)
            try:  # the one broad catch per channel: a plugin bug must not stop the pipeline
                reason = self._send_one(url, subject, message, priority)
            except Exception as exc:  # noqa: BLE001 - scrubbed, logged and recorded below
                reason = f"{type(exc).__name__}: {exc}"
            if reason is None:
                logger.info("📧 Delivered via {}", channel)
                continue
            self.failures.append(ChannelFailure(channel, _scrub(reason, secrets)))
            logger.error("❌ Notification channel failed: {}", self.failures[-1])
        return not self.failures

    def _send_one(self, url: str, subject: str, message: str, priority: str) -> str | None:
        """None when delivered, else why not (not yet scrubbed: the caller does that)."""
        with _quarantined_logs() as records:
            plugin = apprise.Apprise.instantiate(url)
            if plugin is None:
                return "URL not understood by apprise (unknown scheme or missing parts)"
            plugin.socket_connect_timeout = plugin.socket_read_timeout = self.timeout
            sender = apprise.Apprise()
            sender.add(plugin)
            ok = sender.notify(body=message, title=subject,
                               notify_type=_NOTIFY_TYPES.get(priority, apprise.NotifyType.INFO),
                               body_format=apprise.NotifyFormat.TEXT)
        lines = [r.getMessage().strip() for r in records
                 if r.levelno >= logging.WARNING or "Exception:" in r.getMessage()]
        return None if ok else "; ".join(lines)[:500] or "delivery failed (apprise gave no detail)"


# apprise logs URLs with their tokens (at DEBUG, and on errors), urllib3 logs webhook paths:
# while a channel is in use their records stay in here, away from the application's logs.
_LEAKY_LOGGERS = ("apprise", "urllib3")


@contextmanager
def _quarantined_logs() -> Iterator[list[logging.LogRecord]]:
    """Collect apprise/urllib3 records (apprise explains a failure only there); emit none."""
    handler = BufferingHandler(capacity=100_000)
    saved = [(lg, lg.level, lg.propagate, lg.handlers[:])
             for lg in map(logging.getLogger, _LEAKY_LOGGERS)]
    for lg, *_ in saved:
        lg.setLevel(logging.DEBUG)  # apprise logs the socket error itself only at DEBUG
        lg.propagate, lg.handlers = False, [handler]
    try:
        yield handler.buffer
    finally:
        for lg, level, propagate, handlers in saved:
            lg.setLevel(level)
            lg.propagate, lg.handlers = propagate, handlers


class CompositeNotificationHandler:
    """Sends to every handler; True only if all succeeded. Never raises."""

    def __init__(self, handlers: Sequence[NotificationHandler]) -> None:
        self.handlers = list(handlers)
        self.failures: list[ChannelFailure] = []

    def describe(self) -> str:
        return " + ".join(describe_handler(h) for h in self.handlers) or "none"

    def send_notification(self, recipient: str, subject: str, message: str,
                          priority: str = "high") -> bool:
        self.failures = []
        for handler in self.handlers:
            name = describe_handler(handler)
            try:  # one broad catch per channel; a third-party handler may raise anything
                if not handler.send_notification(recipient, subject, message, priority):
                    self.failures += _failures_of(handler, name)
            except Exception as exc:  # noqa: BLE001 - scrubbed, logged and recorded
                self.failures.append(ChannelFailure(name, _scrub(f"{type(exc).__name__}: {exc}")))
                logger.error("❌ Notification handler raised: {}", self.failures[-1])
        return not self.failures


# ------------------------------------------------------------------------------- notifier

@dataclass(frozen=True)
class Notification:
    recipient: str
    subject: str
    message: str
    priority: str


@dataclass(frozen=True)
class NotificationOutcome:
    component: str
    sent: bool
    channel: str
    error: str | None

    def to_dict(self) -> dict[str, object]:
        return {"component": self.component, "sent": self.sent, "channel": self.channel,
                "error": self.error}


def _line(label: str, value: Any) -> list[str]:
    """One aligned `label : value` line, or none at all when the value is absent."""
    if value is None or value == "" or value == []:
        return []
    if isinstance(value, bool):
        value = "yes" if value else "no"
    elif isinstance(value, datetime):
        value = value.isoformat(sep=" ", timespec="seconds")
    return [f"{label:<20} : " + str(value).replace("\n", "\n" + " " * 23)]


def _count(value: Any) -> Any:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value


def _size(n: int) -> str:
    units = ("KiB", "MiB", "GiB")
    exp = min(len(units), max(0, (n.bit_length() - 1) // 10))
    return f"{n:,} bytes" if exp == 0 else f"{n / 1024 ** exp:.1f} {units[exp - 1]}"


def _rule(title: str) -> str:
    return f" {title} ".center(_WIDTH - 16, "-")


_SUMMARY_KEYS = (
    ("files_processed", "Files processed"), ("files_failed", "Files failed"),
    ("records_count", "Records"), ("duplicates_removed", "Duplicates removed"),
    ("data_updated", "Data updated"), ("tables_processed", "Tables processed"),
    ("tables_changed", "Tables changed"), ("tables_created", "Versions written"),
    ("data_validation", "Data validation"), ("execution_time", "Execution time"),
)
_CONTEXT_KEYS = (
    ("run_id", "Run ID"), ("started_at", "Started at"), ("finished_at", "Finished at"),
    ("overall_status", "Overall status"), ("source_dir", "Source folder"),
    ("schema_path", "Schema file"), ("annotation_path", "Annotation file"),
    ("default_dir", "Output folder"), ("max_retries", "Max retries"),
    ("on_bad_rows", "Bad-row policy"), ("dpo_version", "dpo version"), ("host", "Host"),
)


def _all_errors(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The phase's errors, plus per-table errors the phase list does not already hold."""
    errors = list(result.get("errors") or [])
    seen = {(e.get("error_type"), e.get("message"), e.get("table")) for e in errors}
    for detail in result.get("details") or []:
        err = detail.get("error")
        if err and (err.get("error_type"), err.get("message"), err.get("table")) not in seen:
            errors.append(err)
    return errors


def _action_line(action: dict[str, Any]) -> str:
    status = "SUCCEEDED" if action.get("success") else "FAILED"
    detail = f" — {action['detail']}" if action.get("detail") else ""
    return f"{action.get('action')} of {action.get('table')}: {status}{detail}"


def _next_step(err: dict[str, Any], ctx: dict[str, Any]) -> str:
    """Concrete advice for one error, naming the file, cell or folder involved."""
    file, table, col = err.get("file"), err.get("table"), err.get("column")
    where = f"in {file}" + (f" (sheet {err['sheet']})" if err.get("sheet") else "")
    cell = ", ".join(f"{k} {err[k]}" for k in ("row", "column") if err.get(k))
    total = int(err.get("cells_total") or 0)
    cell = (f"the {total:,} cells listed above (first: {cell})" if total > 1
            else f"the cell at {cell}")
    retries = f" after {ctx['max_retries']} retries" if ctx.get("max_retries") else ""
    steps = {
        "FILE_NOT_FOUND": f"Check the source folder {file or ctx.get('source_dir')}: it must "
                          "exist and hold the exported files named as the schema expects.",
        "FILE_READ_ERROR": f"Open {file} in Excel: it may be corrupt, still being copied or "
                           "lack the expected sheet. Re-export it, then rerun.",
        "MISSING_FIELDS": f"Restore the missing column(s) {where}, or correct required_fields "
                          f"in {ctx.get('schema_path') or 'the schema file'}.",
        "DATA_PROCESSING_ERROR": f"Fix {cell} {where}, or "
                                 "rerun with --on-bad-rows quarantine to load the good rows now.",
        "SCHEMA_MISMATCH": f"Make {file or table}{' column ' + col if col else ''} match the "
                           f"dtype in {ctx.get('schema_path') or 'the schema file'}.",
        "SCHEMA_INVALID": f"Correct {file or ctx.get('schema_path')} as listed above; no data "
                          "was read.",
        "CONFIG_ERROR": "Correct the setting named above (argument, config file or flag).",
        "WRITE_ERROR": "Check free disk space and write permission on "
                       f"{ctx.get('default_dir') or 'the output folder'}.",
        "INTEGRITY_ERROR": f"{file} of {table} no longer matches its recorded hash: restore a "
                           "verified earlier version.",
        "ROLLBACK_ERROR": f"No verified earlier copy of {table} exists: fix the error above "
                          "and rerun.",
        "LOCKED": f"{file} stayed locked{retries} (open in Excel or still copying): close it "
                  "and rerun.",
    }
    return steps.get(str(err.get("error_type")),
                     f"Read the log of run {ctx.get('run_id', '')}, fix the cause and rerun.")


def _summary(res: dict[str, Any]) -> list[str]:
    lines = [_rule("SUMMARY")]
    for key, label in _SUMMARY_KEYS:
        lines += _line(label, _count(res.get(key)))
    details = res.get("details") or []
    statuses = [str(d.get("status")) for d in details]
    by_status = ", ".join(f"{statuses.count(s)} {s}" for s in dict.fromkeys(statuses))
    lines += _line("Tables", f"{len(details)} ({by_status})" if details else None)
    rejected = sum(int(d.get("rows_rejected") or 0) for d in details)
    lines += _line("Rows quarantined", _count(rejected) if rejected else None)
    lines += _line("Files moved", len(res["files_moved"]) if "files_moved" in res else None)
    lines += _line("Errors", len(_all_errors(res)))
    actions = res.get("healing_actions") or []
    ok = sum(1 for a in actions if a.get("success"))
    return [*lines, *_line("Healing actions", f"{len(actions)} ({ok} succeeded, "
                           f"{len(actions) - ok} failed)" if actions else 0), ""]


def _error_block(n: int, err: dict[str, Any], actions: list[dict[str, Any]]) -> list[str]:
    lines = ["", f"ERROR #{n}: {err.get('error_type')}"]
    for key in ("table", "file", "sheet", "row", "column", "message"):
        lines += [f"  {ln}" for ln in _line(key.capitalize(), err.get(key))]
    cells, shown = err.get("cells") or [], _MAX_CELLS_SHOWN
    total = int(err.get("cells_total") or len(cells))
    if cells:
        lines.append(f"  {'Bad values':<20} : {total:,} (first: {cells[0].get('value')!r})")
        lines += [f"    - {_cell_place(c, err)}row {c.get('row')}, column {c.get('column')}: "
                  f"{c.get('value')!r} {c.get('reason')}" for c in cells[:shown]]
        if total > min(len(cells), shown):
            lines.append(f"    ... and {total - min(len(cells), shown):,} more")
    mine = [a for a in actions if err.get("table") and a.get("table") == err["table"]]
    if err.get("table"):
        lines.append("  Recovery actions:" if mine else
                     "  Recovery actions: none were attempted for this table")
    return lines + [f"    {i}. {_action_line(a)}" for i, a in enumerate(mine, 1)]


def _cell_place(cell: dict[str, Any], err: dict[str, Any]) -> str:
    """File and sheet of a bad cell, when they differ from the error's own (merged files)."""
    same = (cell.get("file"), cell.get("sheet")) == (err.get("file"), err.get("sheet"))
    return "" if same else f"{cell.get('file')} [{cell.get('sheet')}] "


def _error_details(res: dict[str, Any]) -> list[str]:
    actions = res.get("healing_actions") or []
    lines = [_rule("ERROR DETAILS")]
    for n, err in enumerate(_all_errors(res), 1):
        lines += _error_block(n, err, actions)
    warnings = []
    for d in res.get("details") or []:
        warnings += [f"WARNING ({d.get('table')}): {w}" for w in d.get("warnings") or []]
        if d.get("rows_rejected"):
            warnings.append(f"WARNING ({d.get('table')}): {d['rows_rejected']:,} row(s) "
                            "quarantined; the other rows were loaded")
    lines += ["", *warnings] if warnings else []
    return [*lines, *([] if lines[1:] else ["No errors were recorded for this phase."]), ""]


def _healing(res: dict[str, Any]) -> list[str]:
    body = [f"{i}. {_action_line(a)}" for i, a in enumerate(res.get("healing_actions") or [], 1)]
    return [_rule("HEALING ACTIONS"), *(body or ["No healing actions were taken."]), ""]


def _next_steps(res: dict[str, Any], ctx: dict[str, Any]) -> list[str]:
    steps = [_next_step(e, ctx) for e in _all_errors(res)]
    steps += [f"Rollback of {a.get('table')} failed, so its previous output is not in place: "
              "fix the error above and rerun before using that table."
              for a in res.get("healing_actions") or []
              if a.get("action") == "rollback" and not a.get("success")]
    if res.get("reason"):
        steps.append(f"This phase did not run: {res['reason']}")
    if not steps and res.get("status") == "warning":
        steps.append("Data was loaded; review the warnings above before the next run.")
    return [_rule("NEXT STEPS"), *(f"{i}. {s}" for i, s in enumerate(dict.fromkeys(steps), 1)),
            ""]


def _metadata(res: dict[str, Any], ctx: dict[str, Any]) -> list[str]:
    lines = [_rule("METADATA")]
    for key, label in _CONTEXT_KEYS:
        lines += _line(label, ctx.get(key))
    known = {k for k, _ in _CONTEXT_KEYS}
    for key, value in ctx.items():  # whatever else the caller thought worth recording
        if key not in known and isinstance(value, str | int | float | datetime | Path):
            lines += _line(key, value)
    seconds = res.get("execution_seconds")
    lines += _line("Duration (s)", f"{seconds:.3f}" if seconds is not None else None)
    for key, label in (("disk_usage_bytes", "Disk usage"), ("peak_memory_bytes", "Peak memory")):
        lines += _line(label, _size(res[key]) if res.get(key) else None)
    return [*lines, ""]


class ManualReviewNotifier:
    """Builds the seed's manual-review message from a phase result dict, and sends it."""

    def __init__(self, handler: NotificationHandler, *, recipient: str = "plant-data-team",
                 agent: str = "DataPipelineOrchestrator") -> None:
        self.handler = handler
        self.recipient = recipient
        self.agent = agent

    def build_message(self, component_result: dict[str, Any], *,
                      run_context: dict[str, Any]) -> Notification:
        res, ctx = component_result, run_context
        component, status = str(res.get("component")), str(res.get("status"))
        now = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
        header = ["=" * _WIDTH, "MANUAL REVIEW NOTIFICATION".center(_WIDTH).rstrip(),
                  "=" * _WIDTH, "", *_line("Agent ID", self.agent),
                  *_line("Component", component), *_line("Status", status.upper()),
                  *_line("Timestamp", now), *_line("Run ID", ctx.get("run_id")),
                  *_line("Overall status", str(ctx.get("overall_status") or "").upper()),
                  *_line("Reason", res.get("reason")), ""]
        lines = [*header, *_summary(res), *_error_details(res), *_healing(res),
                 *_next_steps(res, ctx), *_metadata(res, ctx), "=" * _WIDTH]
        priority = {"warning": "medium", "success": "low"}.get(status, "high")
        # _scrub: a run_context value or error text could quote a channel URL with its secret
        return Notification(self.recipient, f"Manual Review Required: {component}",
                            _scrub("\n".join(lines) + "\n"), priority)

    def notify(self, component_result: dict[str, Any], *, run_context: dict[str, Any],
               send: bool = True) -> tuple[Notification, NotificationOutcome]:
        note = self.build_message(component_result, run_context=run_context)
        component = str(component_result.get("component"))
        if not send:
            return note, NotificationOutcome(component, False, "disabled", None)
        channel = describe_handler(self.handler)
        logger.info("📧 Sending manual review notification for {} to {} via {} (priority {})",
                    component, note.recipient, channel, note.priority)
        try:  # one broad catch: whatever the channel does, the pipeline goes on
            ok = self.handler.send_notification(note.recipient, note.subject, note.message,
                                                note.priority)
            error = None if ok else "; ".join(map(str, _failures_of(self.handler, channel)))
        except Exception as exc:  # noqa: BLE001 - scrubbed, logged and returned in the outcome
            ok, error = False, _scrub(f"{type(exc).__name__}: {exc}")
        if ok:
            logger.info("📧 Manual review notification for {} sent", component)
        else:
            logger.warning("⚠️ Manual review notification for {} not sent: {}", component, error)
        return note, NotificationOutcome(component, ok, channel, error)

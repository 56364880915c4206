"""Notification channels: mock, file, apprise URLs (e-mail, webhooks), and redaction.

Channels are apprise URLs (mailto://, json://, mmost://, slack://, ...). A failing channel is
logged and recorded, never raised: a notification problem must not fail the pipeline. URLs carry
passwords and tokens, so every place a channel is named goes through `redact_url`.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from logging.handlers import BufferingHandler
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote

from loguru import logger

from dpo.faults import checkpoint
from dpo.fsio import TMP_MARK

_EMAIL_SCHEMES = frozenset({"mailto", "mailtos"})
# Query keys whose values only route or format a message; any other value may be a secret.
_SAFE_QUERY_KEYS = frozenset({
    "from", "to", "cc", "bcc", "reply", "name", "smtp", "mode", "format", "overflow", "cto",
    "rto", "verify", "method", "tz", "emojis", "priority", "user", "image", "footer", "channel",
})
_URL_IN_TEXT = re.compile(r"\b(?!file://)[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")  # file paths stay


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


def scrub(text: str, secrets: Sequence[str] = ()) -> str:
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


def failures_of(handler: object, name: str) -> list[ChannelFailure]:
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


# The parts of a manual-review subject (notify.review builds it): "Manual Review Required:
# COMPONENT · PLANT · failed: TABLE, TABLE" (or "to review: TABLE…", "did not run", "failed").
SUBJECT_PARTS = " · "
SUBJECT_LEAD = "Manual Review Required: "
_MAX_NAMED_TABLES = 4
_OUTCOMES = ("failed", "to review:", "did not run")


def file_stem(subject: str) -> str:
    """A notification file's name after its time: component and failed tables, whole
    ('DataCollector_failed_purchaseOrders'); the plant is the folder's. Another subject: its
    words, to 80 characters."""
    def words(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")

    component, *rest = subject.split(SUBJECT_PARTS)
    if not component.startswith(SUBJECT_LEAD):
        return words(subject)[:80].strip("_") or "notification"
    outcome = rest[-1] if rest and rest[-1].startswith(_OUTCOMES) else "review"  # last part
    label, _, listed = outcome.partition(":")
    tables = [words(t) for t in listed.split(",") if words(t)]
    if len(tables) > _MAX_NAMED_TABLES:
        more = len(tables) - _MAX_NAMED_TABLES + 1
        tables = [*tables[:_MAX_NAMED_TABLES - 1], f"and_{more}_more"]
    said = "_".join([words(label.removeprefix("to ")), *tables])
    return f"{words(component.removeprefix(SUBJECT_LEAD))}_{said}"


class FileNotificationHandler:
    """Writes each notification as a text file, mode 0o600 since it may quote plant data."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def describe(self) -> str:
        return f"file:{self.folder}"

    def send_notification(self, recipient: str, subject: str, message: str,
                          priority: str = "high") -> bool:
        now = datetime.now().astimezone()
        text = (f"To: {recipient}\nSubject: {subject}\nPriority: {priority}\n"
                f"Date: {now.isoformat(timespec='seconds')}\n\n{message}")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f"{now:%Y%m%d_%H%M%S_%f}_{file_stem(subject)}.txt"
            # Written whole under a temp name (mkstemp: 0o600 from creation on), then linked in:
            # a crash never leaves a partial notification, and link() never overwrites one.
            fd, tmp = tempfile.mkstemp(prefix=TMP_MARK, suffix=".txt", dir=self.folder)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    os.fchmod(fh.fileno(), 0o600)  # umask can only narrow it; be explicit
                    fh.write(text)
                    fh.flush()
                    os.fsync(fh.fileno())
                checkpoint("notify:file:written")
                os.link(tmp, path)
                checkpoint("notify:file:linked")
            finally:
                os.unlink(tmp)
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
        import apprise  # imported here: a run with no notification to send never pays for it

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
            self.failures.append(ChannelFailure(channel, scrub(reason, secrets)))
            logger.error("❌ Notification channel failed: {}", self.failures[-1])
        return not self.failures

    def _send_one(self, url: str, subject: str, message: str, priority: str) -> str | None:
        """None when delivered, else why not (not yet scrubbed: the caller does that)."""
        import apprise

        types = {"high": apprise.NotifyType.FAILURE, "medium": apprise.NotifyType.WARNING}
        with _quarantined_logs() as records:
            plugin = apprise.Apprise.instantiate(url)
            if plugin is None:
                return "URL not understood by apprise (unknown scheme or missing parts)"
            plugin.socket_connect_timeout = plugin.socket_read_timeout = self.timeout
            if not re.search(r"[?&]format=", url):  # else e-mail goes out as HTML, columns lost
                plugin.notify_format = apprise.NotifyFormat.TEXT
            sender = apprise.Apprise()
            sender.add(plugin)
            ok = sender.notify(body=message, title=subject,
                               notify_type=types.get(priority, apprise.NotifyType.INFO),
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
                    self.failures += failures_of(handler, name)
            except Exception as exc:  # noqa: BLE001 - scrubbed, logged and recorded
                self.failures.append(ChannelFailure(name, scrub(f"{type(exc).__name__}: {exc}")))
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

"""Retry of transient failures (locked file, file still being copied) with backoff."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from loguru import logger
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from dpo.errors import TransientError

T = TypeVar("T")
# Told of each retry once the file's read is over: (the retry's message, whether it worked).
RetryReport = Callable[[str, bool], None]


def with_retries(
    func: Callable[[], T], *, max_retries: int, what: str, base_wait: float = 0.5,
    on_retry: Callable[[str], None] | None = None,
) -> T:
    """Call `func`; retry TransientError up to `max_retries` times. Other errors pass through."""

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        message = f"retry {state.attempt_number}/{max_retries} of {what}: {exc}"
        logger.warning("⚠️ {}", message)
        if on_retry is not None:
            on_retry(message)

    retrying = Retrying(
        stop=stop_after_attempt(max_retries + 1),
        wait=wait_exponential(multiplier=base_wait, max=8),
        retry=retry_if_exception_type(TransientError),
        before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(func)


def report_retries(messages: Sequence[str], read_ok: bool, on_retry: RetryReport) -> None:
    """Say each retry of one file's read: only the last one can have worked, when the read
    did; every earlier one failed (a retry line says `ok` only for a retry that succeeded)."""
    for i, message in enumerate(messages, 1):
        on_retry(message, read_ok and i == len(messages))

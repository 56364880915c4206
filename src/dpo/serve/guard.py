"""Who may ask `dpo serve` for a run: the bearer check and a brake on guessing and flooding.

Per client address, within a sliding `window`: after `max_failures` failed authentications
a WARNING, and every POST /run from that address gets 429 (with Retry-After) until the oldest
failure leaves the window, the right token included (a guess cannot be confirmed meanwhile);
at most `max_requests` POST /run of any outcome. Guessing a 16-character token at 5 tries a
minute is hopeless; a script that asks for runs in a loop gets 429, not a queue of runs (the
runner folds requests into one follow-up run anyway). At most `max_addresses` are remembered,
the least recently seen forgotten first: the memory is bounded whatever the clients.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from loguru import logger


def bearer_matches(header: str, token: str) -> bool:
    """`Authorization: Bearer <token>`: the scheme in any case (RFC 7235 2.1), the token
    exactly, compared in constant time."""
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.lstrip(" ").encode(),
                                                               token.encode())


@dataclass
class _Client:
    failures: deque[float] = field(default_factory=deque)
    requests: deque[float] = field(default_factory=deque)


class Throttle:
    def __init__(self, window: float = 60.0, max_failures: int = 5, max_requests: int = 10,
                 max_addresses: int = 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.max_failures = max_failures
        self.max_requests = max_requests
        self.max_addresses = max_addresses
        self.clock = clock
        self.lock = threading.Lock()
        self.clients: OrderedDict[str, _Client] = OrderedDict()

    def _client(self, address: str, now: float) -> _Client:
        client = self.clients.pop(address, None) or _Client()
        self.clients[address] = client  # most recently seen last
        while len(self.clients) > self.max_addresses:
            self.clients.popitem(last=False)
        for times in (client.failures, client.requests):
            while times and times[0] <= now - self.window:
                times.popleft()
        return client

    def admit(self, address: str) -> float | None:
        """None: go ahead (the request is counted); else the seconds to wait (429)."""
        with self.lock:
            now = self.clock()
            client = self._client(address, now)
            full = [times for times, most in ((client.failures, self.max_failures),
                                              (client.requests, self.max_requests))
                    if len(times) >= most]
            if full:
                return max(times[0] + self.window - now for times in full)
            client.requests.append(now)
            return None

    def failed(self, address: str) -> None:
        with self.lock:
            now = self.clock()
            client = self._client(address, now)
            client.failures.append(now)
            count = len(client.failures)
        if count == self.max_failures:
            logger.warning("⚠️ {} failed authentications for POST /run from {} within {:.0f} s: "
                           "its requests get 429 for a while", count, address, self.window)

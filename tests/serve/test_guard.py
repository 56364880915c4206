"""The bearer check and the throttle of POST /run (dpo.serve.guard), each rule pinned on its
own; the same rules over real HTTP are in test_serve.py and test_hostile.py."""

from __future__ import annotations

from dpo.serve.guard import Throttle, bearer_matches

TOKEN = "Plant-Token-0123456789abcdef"


def test_the_exact_token_is_accepted() -> None:
    assert bearer_matches(f"Bearer {TOKEN}", TOKEN)


def test_the_token_with_a_suffix_is_refused() -> None:
    assert not bearer_matches(f"Bearer {TOKEN}x", TOKEN)
    assert not bearer_matches(f"Bearer {TOKEN[:-1]}", TOKEN)  # nor a prefix of it


def test_the_token_in_other_case_is_refused() -> None:
    assert not bearer_matches(f"Bearer {TOKEN.swapcase()}", TOKEN)
    assert not bearer_matches(f"Bearer {TOKEN.lower()}", TOKEN)


def test_the_scheme_in_any_case_is_accepted() -> None:
    for scheme in ("bearer", "BEARER", "BeArEr"):
        assert bearer_matches(f"{scheme} {TOKEN}", TOKEN), scheme


def test_no_scheme_or_another_scheme_is_refused() -> None:
    for header in (TOKEN, f"Basic {TOKEN}", f"Bearer{TOKEN}", "", "Bearer ", f"Token {TOKEN}"):
        assert not bearer_matches(header, TOKEN), header


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failures_within_the_window_throttle_the_address_until_the_oldest_leaves() -> None:
    clock = Clock()
    throttle = Throttle(window=60, max_failures=5, max_requests=100, clock=clock)
    for _ in range(5):
        assert throttle.admit("10.0.0.7") is None
        throttle.failed("10.0.0.7")
        clock.now += 1
    wait = throttle.admit("10.0.0.7")

    assert wait is not None and 55 <= wait <= 56  # until the first failure is 60 s old
    assert throttle.admit("10.0.0.8") is None  # another address is not held back
    clock.now += wait
    assert throttle.admit("10.0.0.7") is None  # one more try, then held back again


def test_requests_of_any_outcome_are_limited_per_window() -> None:
    clock = Clock()
    throttle = Throttle(window=60, max_failures=5, max_requests=3, clock=clock)

    assert [throttle.admit("10.0.0.7") for _ in range(3)] == [None] * 3
    assert throttle.admit("10.0.0.7") == 60
    clock.now += 60
    assert throttle.admit("10.0.0.7") is None


def test_the_addresses_remembered_are_bounded() -> None:
    throttle = Throttle(max_addresses=3, clock=Clock())
    for i in range(10):
        throttle.failed(f"10.0.0.{i}")

    assert list(throttle.clients) == ["10.0.0.7", "10.0.0.8", "10.0.0.9"]

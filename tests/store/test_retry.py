"""dpo.store.objects.retry, through dpo.store.objects.client, against the real S3 server
(moto's) behind the fault proxy: an ambiguous conditional write is read back, transient
failures are retried within the budget, and every failure is one line naming the URL."""

from __future__ import annotations

from collections.abc import Iterator

import obstore
import pytest
from faultproxy import FaultProxy, Rule
from obstore.store import from_url

from dpo.errors import ConfigError, DpoError
from dpo.store.objects import client, retry
from dpo.store.objects.client import ObjectChanged, ObjectExists

pytestmark = pytest.mark.usefixtures("s3_server")


@pytest.fixture
def short_budget() -> Iterator[None]:
    before = retry.policy()
    retry.configure(timeout=5, budget=3)
    yield
    retry._POLICY[0] = before


def through(endpoint: str, url: str) -> obstore.store.ObjectStore:
    config = {"endpoint": endpoint, "access_key_id": "dpo-test-key",
              "secret_access_key": "dpo-test-secret", "region": "us-east-1"}
    return from_url(url, config=config, client_options=retry.client_options(endpoint),
                    retry_config=retry.retry_config())


def direct(s3_server: str, s3_url: str) -> obstore.store.ObjectStore:
    return through(s3_server, s3_url)


@pytest.mark.parametrize("fault", ["drop", "reset", "slowdown", "internal", "truncate"])
def test_a_create_only_put_that_fails_ambiguously_is_read_back(
        s3_server: str, s3_url: str, fault: str) -> None:
    with FaultProxy(s3_server, seed=1, rules=[Rule((fault,), method="PUT", limit=1)]) as proxy:
        store = through(proxy.url, s3_url)
        e_tag = client.put(store, "_dpo/manifests/00000001.json", b"ours", mode="create")
        assert sum(proxy.injected.values()) == 1, proxy.log
    got = obstore.get(direct(s3_server, s3_url), "_dpo/manifests/00000001.json")
    assert bytes(got.bytes()) == b"ours" and got.meta["e_tag"] == e_tag


def test_a_create_that_another_writer_won_is_lost_even_when_the_answer_is(
        s3_server: str, s3_url: str) -> None:
    obstore.put(direct(s3_server, s3_url), "k", b"theirs", mode="create")
    with FaultProxy(s3_server, rules=[Rule(("drop",), method="PUT", limit=1)]) as proxy:
        store = through(proxy.url, s3_url)
        with pytest.raises(ObjectExists):
            client.put(store, "k", b"ours", mode="create")
        assert proxy.injected["drop"] == 1
        with pytest.raises(ObjectExists):  # no fault: the server's own answer
            client.put(store, "k", b"ours", mode="create")


def test_an_if_match_put_whose_answer_was_lost_is_ours_with_the_new_etag(
        s3_server: str, s3_url: str) -> None:
    first = obstore.put(direct(s3_server, s3_url), "lease", b"one")["e_tag"]
    with FaultProxy(s3_server, rules=[Rule(("drop",), method="PUT", limit=1)]) as proxy:
        store = through(proxy.url, s3_url)
        second = client.put(store, "lease", b"two", mode={"e_tag": first})
        assert proxy.injected["drop"] == 1
        with pytest.raises(ObjectChanged):  # the old ETag no longer matches
            client.put(store, "lease", b"three", mode={"e_tag": first})
    assert second == obstore.head(direct(s3_server, s3_url), "lease")["e_tag"] != first


def test_a_cut_off_listing_is_read_again_whole(s3_server: str, s3_url: str) -> None:
    for n in range(30):
        obstore.put(direct(s3_server, s3_url), f"v/{n:03d}", b"x")
    with FaultProxy(s3_server, rules=[Rule(("truncate",), method="GET", limit=2)]) as proxy:
        found = client.list_objects(through(proxy.url, s3_url), "v/")
        assert proxy.injected["truncate"] == 2
    assert sorted(m["path"] for m in found) == [f"v/{n:03d}" for n in range(30)]


@pytest.mark.usefixtures("short_budget")
def test_throttling_past_the_budget_is_one_line_naming_the_object_and_the_tries(
        s3_server: str, s3_url: str) -> None:
    with FaultProxy(s3_server, rules=[Rule(("slowdown",))]) as proxy:
        with pytest.raises(DpoError) as raised:
            client.get_bytes(through(proxy.url, s3_url), "_dpo/lease.json")
        tries = proxy.injected["slowdown"]
    message = raised.value.message
    assert not isinstance(raised.value, ConfigError)
    assert f"{s3_url}/_dpo/lease.json" in message and "throttled" in message, message
    assert f"after {tries} tries" in message and "\n" not in message and tries > 2


@pytest.mark.usefixtures("short_budget")
@pytest.mark.parametrize(("answer", "said"), [("badkey", "refused the credentials"),
                                             ("denied", "access denied"),
                                             ("region", "another region")])
def test_a_misconfigured_store_is_a_config_error_naming_the_url(
        s3_server: str, s3_url: str, answer: str, said: str) -> None:
    with FaultProxy(s3_server, rules=[Rule((answer,))]) as proxy:
        with pytest.raises(ConfigError) as raised:
            client.put(through(proxy.url, s3_url), "k", b"x", mode="create")
        assert proxy.injected[answer] == 1  # not retried: it will not get better
    assert said in raised.value.message and s3_url in raised.value.message


@pytest.mark.usefixtures("short_budget")
def test_a_missing_bucket_and_a_closed_port_are_config_errors(s3_server: str) -> None:
    with pytest.raises(ConfigError, match="the bucket no-such-bucket-x does not exist"):
        client.list_objects(through(s3_server, "s3://no-such-bucket-x/store"), "_dpo/")
    with pytest.raises(ConfigError, match=r"cannot reach http://127\.0\.0\.1:1 \(\d+ tries"):
        client.get_bytes(through("http://127.0.0.1:1", "s3://b/store"), "k")
    with pytest.raises(ConfigError, match="TLS failed"):
        client.get_bytes(through(s3_server.replace("http://", "https://"), "s3://b/store"), "k")


def test_credentials_are_required_unless_the_instance_role_is_asked_for(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_WEB_IDENTITY_TOKEN_FILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_SKIP_SIGNATURE"):
        monkeypatch.delenv(name, raising=False)
    missing = retry.without_credentials("s3://b/p", {})
    assert missing is not None and missing.startswith("no credentials for s3://b/p")
    assert retry.without_credentials("s3://b/p", {"instance_credentials": "true"}) is None
    assert retry.without_credentials("s3://b/p", {"access_key_id": "k",
                                                  "secret_access_key": "s"}) is None
    assert retry.without_credentials("gs://b/p", {}) is None  # S3 only, for now
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    assert retry.without_credentials("s3://b/p", {}) is None

"""A store on object storage misconfigured as a new user would, through the `dpo` command: each
is one line naming the URL and what to do, never a traceback; exit 2 for the configuration
(credentials, bucket, endpoint), 1 for a run that failed (throttled past the retry budget).
Against the real S3 server (moto's) and the fault proxy (answers moto does not give)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from subprocess import CompletedProcess

import pytest
from faultproxy import FaultProxy, Rule
from pipelinetools import dpo, free_port, make_plant

pytestmark = pytest.mark.usefixtures("s3_server")

QUICK = {"DPO_STORAGE_RETRY_BUDGET": "2", "DPO_STORAGE_TIMEOUT": "5"}


def said(done: CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"


def error_line(done: CompletedProcess[str]) -> str:
    """The one `error:` line the command printed (and nothing like a traceback)."""
    text = done.stdout + done.stderr
    assert "Traceback" not in text, said(done)
    lines = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, said(done)
    return lines[0]


def run_against(root: Path, url: str, env: dict[str, str], *args: str) -> CompletedProcess[str]:
    return dpo(*(args or ("run",)), "--root", root, "--default-dir", url,
               env={**QUICK, **env}, timeout=120)


def test_a_bucket_that_does_not_exist(tmp_path: Path, s3_url: str) -> None:
    root = make_plant(tmp_path).root
    url = "s3://dpo-no-such-bucket/plant"
    done = run_against(root, url, {})
    assert done.returncode == 2, said(done)
    line = error_line(done)
    assert url in line and "does not exist" in line and "create it" in line, line
    listed = run_against(root, url, {}, "versions", "purchaseOrders")
    assert listed.returncode == 2 and "does not exist" in error_line(listed), said(listed)


def test_an_endpoint_nobody_listens_on(tmp_path: Path, s3_url: str) -> None:
    root = make_plant(tmp_path).root
    endpoint = f"http://127.0.0.1:{free_port()}"
    done = run_against(root, s3_url, {"AWS_ENDPOINT_URL": endpoint})
    assert done.returncode == 2, said(done)
    line = error_line(done)
    assert f"cannot reach {endpoint}" in line and s3_url in line, line
    assert re.search(r"\(\d+ tries over \d+ s\)", line), line


def test_tls_to_a_plain_http_server(tmp_path: Path, s3_url: str, s3_server: str) -> None:
    root = make_plant(tmp_path).root
    done = run_against(root, s3_url, {"AWS_ENDPOINT_URL": s3_server.replace("http", "https")})
    assert done.returncode == 2, said(done)
    assert "TLS failed" in error_line(done)


def test_no_credentials_never_asks_the_cloud_metadata_endpoint(
        tmp_path: Path, s3_url: str) -> None:
    """Without keys obstore would ask 169.254.169.254 for an instance role: dpo stops first,
    before any request, unless the configuration asks for instance credentials."""
    root = make_plant(tmp_path).root
    env = {k: v for k, v in os.environ.items() if k not in (
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    done = dpo("run", "--root", root, "--default-dir", s3_url,
               env={**env, **QUICK, "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
    assert done.returncode == 2, said(done)
    line = error_line(done)
    assert f"no credentials for {s3_url}" in line and "instance_credentials" in line, line


@pytest.mark.parametrize(("answer", "words"), [("badkey", "refused the credentials"),
                                              ("denied", "access denied"),
                                              ("region", "another region")])
def test_answers_of_a_misconfigured_store(tmp_path: Path, s3_url: str, s3_server: str,
                                          answer: str, words: str) -> None:
    root = make_plant(tmp_path).root
    with FaultProxy(s3_server, rules=[Rule((answer,))]) as proxy:
        done = run_against(root, s3_url, {"AWS_ENDPOINT_URL": proxy.url})
    assert done.returncode == 2, said(done)
    line = error_line(done)
    assert words in line and s3_url in line, line


@pytest.mark.parametrize("target", [r"_dpo/manifests/", r"_dpo/lease\.json"])
def test_throttled_past_the_budget_is_a_failed_run_in_the_history(
        tmp_path: Path, s3_url: str, s3_server: str, target: str) -> None:
    """Past the budget on the manifests (during the run) or on the lease (before the run
    could hold the store): a failed run, recorded."""
    root = make_plant(tmp_path).root
    assert run_against(root, s3_url, {}).returncode == 0
    with FaultProxy(s3_server, rules=[Rule(("slowdown",), key=target)]) as proxy:
        done = run_against(root, s3_url, {"AWS_ENDPOINT_URL": proxy.url})
        assert proxy.injected["slowdown"] > 2
    assert done.returncode == 1, said(done)
    text = done.stdout + done.stderr
    assert "Traceback" not in text and "throttled" in text and "tries" in text, said(done)
    history = dpo("history", "--json", "--root", root, "--default-dir", s3_url)
    runs = [r for r in json.loads(history.stdout) if r["kind"] == "run"]
    assert [r["overall_status"] for r in runs][:2] == ["failed", "success"], runs

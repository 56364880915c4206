"""deploy/dpo.service: a unit systemd accepts as written (systemd-analyze verify where systemd
is installed) with the limits and the hardening a network service on a plant should have."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).parents[2] / "deploy" / "dpo.service"


def service_section() -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    return dict(parser["Service"])


def test_the_unit_bounds_and_hardens_the_service() -> None:
    service = service_section()

    assert int(service["LimitNOFILE"]) >= 1024
    assert service["MemoryMax"].rstrip("KMGT").isdigit()
    for key in ("NoNewPrivileges", "PrivateTmp", "ProtectHome"):
        assert service[key] == "yes", key
    assert service["ProtectSystem"] == "strict"
    assert set(service["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    # strict makes everything read-only: the plant (output, lock, ledger) must stay writable,
    # and it is where dpo runs.
    assert service["ReadWritePaths"].split() == ["/srv/plant"]
    assert service["WorkingDirectory"] == "/srv/plant"
    assert "--root /srv/plant" in service["ExecStart"]
    assert "--listen 127.0.0.1:" in service["ExecStart"]


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: the unit is checked by parsing only")
    # verify checks that ExecStart's program exists: point it at one that does.
    unit = tmp_path / "dpo.service"
    unit.write_text(UNIT.read_text(encoding="utf-8").replace("/opt/dpo/venv/bin/dpo",
                                                              shutil.which("true") or "/bin/true"),
                    encoding="utf-8")
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60, check=False)

    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr  # an unknown key is only a warning there

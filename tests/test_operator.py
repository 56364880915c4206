"""Issue #12, operator experience: what a plant engineer hits in the first hour (real `dpo`
subprocesses on real plants written by `dpo.demo`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pipelinetools import ANNOTATIONS, dpo, every_file, make_plant


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in every_file(folder)}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    make_plant(tmp_path / "plant")
    return tmp_path / "plant"


# -- 1. `dpo demo` never overwrites a real plant ----------------------------------------------

@pytest.mark.parametrize("where", ["target", "cwd-dot"])
def test_demo_refuses_a_folder_it_did_not_make_and_changes_nothing(root: Path,
                                                                   where: str) -> None:
    assert dpo("run", "--root", root, "--json").returncode == 0
    before = snapshot(root)

    done = (dpo("demo", root, "--months", "1", "--rows", "10") if where == "target"
            else dpo("demo", ".", "--months", "1", "--rows", "10", cwd=root))

    assert done.returncode == 2, done.stdout + done.stderr
    assert "not empty" in done.stderr and "nothing was written" in done.stderr
    assert "Traceback" not in done.stderr
    assert snapshot(root) == before


def test_demo_writes_into_a_new_or_empty_folder_and_again_into_its_own(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    first = dpo("demo", empty, "--months", "1", "--rows", "20")
    assert first.returncode == 0, first.stderr
    assert (empty / ".dpo-demo").is_file()
    again = dpo("demo", empty, "--months", "1", "--rows", "20")  # its own folder: allowed
    assert again.returncode == 0, again.stderr
    assert set(json.loads((empty / ANNOTATIONS).read_text(encoding="utf-8")))

    a_file = tmp_path / "file.txt"
    a_file.write_text("x", encoding="utf-8")
    assert dpo("demo", a_file).returncode == 2
    assert a_file.read_text(encoding="utf-8") == "x"


def test_demo_rejects_impossible_sizes_with_exit_2(tmp_path: Path) -> None:
    done = dpo("demo", tmp_path / "d", "--months", "0")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert not (tmp_path / "d").exists()

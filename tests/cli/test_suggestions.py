"""Every command a message suggests exists (#12 item 4): each backticked `dpo …` suggestion in
the source is run with --help, and each flag it names must be in that help; a bare --flag in a
notification or report template must be a `dpo run` option."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest
from pipelinetools import dpo

SRC = Path(__file__).resolve().parents[2] / "src" / "dpo"
# Every module: any text may reach people (notifications, reports, console, CLI errors, logs).
TEMPLATES = tuple(sorted(p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py")))
# Their --flags are `dpo run`'s.
BARE_FLAG_MODULES = ("notify/review.py", "notify/reports.py", "store/local/lock.py")


def _texts(module: str) -> list[str]:
    """String constants of a module; an f-string's {fields} become the word VALUE."""
    tree = ast.parse((SRC / module).read_text(encoding="utf-8"))
    texts = []
    parts = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr)
             for v in node.values}
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            texts.append("".join(v.value if isinstance(v, ast.Constant) else "VALUE"
                                 for v in node.values))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in parts:
            texts.append(node.value)
    return texts


def _suggestions() -> list[tuple[str, str]]:
    found = set()
    for module in TEMPLATES:
        for text in _texts(module):
            found.update((module, m) for m in re.findall(r"`dpo ([^`]+)`", text))
    return sorted(found)


@cache
def _help(command: str) -> str:
    done = dpo(*([command] if command else []), "--help")
    assert done.returncode == 0, (command, done.stderr)
    return done.stdout


def test_the_suggestions_are_found() -> None:
    suggested = {s for _, s in _suggestions()}
    assert "run --quarantine" in suggested  # the review message's advice (was a wrong flag)
    assert any(s.startswith("rollback VALUE --release") for s in suggested)
    assert len(suggested) >= 5


@pytest.mark.parametrize(("module", "suggestion"), _suggestions())
def test_every_suggested_command_and_flag_exists(module: str, suggestion: str) -> None:
    words = suggestion.split()
    command = "" if words[0].startswith("-") else words[0]
    if command and not re.fullmatch(r"[a-z]+", command):
        pytest.fail(f"{module}: `dpo {suggestion}` does not name a command")
    text = _help(command)
    if command:
        assert re.search(rf"Usage: .*\b{command}\b", text), (module, suggestion)
    for flag in (w.rstrip(".,;)") for w in words if w.startswith("--")):
        assert flag in text, f"{module}: `dpo {suggestion}`: {flag} is not an option"


def test_bare_flags_in_notifications_and_reports_are_run_options() -> None:
    run_help = _help("run")
    for module in BARE_FLAG_MODULES:
        for text in _texts(module):
            bare = re.sub(r"`dpo [^`]+`", "", text)  # suggestions are checked above
            for flag in re.findall(r"(?<![\w-])--[a-z][a-z-]*", bare):
                assert flag in run_help, f"{module}: {flag!r} in {text!r}"


# -- the README is true (#12 item 12) ----------------------------------------------------------

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def test_dpo_version_prints_the_installed_version() -> None:
    from importlib.metadata import version

    done = dpo("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"dpo {version('dpo')}"


def test_every_command_and_flag_of_the_readme_table_exists() -> None:
    rows = [ln for ln in README.splitlines() if ln.startswith("| `dpo")]
    assert len(rows) >= 12
    for row in rows:
        for usage in re.findall(r"`dpo ([^`]*)`", row.split("|")[1]):
            words = usage.split()
            command = "" if not words or words[0].startswith("-") else words[0]
            text = _help(command)
            for flag in re.findall(r"--[a-z][a-z-]*", usage):
                assert flag in text, f"README: `dpo {usage}`: {flag}"


def test_the_readmes_common_options_are_run_options() -> None:
    section = README.split("Common options:")[1].split("**Exit codes**")[0]
    flags = set(re.findall(r"`(--?[a-z][a-z-]*)", section))
    assert {"--root", "--config", "--quarantine", "--wait", "-v"} <= flags
    for flag in flags:
        assert flag in _help("run"), flag


def test_the_readmes_consumer_snippet_reads_the_current_version(tmp_path: Path) -> None:
    from pipelinetools import make_plant, run

    make_plant(tmp_path / "plant")
    run(tmp_path / "plant")
    for where in ("A consumer reads a table with", "The seed's way stays"):  # open_table, raw
        snippet = README.split(where)[1].split("```python")[1].split("```")[0]
        namespace: dict[str, object] = {}
        exec(snippet.replace("/srv/plant-b", str(tmp_path / "plant")), namespace)
        orders = namespace["orders"]
        assert len(orders) == 50 and "itemQuantity" in orders.columns  # type: ignore[attr-defined]
        assert str(orders.dtypes["itemQuantity"]) == "Int64"  # type: ignore[attr-defined]

"""`dpo` builds only the command a command line names (typer builds each command it holds
from its function's signature at every start), and still knows every command."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dpo.cli import ELSEWHERE, build_app

COMMANDS = ("run", "demo", "validate", "health", *ELSEWHERE)
PROBE = """
import json, sys
from dpo.cli import main
sys.argv = ["dpo", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
print("\\n" + json.dumps(sorted(m for m in sys.modules if m.startswith("dpo.cli."))))
"""


def loaded_cli_modules(*args: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                          timeout=120)
    found: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def test_help_lists_every_command() -> None:
    done = subprocess.run([sys.executable, "-m", "dpo.cli", "--help"], capture_output=True,
                          text=True, timeout=120)
    listed = done.stdout.split("Commands:")[1].split()
    assert done.returncode == 0
    assert set(COMMANDS) <= set(listed)


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_alone_is_the_command_it_names(command: str) -> None:
    app = build_app(command)
    assert [info.name or info.callback.__name__ for info in app.registered_commands  # type: ignore[union-attr]
            ] == [command]


def test_a_run_loads_none_of_the_other_commands_modules() -> None:
    assert loaded_cli_modules("run", "--help") == ["dpo.cli.runtime"]
    assert "dpo.cli.store" in loaded_cli_modules("diff", "--help")


def test_an_unknown_command_is_refused_with_the_usage_of_all() -> None:
    done = subprocess.run([sys.executable, "-m", "dpo.cli", "nosuch"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert "No such command 'nosuch'" in done.stderr

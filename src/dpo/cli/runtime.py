"""What every `dpo` command shares: the exit codes of dpo's errors and their one-line message,
the log's format, and the process's data-library setup (pandas blocked, Arrow's pool).
Imports nothing of the commands (`dpo.cli` and its command modules import it)."""

from __future__ import annotations

import os
import sys
from typing import Any

import typer

EXIT_USAGE, EXIT_LOCKED = 2, 4


class _NoPandas:
    """Import hook that makes `import pandas` fail in the CLI process.

    pyarrow imports pandas on its first `pa.array`/`pa.scalar` call only to check whether it
    was handed pandas objects; the CLI never hands it any, and that import alone costs more
    than a whole no-change run (BENCHMARKS.md). The Python API is not affected.
    """

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError("pandas is not used by the dpo command", name=name)


def _arrow_memory_pool() -> None:
    """jemalloc for Arrow in the CLI process: calamine frees its cell grid just before Arrow
    allocates the columns, and with jemalloc the 200,000-row report peaks ~90 MB lower (and
    runs faster) than with the wheels' default mimalloc (BENCHMARKS.md). Read by pyarrow at
    first use, so setting it costs nothing; a value the user set wins."""
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")


def _without_pandas() -> None:
    if "pandas" not in sys.modules and not any(isinstance(f, _NoPandas) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoPandas())


def _setup_logging(verbose: bool) -> None:
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="DEBUG" if verbose else "INFO", diagnose=verbose,
               backtrace=verbose,  # no variable values in a traceback unless -v
               format="<green>{time:HH:mm:ss}</green> <level>{level: <7}</level> {message}")


def _fail(message: str, code: int) -> typer.Exit:
    from rich.console import Console
    from rich.markup import escape

    # escape: a message quoting "[Sheet1]" or a path must print as is (and not crash rich);
    # soft_wrap: one line, not broken at the console width of a pipe (80 columns).
    Console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False,
                               soft_wrap=True)
    return typer.Exit(code)


def _guard(verbose: bool, action: Any) -> Any:
    """Run `action`; turn dpo errors into one clear line and the documented exit code."""
    from dpo.errors import ConfigError, DpoError, ErrorType

    try:
        return action()
    except ConfigError as exc:
        if verbose:
            raise
        raise _fail(_one_line(exc), EXIT_USAGE) from exc
    except DpoError as exc:
        if verbose:
            raise
        code = EXIT_LOCKED if exc.error_type is ErrorType.LOCKED else 1
        raise _fail(exc.message, code) from exc


def _one_line(exc: Any) -> str:
    """A schema rejected for one reason is said in one line; several keep one line each."""
    problems = getattr(exc, "problems", None)
    if problems and len(problems) == 1:
        return f"{getattr(exc, 'what', 'schema')} {exc.file} rejected: {problems[0]}"
    return str(exc.message)

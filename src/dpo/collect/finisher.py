"""A table's last step (writing it and its cache) run while the next table is read and merged.

Phase 1 prepares each table on the main thread and hands back what is left to do as a
`Finish`; a `Finisher` runs those steps one at a time, in table order, in a thread of its own
(Parquet encoding and fsync release the GIL), so both cores stay busy.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

from dpo.results import TableResult

Finish = Callable[[], TableResult]
Run = TypeVar("Run")


def nothing() -> None:
    return None


def done(result: TableResult) -> Finish:
    """A table with nothing left to do."""
    return lambda: result


def then(step: Callable[[], None], result: TableResult) -> Finish:
    """`step`, then `result`."""
    def finish() -> TableResult:
        step()
        return result

    return finish


class Finisher(Generic[Run]):
    """Runs each table's last step as soon as it is added: in a thread of its own when
    `background`, else right away. Results come back in the order the steps were added."""

    def __init__(self, guard: Callable[[Run, Finish], TableResult], *,
                 background: bool) -> None:
        self._guard = guard  # runs a step, turning its failure into the table's error result
        self._pool = ThreadPoolExecutor(1) if background else None
        self._done: list[Future[TableResult] | TableResult] = []

    def __enter__(self) -> Finisher[Run]:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def add(self, run: Run, finish: Finish) -> None:
        self._done.append(self._guard(run, finish) if self._pool is None
                          else self._pool.submit(self._guard, run, finish))

    def results(self) -> list[TableResult]:
        return [d.result() if isinstance(d, Future) else d for d in self._done]

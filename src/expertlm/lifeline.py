"""Worker processes that end with the process that started them, however it ended.

A `Lifeline` (made in the parent) is a pipe nobody writes to, whose writing end only the parent
holds. Each worker gets the reading end and calls `hold` first thing: a thread that waits on it.
When the parent is gone (an exit, an exception, `kill -9`), the kernel closes the writing end and
the read returns end-of-file, so the worker ends itself by SIGTERM. For a training, that is the
same stop as any other, and the next run resumes it.

Without this, a worker of a parent killed by `kill -9` lives on. A pool worker blocks for good
writing a result nobody reads (`ProcessPoolExecutor`). A job of `expertlm run --jobs` trains on
alone. Every process pool of the package starts its workers through here: `corpus/scan.py`'s
`WorkerPool` and `encode.py`'s `BatchEncoder` use `Pool`, `experiment/graph.py`'s `Jobs` holds a
`Lifeline` for the processes it starts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor


class Lifeline:
    """The pipe, from a multiprocessing context: pass `end` to the workers, close it once they
    are gone."""

    def __init__(self, ctx) -> None:
        self.end, self._writer = ctx.Pipe(duplex=False)

    def close(self) -> None:
        self.end.close()
        self._writer.close()


def hold(end) -> None:
    """In a worker: end this process (SIGTERM) once the process that made `end` is gone."""
    threading.Thread(target=_wait, args=(end,), daemon=True, name="lifeline").start()


def _wait(end) -> None:
    with contextlib.suppress(EOFError, OSError):
        end.recv_bytes()  # nothing is ever sent: this returns at end-of-file
    os.kill(os.getpid(), signal.SIGTERM)


def _init_holding(end, initializer: Callable, *initargs) -> None:
    """A pool worker's initializer: `hold(end)`, then `initializer(*initargs)`."""
    hold(end)
    initializer(*initargs)


class Pool(ProcessPoolExecutor):
    """A `ProcessPoolExecutor` (from the multiprocessing context `ctx`) whose workers end with
    this process, `kill -9` included."""

    def __init__(self, workers: int, ctx, initializer: Callable, initargs: tuple = ()) -> None:
        self._lifeline = Lifeline(ctx)
        super().__init__(workers, mp_context=ctx, initializer=_init_holding,
                         initargs=(self._lifeline.end, initializer, *initargs))  # fmt: skip

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        super().shutdown(wait=wait, cancel_futures=cancel_futures)
        if wait:  # (the workers are gone; closing it sooner would end those still finishing)
            self._lifeline.close()

"""Walking the corpus in rowid pages, in forked worker processes when there are several.

filter and export both do per-dialogue Python work over up to 160K dialogues (and import over the
batches of records it reads: :func:`map_batches`). A page (a range of
dialogue rowids) is independent of the others, so it can be handled in another process that opens
its own read connection to the store; the results come back in page order, so the output does not
depend on the number of workers.
"""

from __future__ import annotations

import gc
import itertools
import multiprocessing
import os
import signal
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

S = TypeVar("S", contravariant=True)  # the store a page is read from (the stage's store protocol)
R = TypeVar("R", covariant=True)  # what a page gives


class PageWorker(Protocol[S, R]):
    """Handles one page; with ``store=None`` it opens (and caches in ``_store``) its own connection."""

    _store: Any

    def page(self, bounds: tuple[int, int], store: S | None = None) -> R: ...


def default_workers() -> int:
    """The usable cores, at most 4 (more processes only add SQLite read contention)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(4, cores))


def page_bounds(rowids: Sequence[int], page_size: int) -> list[tuple[int, int]]:
    """(after, upto] rowid ranges of ``page_size`` dialogues each, over ascending ``rowids``."""
    return [((rowids[i - 1] if i else 0), rowids[min(i + page_size, len(rowids)) - 1])
            for i in range(0, len(rowids), page_size)]


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off for a pass over the corpus, on again after.

    Judging and rendering allocate millions of short-lived container objects (token lists, row
    dicts) without reference cycles: refcounting frees them, and the collector's passes over them
    found nothing but cost ~10% of the filter's judge CPU (measured 224 -> 199 us a dialogue) and
    ~0.5 s of its main process. Whatever cycles appear meanwhile are collected once it is back on.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


_WORKER: PageWorker[Any, Any] | None = None


def _init_worker(worker: PageWorker[Any, Any]) -> None:
    global _WORKER
    gc.disable()  # a worker only handles pages (see gc_paused); it ends with the pool
    _WORKER = worker
    _WORKER._store = None  # never the parent's connection: each worker opens its own


def _work(bounds: tuple[int, int]) -> Any:
    assert _WORKER is not None
    return _WORKER.page(bounds)


def _init_batch_worker() -> None:
    gc.disable()  # see gc_paused; the worker ends with the pool
    # Ctrl-C reaches the whole process group: the main process stops the pool, and the workers
    # must not each print a KeyboardInterrupt traceback meanwhile
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def map_batches(fn: Callable[[Any], Any], batches: Iterable[Any], workers: int, *,
                before_fork: Callable[[], object] | None = None) -> Iterator[Any]:
    """``fn(batch)`` of every batch, in order: in ``workers`` forked processes when there is more
    than one batch, else in this process.

    Unlike :func:`map_pages` the batches are produced while they are handled (records read from a
    file): at most two per worker are in flight, so a long input is never read ahead into memory.
    ``fn`` must be picklable (a module-level function or a partial of one); ``before_fork`` runs
    once before the processes are forked (to build what they should share, e.g. a detector).
    """
    it = iter(batches)
    first = next(it, None)
    if first is None:
        return
    second = next(it, None)
    if workers <= 1 or second is None:
        yield fn(first)
        if second is not None:
            yield fn(second)
            for batch in it:
                yield fn(batch)
        return
    if before_fork is not None:
        before_fork()
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers, initializer=_init_batch_worker) as pool:
        pending: deque = deque(pool.apply_async(fn, (b,)) for b in (first, second))
        for batch in it:
            pending.append(pool.apply_async(fn, (batch,)))
            while len(pending) >= 2 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def map_pages(worker: PageWorker[S, R], pages: list[tuple[int, int]], store: S, workers: int,
              meanwhile: Callable[[], object] | None = None) -> Generator[R, None, None]:
    """``worker.page(bounds)`` of every page, in page order: in ``workers`` forked processes when
    there is more than one page, else in this process on ``store``.

    ``meanwhile`` (slow serial set-up the caller needs only after the pages, e.g. a heavy import)
    runs in a thread while the pages are handled. It is started only once the worker processes
    exist (forking while a thread imports modules can leave the child holding a lock forever) and is
    joined when the pages are done.
    """
    helper: threading.Thread | None = None

    def start_helper() -> None:
        nonlocal helper
        if meanwhile is not None:
            helper = threading.Thread(target=meanwhile, daemon=True)
            helper.start()

    try:
        if workers > 1 and len(pages) > 1:
            ctx = multiprocessing.get_context("fork")
            n = min(workers, len(pages))
            with ctx.Pool(n, initializer=_init_worker, initargs=(worker,)) as pool:
                start_helper()  # the pool forked its workers when it was created
                # at most two pages a worker in flight: a consumer slower than the workers (the
                # export's writers) must not gather every rendered page in memory (pool.imap sends
                # all the pages at once and queues their results)
                todo = iter(pages)
                pending: deque = deque(pool.apply_async(_work, (b,)) for b in itertools.islice(todo, 2 * n))
                while pending:
                    result = pending.popleft().get()
                    nxt = next(todo, None)
                    if nxt is not None:
                        pending.append(pool.apply_async(_work, (nxt,)))
                    yield result
        else:
            start_helper()
            for bounds in pages:
                yield worker.page(bounds, store)
    finally:
        if helper is not None:
            helper.join()

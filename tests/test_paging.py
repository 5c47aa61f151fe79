"""The page walker filter and export share: page order, and the set-up run meanwhile."""

from __future__ import annotations

import os
import threading

from itcollect.kernel.paging import map_pages, page_bounds


class _PidPages:
    _store = None

    def page(self, bounds, store=None):
        return bounds, os.getpid()


def test_pages_in_order_in_workers_and_meanwhile_done_by_the_end():
    pages = page_bounds(list(range(1, 101)), 10)
    assert pages[0] == (0, 10) and pages[-1] == (90, 100) and len(pages) == 10
    ran: list[str] = []
    for workers in (2, 1):
        ran.clear()

        def setup():
            ran.append(threading.current_thread().name)

        out = list(map_pages(_PidPages(), pages, None, workers, meanwhile=setup))
        assert [b for b, _ in out] == pages
        pids = {pid for _, pid in out}
        assert (os.getpid() not in pids) if workers > 1 else (pids == {os.getpid()})
        # run once, in a helper thread, and finished when the pages are
        assert len(ran) == 1 and ran[0] != threading.current_thread().name


class _CountingPages:
    """Counts the pages started, in a file every worker appends to (a line per page)."""

    _store = None

    def __init__(self, log: str) -> None:
        self.log = log

    def page(self, bounds, store=None):
        with open(self.log, "a") as f:
            f.write(f"{bounds[1]}\n")
        return bounds


def test_a_slow_consumer_holds_at_most_two_pages_a_worker_in_flight(tmp_path):
    """Export's writers are slower than its workers; rendered pages must not pile up in memory
    (pool.imap sent every page at once and queued all their results: 1.4 GB at 480K dialogues)."""
    from .waiting import wait_until

    log = tmp_path / "started"
    pages = page_bounds(list(range(1, 401)), 4)  # 100 pages
    walker = map_pages(_CountingPages(str(log)), pages, None, 2)
    first = next(walker)

    def started() -> int:
        return len(log.read_text().split()) if log.exists() else 0

    # give the workers every chance to run ahead: with nothing taken they may not pass the bound
    wait_until(lambda: started() >= 4, timeout=30)
    for _ in range(20):
        assert started() <= 2 * 2 + 1
        threading.Event().wait(0.05)
    rest = list(walker)
    assert [first, *rest] == pages and started() == len(pages)

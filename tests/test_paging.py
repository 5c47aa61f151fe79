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

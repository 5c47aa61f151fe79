"""Waiting in a test on a condition, never on the clock alone.

A fixed ``time.sleep(n)`` before an assertion decides pass or fail by how fast the machine is; a
test waits here for the state it needs, polled, with a deadline generous enough for a loaded
machine (the deadline only decides how long a test that would fail anyway takes to say so).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(cond: Callable[[], T], timeout: float = 30.0, *, interval: float = 0.01, what: str = "") -> T:
    """Call ``cond`` every ``interval`` seconds until it returns a truthy value, and return that
    value; raise ``AssertionError`` naming ``what`` if ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or cond}")
        time.sleep(interval)

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


def kill_9_after(proc, server, requests: int, timeout: float = 120.0) -> None:
    """Let the child process ``proc`` (its stderr a pipe) send ``requests`` requests to the loopback
    ``server``, then ``kill -9`` it and wait until the server has finished the calls it had in
    flight (they are answered, and billed, as a real endpoint would)."""
    import os
    import signal

    deadline = time.monotonic() + timeout
    while server.total_requests < requests and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert proc.poll() is None, proc.stderr.read().decode()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    wait_until(lambda: server.in_flight == 0, what="the server to finish the calls of the killed process")

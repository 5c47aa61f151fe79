"""Progress bars that show on a terminal and stay quiet in pipes and CI logs."""

from __future__ import annotations

import os
import sys
from typing import Any


def progress_enabled() -> bool:
    if os.environ.get("ITCOLLECT_PROGRESS") == "1":
        return True
    if os.environ.get("ITCOLLECT_PROGRESS") == "0":
        return False
    return sys.stderr.isatty()


def progress(iterable: Any = None, **kwargs: Any):
    """A tqdm bar on stderr, disabled when stderr is not a terminal."""
    from tqdm.auto import tqdm

    kwargs.setdefault("disable", not progress_enabled())
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("file", sys.stderr)
    return tqdm(iterable, **kwargs)

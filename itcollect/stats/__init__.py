"""stats: every stage's counts and figures, read from the store (``report`` is the entry point;
``corpus``, ``quality`` and ``judge`` are its sections)."""

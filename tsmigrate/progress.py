"""Progress of long work that gives no progress of its own, through the log, without flooding."""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager


@contextmanager
def heartbeat(log: logging.Logger, what: str, *, every: float = 10.0, expected_seconds: float | None = None):
    """Log "<what>: N s so far" every ``every`` seconds while the block runs (with time left when known)."""
    started = time.monotonic()
    done = threading.Event()

    def beat() -> None:
        while not done.wait(every):
            elapsed = time.monotonic() - started
            if expected_seconds:
                left = max(0.0, expected_seconds - elapsed)
                log.info("%s: %.0f s so far, about %.0f s left", what, elapsed, left)
            else:
                log.info("%s: %.0f s so far", what, elapsed)

    thread = threading.Thread(target=beat, name=f"heartbeat: {what}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()

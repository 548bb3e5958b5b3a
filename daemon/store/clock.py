"""The store's clock: every timestamp it writes (created, started, finished) and
prune's cutoff come from ``now()``, one place a test can move to make old history."""

from __future__ import annotations

import time


def now() -> float:
    return time.time()

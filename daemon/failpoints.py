"""Crash injection for durability tests: `DGX_MUSIC_FAILPOINT=name` kills the daemon there.

The tests use it to prove that a kill -9 at the worst moments (mid-processing,
between writing a file and committing its row) loses nothing. Unset, it costs
one dictionary lookup.
"""

from __future__ import annotations

import logging
import os
import signal

ENV = "DGX_MUSIC_FAILPOINT"
POINTS = ("after_start", "processing", "after_files")
#: Failpoints that change behaviour instead of killing: "relisten_never" (a lost LISTEN
#: connection is not opened again) and "relisten_slow" (it is, after RELISTEN_SLOW_S).
SLOW_POINTS = ("relisten_never", "relisten_slow")
RELISTEN_SLOW_S = 4.0


def active(name: str) -> bool:
    """Whether failpoint ``name`` is set (for the ones that do not kill)."""
    return os.environ.get(ENV) == name


def hit(name: str) -> None:
    if os.environ.get(ENV) == name:
        logging.getLogger("dgx_music.failpoint").warning("failpoint %s: killing the daemon", name)
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)

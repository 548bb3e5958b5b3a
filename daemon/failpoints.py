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


def hit(name: str) -> None:
    if os.environ.get(ENV) == name:
        logging.getLogger("dgx_music.failpoint").warning("failpoint %s: killing the daemon", name)
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)

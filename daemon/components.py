"""Start and stop the daemon's components in dependency order.

Store (integrity check, migrations) -> engine supervisor (no model loaded yet,
unless preload) -> scheduler (crash recovery, orphan files, then the runner) ->
history pruner (a background task, after recovery; stopped first at close).
Only after all of this does the server listen, so clients never see a queue
that is still being restored.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from dgx_music.daemon.engine.supervisor import EngineSettings, EngineSupervisor
from dgx_music.daemon.history import HistoryPruner
from dgx_music.daemon.scheduler import Scheduler
from dgx_music.daemon.server import StartupError
from dgx_music.daemon.store import DB_NAME, StoreError, open_store, store_kind

if TYPE_CHECKING:
    from dgx_music.daemon.app import Daemon

log = logging.getLogger("dgx_music.daemon")


def engine_settings(daemon: "Daemon") -> EngineSettings:
    s = daemon.settings
    return EngineSettings(
        model=s["engine.model"], backend=s["engine.backend"], device=s["engine.device"],
        keep_alive=float(s["engine.keep_alive"]), hang_timeout=float(s["engine.hang_timeout"]),
        offline=bool(s["engine.offline"]), preload=bool(s["engine.preload"]),
        worker_env={"DGX_MUSIC_DECODE": s["engine.decode"], "DGX_MUSIC_SAMPLER": s["engine.sampler"]},
        **({"python": s["engine.python"]} if s["engine.python"] else {}),
    )


async def start(daemon: "Daemon") -> None:
    try:
        daemon.store = await open_store(daemon.settings, data_dir=daemon.data_dir)
    except StoreError as exc:
        if exc.field == "store.url" or store_kind(str(daemon.settings["store.url"] or "")) != "sqlite":
            msg = str(exc)  # it names the server, never a password
            raise StartupError(msg if msg.startswith("store.url") else f"store.url: {msg}") from None
        hint = (" (restore a backup with `dgx-music restore`, or move the file aside to start afresh)"
                if exc.code == "corrupt" else "")
        raise StartupError(f"database {daemon.data_dir / DB_NAME}: {exc}{hint}") from None

    daemon.engine = EngineSupervisor(engine_settings(daemon), daemon.publish)
    daemon.scheduler = Scheduler(daemon)
    report = await daemon.scheduler.start()
    daemon.recovery = report
    daemon.pruner = HistoryPruner(daemon)
    daemon.pruner.start()  # a background task: old finished jobs go now, then once a day
    # The audio stack warms up when the first job starts (Scheduler.warm_audio), not here: its
    # imports hold the GIL for ~1 s, which would slow every request right after start-up.
    if daemon.settings["engine.preload"]:
        daemon.preload = asyncio.create_task(_preload(daemon))
    else:
        try:
            await daemon.engine.start()  # checks the model name; loads nothing yet
        except Exception as exc:
            raise StartupError(f"model {daemon.settings['engine.model']!r}: {exc}") from None


async def _preload(daemon: "Daemon") -> None:
    try:
        await daemon.engine.start()
    except Exception as exc:
        log.error("preloading the model failed: %s", exc)


async def close(daemon: "Daemon") -> None:
    if daemon.pruner is not None:
        await daemon.pruner.close()
    if daemon.scheduler is not None:
        await daemon.scheduler.close()
    if daemon.engine is not None:
        await daemon.engine.close()
    if daemon.store is not None:
        await daemon.store.close()

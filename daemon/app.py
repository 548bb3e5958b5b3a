"""The daemon: wires settings, storage, engine, scheduler and server, and runs them.

Start order matters for durability: the data directory is locked first (one
daemon per directory), the socket path is checked and claimed, and the database is
checked and recovered before the socket listens, so no client ever sees
half-restored state and no second daemon ever requeues the first one's job.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from dgx_music import __version__
from dgx_music.common import protocol
from dgx_music.common.config import Settings
from dgx_music.daemon import handlers, libfiles
from dgx_music.daemon.datalock import DataDirLock, DataDirLocked
from dgx_music.daemon.events import EventHub
from dgx_music.daemon.library_cache import LibraryCache
from dgx_music.daemon.server import Server, StartupError

log = logging.getLogger("dgx_music.daemon")


class Daemon:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir: Path = settings.data_dir  # local state: the database, the lock
        self.storage = libfiles.Storage.from_settings(settings)  # the audio: track paths are relative to it
        self.events = EventHub()
        # Library reads answered from what this host last saw while the database is away (issue 21);
        # every library event, local or another host's, passes through publish_local to it. Only a
        # database server can go away: with SQLite in the data directory the cache stays off.
        self.library_cache = LibraryCache(enabled=bool(str(settings["store.url"] or "").strip()))
        self.events.listen(self.library_cache.on_event)
        self.server = Server(self)
        self.started = time.time()
        self.stopping = False
        self._stop = asyncio.Event()
        # Filled in by later stages of start(); handlers check for None.
        self.store: Any = None
        self.engine: Any = None
        self.scheduler: Any = None
        self.recovery: dict[str, Any] = {}

        self.preload: Any = None  # task loading the model at start, with --preload
        self.pruner: Any = None  # HistoryPruner: job history pruning, at start and daily
        self.extras: list[Any] = []  # optional services (HTTP API, notifier) with async close()
        self._lock: DataDirLock | None = None
        handlers.load_all()

    def publish(self, name: str, data: dict[str, Any]) -> None:
        """An event of this daemon: to its clients, and on a shared store to the other hosts'."""
        self.publish_local(name, data)
        if self.scheduler is not None:
            self.scheduler.hosts.forward(name, data)

    def publish_local(self, name: str, data: dict[str, Any]) -> None:
        """To this daemon's clients only (another host's events, which that host sent out)."""
        if name in ("track.added", "track.updated"):  # a track has one shape everywhere: `path` and `file`
            data = self.storage.with_file(data)
        self.events.publish(name, data)

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": __version__,
            "protocol": protocol.PROTOCOL_VERSION,
            "pid": os.getpid(),
            "uptime": round(time.time() - self.started, 3),
            "data_dir": str(self.data_dir),
            "storage": str(self.storage.root),  # what track paths are relative to (clients join them to it)
            "socket": str(self.server.path),
            "clients": len(self.server.connections),
            "subscribers": self.events.subscriber_count,
        }
        if self.engine is not None:
            out["model"] = self.engine.state()
        if self.scheduler is not None:
            out["queue"] = self.scheduler.summary()
            hosts = self.scheduler.hosts.status()
            if hosts is not None:  # a shared store: every daemon on the queue (hosts.py)
                out["host"] = self.scheduler.hosts.name
                out["hosts"] = hosts
        return out

    async def start(self, inherited: socket.socket | None = None) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        try:
            self._lock = DataDirLock.acquire(self.data_dir)
        except DataDirLocked as exc:
            raise StartupError(str(exc)) from None
        unsafe = libfiles.check_layout(self.data_dir)  # a planted symlink would lead writes and deletes out
        if not unsafe and self.storage.shared:
            try:
                self.storage.check()
            except libfiles.StorageError as exc:
                unsafe = [str(exc)]
        if unsafe:
            self._lock.release()
            self._lock = None
            raise StartupError("refusing to start: " + "; ".join(unsafe))
        if inherited is None:
            await self.server.claim_path()  # an unsafe directory or a live daemon stops us before recovery
        await self._start_components()
        await self.server.start(inherited)
        self.publish("daemon.started", {"pid": os.getpid(), "version": __version__})

    async def _start_components(self) -> None:
        """Storage, engine and scheduler, when their modules are present."""
        from dgx_music.daemon import components

        await components.start(self)

    def request_stop(self) -> None:
        self._stop.set()

    async def serve_forever(self) -> None:
        await self._stop.wait()

    async def close(self) -> None:
        self.stopping = True
        for extra in reversed(self.extras):
            try:
                await extra.close()
            except Exception:
                log.exception("error while closing %r", extra)
        await self.server.close()
        from dgx_music.daemon import components

        await components.close(self)
        if self._lock is not None:
            self._lock.release()
            self._lock = None


_SYSLOG_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class _JournalFormatter(logging.Formatter):
    """Prefix each record with its syslog priority (`<6>`), which journald turns into the entry's level."""

    def format(self, record: logging.LogRecord) -> str:
        prio = _SYSLOG_PRIORITY.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
        return f"<{prio}>" + super().format(record)


def _stderr_is_journal() -> bool:
    """True when stderr is connected to journald ($JOURNAL_STREAM names its device:inode)."""
    want = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return bool(want) and want == f"{st.st_dev}:{st.st_ino}"


def setup_logging(level: str) -> None:
    """Plain lines on stderr: journald adds the timestamp and unit itself (and takes the level prefix)."""
    fmt = "%(levelname)s %(name)s: %(message)s"
    if sys.stderr.isatty():
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=level.upper(), format=fmt, stream=sys.stderr, force=True)
    if _stderr_is_journal():
        for h in logging.getLogger().handlers:
            h.setFormatter(_JournalFormatter(fmt))


async def run(settings: Settings, inherited: socket.socket | None = None) -> int:
    from dgx_music.daemon import activation, notify

    notifier = notify.Notifier()  # systemd Type=notify; a no-op without $NOTIFY_SOCKET
    notifier.start_watchdog()  # heartbeats start now: opening and recovering the database takes time
    notifier.status("starting: checking the database and recovering the queue")
    try:
        daemon = Daemon(settings)
    except StartupError as exc:  # e.g. a socket_group that does not exist: one line, not a traceback
        log.error("%s", exc)
        await notifier.close()
        return 1
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.request_stop)
    try:
        from dgx_music.daemon import http as http_api

        # Refuse a bad bind/token before touching anything; resolving the host name and reading
        # (or writing) the token file may block, so not on the event loop.
        explicit_http = settings.source("http.listen") != "default"
        try:
            http_plan = await loop.run_in_executor(None, http_api.plan, settings)
        except StartupError as exc:
            if explicit_http:
                raise
            log.warning("the HTTP API is off: %s", exc)
            http_plan = None
        if inherited is None:
            inherited = activation.inherited_socket()  # systemd socket activation (LISTEN_FDS)
        if inherited is not None and isinstance(inherited.getsockname(), str) and inherited.getsockname():
            daemon.server.path = Path(inherited.getsockname())
        await daemon.start(inherited)
        if http_plan is not None:
            try:
                daemon.extras.append(await http_api.start(daemon, http_plan))
            except StartupError as exc:
                if http_plan.explicit:
                    raise
                # The default port is someone else's (often a second daemon): the socket daemon still runs.
                log.warning("%s; running without HTTP (set http.listen or --http HOST:PORT to choose "
                            "another port, --http off to silence this)", exc)
    except (StartupError, activation.ActivationError) as exc:
        log.error("%s", exc)
        notifier.status(f"failed to start: {exc}")
        await daemon.close()
        await notifier.close()
        return 1
    daemon.extras.append(notifier)  # closed first: STOPPING=1 before anything else stops
    notifier.ready(daemon)  # database checked, recovery done, socket listening
    log.info("dgx-music %s ready (pid %d, data %s%s)", __version__, os.getpid(), daemon.data_dir,
             f", shared storage {daemon.storage.root}" if daemon.storage.shared else "")
    try:
        await daemon.serve_forever()
    finally:
        log.info("shutting down")
        await daemon.close()
    return 0

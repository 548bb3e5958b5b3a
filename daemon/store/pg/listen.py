"""PostgreSQL NOTIFY/LISTEN between the daemons sharing one database (issue 21).

Every daemon LISTENs on one channel per schema (channel names are database-wide, and
two queues may share a database in different schemas) on a connection of its own,
and NOTIFYs on it through its store's connection (named "dgx-music listen <host>" in
pg_stat_activity's application_name).  Payloads are short JSON texts
(PostgreSQL refuses more than 8000 bytes: callers send ids for big things).  A lost
listening connection is opened again; what was sent meanwhile is missed, which the
daemon covers by polling the queue and, once listening again (``on_reconnect``), by
reading what it must not miss from the rows (a cancel: daemon/hosts.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any, Callable

from dgx_music.daemon import failpoints

from ..errors import StoreError
from .conn import redact

try:
    import asyncpg
except ImportError:  # pragma: no cover - the daemon extra installs it
    asyncpg = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

#: Largest payload sent (PostgreSQL's own limit is 8000 bytes).
MAX_PAYLOAD = 7000


def channel_for(schema: str) -> str:
    """The channel of the queue in ``schema`` (a short, quoting-free identifier)."""
    return "dgx_" + hashlib.sha256(schema.encode()).hexdigest()[:24]


async def channel_of(store: Any) -> str:
    """The channel of ``store``'s queue (from its schema, the URL's search_path)."""
    return channel_for(str(await store._run(lambda: store._scalar("SELECT current_schema()"))))


async def notify(store: Any, channel: str, payload: str) -> None:
    """NOTIFY ``payload`` on ``channel`` through ``store``'s connection (committed at once)."""
    if len(payload.encode()) > MAX_PAYLOAD:
        raise StoreError("invalid", f"payload: {len(payload.encode())} bytes, more than {MAX_PAYLOAD}")
    await store._run(lambda: store._exec("SELECT pg_notify(?, ?)", (channel, payload)))


class Listener:
    """LISTEN on ``channel`` at ``url``, calling ``on_payload(text)`` for each notification
    (on the event loop); reconnects with backoff when the connection is lost, then calls
    ``on_reconnect()``."""

    def __init__(self, url: str, channel: str, on_payload: Callable[[str], None], *, name: str = "",
                 on_reconnect: Callable[[], None] | None = None) -> None:
        self.url = url
        self.channel = channel
        self.on_payload = on_payload
        self.on_reconnect = on_reconnect
        self.app_name = f"dgx-music listen {name}".strip()[:63]
        self._conn: Any = None
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    async def start(self) -> None:
        """Connect and listen (StoreError "unavailable" if the server cannot be reached now)."""
        await self._connect()
        self._task = asyncio.create_task(self._watch(), name="pg-listen")

    async def _connect(self) -> None:
        try:
            conn = await asyncpg.connect(self.url, timeout=10.0,
                                         server_settings={"application_name": self.app_name})
            await conn.add_listener(self.channel, self._received)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError("unavailable", f"cannot listen at {redact(self.url)}: {exc}") from None
        self._conn = conn
        self.connected.set()

    def _received(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            self.on_payload(payload)
        except Exception:  # a bad payload must not stop the listener
            log.exception("a notification could not be handled: %.200s", payload)

    async def _watch(self) -> None:
        delay = 0.5
        while True:
            await asyncio.sleep(1.0)
            if self._conn is not None and not self._conn.is_closed():
                delay = 0.5
                continue
            self.connected.clear()
            if failpoints.active("relisten_never"):
                continue
            if failpoints.active("relisten_slow"):
                await asyncio.sleep(failpoints.RELISTEN_SLOW_S)
            try:
                await self._connect()
                log.info("listening for the other hosts' events again")
                if self.on_reconnect is not None:
                    self.on_reconnect()
            except StoreError as exc:
                log.warning("%s; trying again in %.0f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._conn is not None and not self._conn.is_closed():
            try:
                await self._conn.close(timeout=5)
            except Exception:
                self._conn.terminate()

"""systemd's notify protocol (sd_notify), without libsystemd.

Under `Type=notify` systemd sets NOTIFY_SOCKET to a Unix datagram socket (a path,
or an abstract name written with a leading '@'); each datagram is newline-separated
`KEY=VALUE` lines. We send:

* ``READY=1`` once the database is checked, recovery is done and the socket listens;
* ``STATUS=...`` lines saying what the daemon is doing (loading model, N jobs queued),
  shown by ``systemctl status``;
* ``WATCHDOG=1`` heartbeats from the event loop every WATCHDOG_USEC/3 when
  ``WatchdogSec=`` is set, so a daemon whose loop is stuck is restarted;
* ``STOPPING=1`` when it shuts down.

Outside systemd (no NOTIFY_SOCKET) every call is a cheap no-op.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from dgx_music.daemon.app import Daemon

log = logging.getLogger(__name__)

#: STATUS= updates caused by job progress are sent at most this often (seconds).
STATUS_MIN_INTERVAL = 1.0


def _address(value: str) -> str | bytes:
    if value.startswith("@"):
        return b"\0" + value[1:].encode()  # abstract namespace
    return value


def sd_notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    """Send one datagram to $NOTIFY_SOCKET; False when there is none or it failed."""
    target = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
    if not target or not (target.startswith("/") or target.startswith("@")):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(message.encode(), _address(target))
        return True
    except OSError as exc:
        log.debug("sd_notify to %s failed: %s", target, exc)
        return False


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between heartbeats (a third of WatchdogSec), or None when no watchdog applies to us."""
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 1e6 / 3


class Notifier:
    """The daemon's link to systemd; a `daemon.extras` service with async close()."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = dict(os.environ if env is None else env)
        self.enabled = bool(self._env.get("NOTIFY_SOCKET"))
        self._watchdog: asyncio.Task[None] | None = None
        self._daemon: "Daemon | None" = None
        self._last_status = ""
        self._last_sent = 0.0
        self._pending: asyncio.TimerHandle | None = None
        self._model_line = ""
        self._job_line = ""
        self.ready_sent = False

    def send(self, message: str) -> bool:
        if not self.enabled:
            return False
        return sd_notify(message, self._env)

    def status(self, text: str) -> None:
        if text != self._last_status:
            self._last_status = text
            self._last_sent = time.monotonic()
            self.send(f"STATUS={text}")

    def start_watchdog(self) -> None:
        """Heartbeat from the event loop itself: if the loop stalls, the heartbeats stop."""
        interval = watchdog_interval(self._env)
        if not self.enabled or interval is None or self._watchdog is not None:
            return

        async def beat() -> None:
            while True:
                self.send("WATCHDOG=1")
                await asyncio.sleep(interval)

        self._watchdog = asyncio.get_running_loop().create_task(beat(), name="systemd-watchdog")
        log.debug("systemd watchdog: heartbeat every %.2fs", interval)

    def ready(self, daemon: "Daemon") -> None:
        """Everything a client needs is up: tell systemd, then keep STATUS= current from events."""
        self._daemon = daemon
        daemon.events.listen(self._on_event)
        self._model_line = self._model_summary(daemon.status().get("model"))
        line = self._compose()
        self._last_status = line
        self.send(f"READY=1\nSTATUS={line}\nMAINPID={os.getpid()}")
        self.ready_sent = True

    # -- STATUS= from events ---------------------------------------------
    @staticmethod
    def _model_summary(model: Any) -> str:
        if not isinstance(model, dict):
            return ""
        name, state = model.get("model") or "?", model.get("state") or "?"
        where = f" on {model['device']}" if model.get("device") else ""
        return f"model {name} {state}{where}"

    def _queue_counts(self) -> dict[str, int]:
        if self._daemon is None:
            return {}
        try:
            q = self._daemon.status().get("queue") or {}
        except Exception:
            return {}
        return {k: int(v) for k, v in q.items() if isinstance(v, (int, float))}

    def _compose(self) -> str:
        q = self._queue_counts()
        waiting = q.get("queued", 0)
        busy = q.get("running", 0) + q.get("processing", 0)
        parts = [p for p in (self._job_line or ("generating" if busy else "idle"), self._model_line) if p]
        parts.append(f"{waiting} job{'s' if waiting != 1 else ''} queued")
        return "; ".join(parts)

    def _on_event(self, name: str, data: dict[str, Any]) -> None:
        if name == "model.loading":
            pct = data.get("progress")
            pct_s = f" ({float(pct) * 100:.0f}%)" if isinstance(pct, (int, float)) else ""
            self._model_line = f"loading model {data.get('model', '')}{pct_s}".rstrip()
        elif name == "model.loaded":
            self._model_line = f"model {data.get('model', '')} ready on {data.get('device', '?')}"
        elif name == "model.unloaded":
            self._model_line = f"model unloaded ({data.get('reason', '')})"
        elif name == "model.crashed":
            self._model_line = f"model worker crashed ({data.get('reason', '')})"
        elif name == "job.started":
            self._job_line = f"generating job {data.get('id')}"
        elif name == "job.progress":
            self._job_line = f"generating job {data.get('id')} (step {data.get('step')}/{data.get('total')})"
        elif name == "job.processing":
            self._job_line = f"post-processing job {data.get('id')}"
        elif name in ("job.finished", "job.failed", "job.cancelled"):
            self._job_line = ""
        elif not name.startswith("job."):
            return
        self._schedule(urgent=name != "job.progress" and name != "model.loading")

    def _schedule(self, urgent: bool) -> None:
        now = time.monotonic()
        if urgent or now - self._last_sent >= STATUS_MIN_INTERVAL:
            if self._pending is not None:
                self._pending.cancel()
                self._pending = None
            self.status(self._compose())
        elif self._pending is None:
            def later() -> None:
                self._pending = None
                self.status(self._compose())
            delay = STATUS_MIN_INTERVAL - (now - self._last_sent)
            self._pending = asyncio.get_running_loop().call_later(delay, later)

    async def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
        self.send("STOPPING=1\nSTATUS=stopping")
        if self._watchdog is not None:
            self._watchdog.cancel()
            try:
                await self._watchdog
            except asyncio.CancelledError:
                pass
            self._watchdog = None

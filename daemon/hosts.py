"""Several daemons (hosts) on one shared store (PostgreSQL, issue 21): claims, leases, events.

On a shared store each daemon's runner *claims* the next job (store claims.py) as its host
name and holds it under a lease that `holding` renews while the job runs. A host that dies
stops renewing; any host's `_maintain` loop then puts the job back in the queue
(`requeue_expired`), where another host claims it. A host whose renewal is refused (it lost
the job) stops the job, and the store refuses it any change to that job, so its result is
never committed: every job ends once.

Events cross hosts by NOTIFY (store/pg/listen.py): job.* and track.* events go out as small
JSON payloads (a track, or a job too big for a payload, as its id: receivers read the row),
and each host re-publishes the others' to its own clients. A cancel of a job another host
runs is recorded on its row (`request_cancel`) and notified in the same transaction: the host
that runs it stops it on the notification, or, when that was lost (its LISTEN connection was
down), at its next lease renewal or right after it listens again, whichever comes first. A
queued job wakes idle hosts; a poll every third of a lease covers a lost notification.

Each host writes its row in the hosts table (model, state, job) as soon as these change and
every third of a lease besides (`touch`, coalesced, off the event loop's path); `status`
reads the table when asked and calls a host whose row is older than its lease "gone".

On SQLite (one box) none of this runs: `enabled` is false and the scheduler works as alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import socket
import time
from typing import TYPE_CHECKING, Any, AsyncIterator

from dgx_music.daemon.server import StartupError
from dgx_music.daemon.store import StoreError

if TYPE_CHECKING:
    from dgx_music.daemon.app import Daemon
    from dgx_music.daemon.scheduler import Scheduler

log = logging.getLogger("dgx_music.hosts")

#: Event names that cross hosts (job.stream carries audio: local only).
FORWARDED = ("job.", "track.")
LOCAL_ONLY = ("job.stream",)
#: Events whose data is a track: sent as its id, each receiver reads the row.
TRACK_REFS = ("track.added", "track.updated")
#: Events after which this host's row is written at once (what `status` shows of it changed).
_TOUCHING = ("model.loaded", "model.unloaded", "model.crashed", "job.started")
#: Job events that change the counts `status` reports (progress does not).
_COUNTED = ("job.queued", "job.started", "job.processing", "job.finished", "job.failed",
            "job.cancelled", "job.pruned")


def host_name(configured: str, data_dir: Any) -> str:
    """`daemon.host`, or the machine's name plus a hash of the data directory (unique per
    daemon: one data directory holds one daemon, datalock.py)."""
    if configured.strip():
        return configured.strip()
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}-{digest}"


class Hosts:
    """This daemon's part in a shared queue (see the module docstring)."""

    #: The longest wait between two looks at the queue and heartbeats (a test lengthens it to
    #: show that a change reaches `status` without waiting for the periodic heartbeat).
    POLL_MAX = 10.0

    def __init__(self, daemon: "Daemon", scheduler: "Scheduler") -> None:
        self.daemon = daemon
        self.scheduler = scheduler
        self.store = daemon.store
        s = daemon.settings
        self.enabled = getattr(self.store, "backend", "sqlite") == "postgresql"
        self.name = host_name(str(s["daemon.host"] or ""), daemon.data_dir)
        self.lease_s = float(s["daemon.lease_s"])
        if not self.lease_s > 0:
            raise StartupError(f"daemon.lease_s: must be more than 0 seconds, got {self.lease_s}")
        self.lost: set[int] = set()  # jobs this host was running when it lost their lease
        self.channel = ""
        self._listener: Any = None
        self._outbox: asyncio.Queue[str] = asyncio.Queue()
        self._inbox: asyncio.Queue[str] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self.started = time.time()
        self.known: list[dict[str, Any]] = []  # the hosts table as last read, for `status`
        self._dirty = asyncio.Event()  # this host's row is out of date: `_beats` writes it

    @property
    def poll_s(self) -> float:
        """How often an idle host looks at the queue and at expired leases by itself."""
        return min(self.lease_s / 3, self.POLL_MAX)

    async def start(self) -> None:
        """Act as this host in the store (before recovery), listen to the others."""
        if not self.enabled:
            return
        from dgx_music.daemon.store.pg import listen

        self.store.hold_as(self.name)
        self.channel = await listen.channel_of(self.store)
        self._listener = listen.Listener(self.store.url, self.channel, self._inbox.put_nowait,
                                         name=self.name, on_reconnect=self._relistened)
        await self._listener.start()
        await self._heartbeat()
        for coro, name in ((self._send(), "hosts-send"), (self._receive(), "hosts-receive"),
                           (self._maintain(), "hosts-maintain"), (self._beats(), "hosts-beats")):
            self._tasks.append(asyncio.create_task(coro, name=name))
        log.info("host %s: claiming jobs on the shared queue (lease %.1f s)", self.name, self.lease_s)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
            with contextlib.suppress(StoreError):
                await self.store.leave(self.name)

    # -- claiming --------------------------------------------------------------------------------
    def loaded_model(self) -> str | None:
        """The model the engine holds now, preferred when claiming (no swap for the queue's head)."""
        engine = self.daemon.engine
        if engine is None:
            return None
        state = engine.state()
        return state["model"] if state.get("state") in ("ready", "busy") else None

    async def claim(self) -> dict[str, Any] | None:
        return await self.store.claim_next_job(self.name, lease_s=self.lease_s, prefer_model=self.loaded_model(),
                                               backend=self.daemon.settings["engine.backend"])

    @contextlib.asynccontextmanager
    async def holding(self, job_id: int) -> AsyncIterator[None]:
        """Renew the job's lease every third of it while the body runs."""
        task = asyncio.create_task(self._renew(job_id), name=f"lease-{job_id}")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self.lost.discard(job_id)

    async def _renew(self, job_id: int) -> None:
        until = time.time() + self.lease_s
        told = False
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                renewed = await self.store.renew(job_id, self.name, lease_s=self.lease_s)
                until = time.time() + self.lease_s
                if renewed["cancel_requested"] and not told:  # its notification did not reach us
                    told = True
                    log.info("job %d: a cancel was recorded for it; stopping it", job_id)
                    await self.scheduler.stop_running(job_id, cancel=True)
                continue
            except StoreError as exc:
                if exc.code in ("conflict", "not_found"):
                    why = exc.message
                elif time.time() < until:
                    log.warning("job %d: could not renew its lease (%s); trying again", job_id, exc.message)
                    continue
                else:  # the store was away past our lease: another host may have the job by now
                    why = f"the lease ran out while the store was unreachable ({exc.message})"
            log.warning("job %d: this host lost it (%s); stopping it, its result is discarded", job_id, why)
            self.lost.add(job_id)
            await self.scheduler.stop_running(job_id)
            return

    async def _maintain(self) -> None:
        """Requeue the jobs of hosts that stopped renewing; look at the queue (lost wake-ups)."""
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                out = await self.store.requeue_expired()
            except StoreError as exc:
                log.warning("could not look for expired leases: %s", exc.message)
                continue
            for job_id in out["requeued"]:
                log.warning("job %d: its host stopped renewing its lease; it is queued again", job_id)
                with contextlib.suppress(StoreError):
                    self.daemon.publish("job.queued", self.scheduler.with_progress(await self.store.get_job(job_id)))
            for job_id in out.get("cancelled", []):
                log.info("job %d: its host stopped before it saw the job's cancel; cancelled", job_id)
                self.daemon.publish("job.cancelled", {"id": job_id})
            for job_id in out["failed"]:
                log.warning("job %d: its host stopped renewing its lease and its attempts are used up", job_id)
                self.daemon.publish("job.failed", {"id": job_id, "error": "its host stopped while running it",
                                                   "reason": "interrupted", "retrying": False})
            if out["requeued"] or out["failed"] or out.get("cancelled"):
                await self.scheduler.refresh_counts()
            self.scheduler.wake()
            try:
                await self._heartbeat()
            except StoreError as exc:
                log.warning("could not write this host's heartbeat: %s", exc.message)

    async def _heartbeat(self) -> None:
        """Write this host's row (model, state, running job) and read every host's."""
        state = "starting" if self.scheduler._task is None else self.scheduler.runner_status()["state"]
        await self.store.heartbeat(self.name, state=state, model=self.loaded_model(),
                                   job_id=self.scheduler.running, started=self.started, lease_s=self.lease_s)
        self.known = await self.store.hosts()

    def touch(self) -> None:
        """This host's model or state changed: write its row soon (coalesced; never waits)."""
        if self.enabled and self._tasks:
            self._dirty.set()

    async def _beats(self) -> None:
        """Write this host's row after each `touch`: one write at a time, however many touches
        came meanwhile, so other hosts' `status` sees a change within one write, not a heartbeat."""
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self._heartbeat()
            except StoreError as exc:  # the periodic heartbeat tries again
                log.warning("could not write this host's row: %s", exc.message)

    async def refresh(self) -> None:
        """Read every host's row now (for `status`: another host's change shows at once)."""
        if self.enabled:
            self.known = await self.store.hosts()

    def status(self) -> list[dict[str, Any]] | None:
        """`status`'s `hosts`: every host sharing the queue as last read, with `seen_s` (seconds
        since its row was written); `state` "gone" for one whose row is older than its lease
        (dead, or cut off from the database). None on one box."""
        if not self.enabled:
            return None
        now = time.time()
        out = []
        for h in self.known:
            state = h["state"]
            seen = max(0.0, now - h["last_seen"])
            if state != "stopped" and seen > (h.get("lease_s") or self.lease_s):
                state = "gone"
            out.append({"host": h["name"], "model": h["model"], "state": state, "job_id": h["job_id"],
                        "last_seen": round(h["last_seen"], 3), "seen_s": round(seen, 1),
                        "this": h["name"] == self.name})
        return out

    # -- events ----------------------------------------------------------------------------------
    def forward(self, name: str, data: dict[str, Any]) -> None:
        """Send one of this host's events to the others (called for every local publish)."""
        if name in _TOUCHING:
            self.touch()
        if not self.enabled or not self._tasks or name in LOCAL_ONLY or not name.startswith(FORWARDED):
            return
        msg: dict[str, Any] = {"h": self.name, "n": name}
        if name in TRACK_REFS:
            msg["track"] = data["id"]
        else:
            msg["d"] = data
        text = json.dumps(msg, separators=(",", ":"), default=str)
        if len(text.encode()) > 6000 and name.startswith("job.") and "id" in data:
            text = json.dumps({"h": self.name, "n": name, "job": data["id"]}, separators=(",", ":"))
        self._outbox.put_nowait(text)

    async def ask_cancel(self, job_id: int) -> dict[str, Any]:
        """Ask the host that runs `job_id` to cancel it: recorded on the job's row (it finds it at
        its next renewal) and notified in the same transaction (it hears at once). Returns the job;
        StoreError "conflict" when it is no longer running."""
        payload = json.dumps({"h": self.name, "cancel": job_id})
        return await self.store.request_cancel(job_id, notify=(self.channel, payload) if self.channel else None)

    def _relistened(self) -> None:
        """The LISTEN connection is back: what was notified meanwhile is lost, so look at the
        running job's row for a cancel (through the inbox, after what came before), and forget
        the library this host remembers for an outage: an edit or delete made elsewhere in the
        gap never reached it (the database is up now, so reads fill it again)."""
        self.daemon.library_cache.clear()
        self._inbox.put_nowait(json.dumps({"relisten": True}))

    async def _check_cancel(self) -> None:
        job_id = self.scheduler.running
        if job_id is not None and await self.store.cancel_requested(job_id):
            log.info("job %d: a cancel was recorded for it while this host was not listening", job_id)
            await self.scheduler.stop_running(job_id, cancel=True)

    async def _send(self) -> None:
        from dgx_music.daemon.store.pg import listen

        while True:
            text = await self._outbox.get()
            try:
                await listen.notify(self.store, self.channel, text)
            except StoreError as exc:  # the others miss this event; their polls still see the queue
                log.warning("could not tell the other hosts (%s): %.100s", exc.message, text)

    async def _receive(self) -> None:
        """The others' events, in the order they came, re-published to this host's clients."""
        while True:
            text = await self._inbox.get()
            try:
                await self._handle(json.loads(text))
            except asyncio.CancelledError:
                raise
            except StoreError as exc:
                log.warning("could not relay another host's event (%s): %.100s", exc.message, text)
            except Exception:
                log.exception("a bad notification from another host: %.200s", text)

    async def _handle(self, msg: dict[str, Any]) -> None:
        if msg.get("relisten"):
            await self._check_cancel()
            return
        if msg.get("h") == self.name:
            return  # our own, already published here
        if "cancel" in msg:
            job_id = int(msg["cancel"])
            if self.scheduler.running == job_id:
                log.info("job %d: cancelled at host %s", job_id, msg.get("h"))
                await self.scheduler.stop_running(job_id, cancel=True)
            return
        name = str(msg["n"])
        if "track" in msg:
            data = await self.store.get_track(msg["track"])
        elif "job" in msg:
            data = self.scheduler.with_progress(await self.store.get_job(int(msg["job"])))
        else:
            data = msg["d"]
        if name == "job.progress":  # another host's job: its progress shows in job.get/list here too
            self.scheduler.progress[int(data["id"])] = data
        elif name in ("job.finished", "job.failed", "job.cancelled", "job.queued"):
            self.scheduler.progress.pop(int(data.get("id", -1)), None)
        if name in _COUNTED:  # before the event: a client that reads status on it sees the change
            await self.scheduler.refresh_counts()
        self.daemon.publish_local(name, data)
        if name == "job.queued":
            self.scheduler.wake()

"""Browser tabs as speakers: the registry of open tabs and what each is told to play.

A tab opens the page, which connects a WebSocket (daemon/http/speaker.py) and tells the daemon when it
is focused or becomes visible; the most recently focused tab is the one that plays. `speaker.play`
sends it a track (it plays `/api/v1/tracks/{id}/audio` in an audio element); `speaker.stream` makes it
a listener of a running MusicGen job (daemon/stream_relay.py): every chunk the engine makes goes to the
tab as one binary WebSocket message, which the page schedules with Web Audio.

Binary message: a little-endian uint32 `n`, then `n` bytes of JSON (`job_id`, `variation`, `offset`,
`frames`, `sample_rate`, `channels`, `format`: "s16"; padded with spaces so the PCM starts at a multiple
of 4), then the PCM (interleaved signed 16-bit little-endian). Text messages are JSON commands
(`{"cmd": "play" | "stream" | "stream_end" | "stop" | "seek", ...}`). Everything here runs on the event
loop: a tab that reads too slowly loses its stream, never the daemon its loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
import time
from typing import TYPE_CHECKING, Any

from dgx_music.common import protocol
from dgx_music.common.speaker import SpeakerPlay, SpeakerSeek, SpeakerStream, page_url

if TYPE_CHECKING:
    from dgx_music.daemon.app import Daemon

log = logging.getLogger("dgx_music.speaker")

#: Messages waiting for one tab before it counts as stuck (each stream chunk is one; ~1 s of audio).
OUT_LIMIT = 256
#: A tab's reports that are kept (and published): the playback state keys the page sends.
STATE_KEYS = {"mode": str, "track_id": str, "job_id": int, "playing": bool, "position": float,
              "duration": float, "error": str, "chunks": int}
MAX_TABS = 64


class SpeakerHubError(Exception):
    """A speaker request that cannot be done; `code` is a protocol error code."""

    def __init__(self, code: str, message: str, **data: Any) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


def stream_frame(data: dict[str, Any]) -> bytes:
    """A `job.audio` event's data -> one binary message for the tab (see the module docstring)."""
    head = json.dumps({k: data[k] for k in ("job_id", "variation", "offset", "frames", "sample_rate",
                                            "channels", "format")}).encode()
    head += b" " * (-(4 + len(head)) % 4)
    return struct.pack("<I", len(head)) + head + bytes(data["pcm"])


class Tab:
    """One connected page. `out` feeds its writer task; `send` never waits."""

    _next = 0

    def __init__(self, hub: "SpeakerHub", ws: Any, *, agent: str = "") -> None:
        Tab._next += 1
        self.id = Tab._next
        self.hub = hub
        self.ws = ws
        self.agent = agent[:200]
        self.connected_at = time.monotonic()
        self.focused_at = 0.0
        self.mode: str | None = None  # what the daemon last told it: "track", "stream" or None
        self.state: dict[str, Any] = {}
        self.stream: TabStream | None = None
        self.out: asyncio.Queue[str | bytes | None] = asyncio.Queue(OUT_LIMIT)
        self.closed = False

    def send(self, msg: dict[str, Any] | bytes) -> bool:
        """Queue a command (dict) or a binary stream message; False when the tab is closed or stuck."""
        if self.closed:
            return False
        try:
            self.out.put_nowait(msg if isinstance(msg, bytes) else json.dumps(msg))
        except asyncio.QueueFull:
            return False
        return True

    async def send_wait(self, msg: bytes | dict[str, Any]) -> None:
        """Queue, waiting for room (a stream's backlog: sent as fast as the tab reads)."""
        if not self.closed:
            await self.out.put(msg if isinstance(msg, bytes) else json.dumps(msg))

    async def writer(self) -> None:
        """Send what is queued, in order, until the tab goes."""
        while True:
            item = await self.out.get()
            if item is None or self.ws.closed:
                return
            if isinstance(item, bytes):
                await self.ws.send_bytes(item)
            else:
                await self.ws.send_str(item)

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "focused_at": self.focused_at or None, "mode": self.mode, "state": dict(self.state)}


class TabStream:
    """A tab listening to a job: the connection the stream relay pushes `job.audio` frames to."""

    def __init__(self, tab: Tab, job_id: int, variation: int) -> None:
        self.tab, self.job_id, self.variation = tab, job_id, variation
        self.topics: set[str] = set()
        self.stopped = False

    @property
    def closed(self) -> bool:
        return self.stopped or self.tab.closed or self.tab.stream is not self

    def _message(self, msg: dict[str, Any]) -> bytes | dict[str, Any] | None:
        name, data = msg.get("event"), msg.get("data") or {}
        if name == "job.audio":
            return stream_frame(data)
        if name == "job.audio_end":
            return {"cmd": "stream_end", **{k: data.get(k) for k in ("job_id", "variation", "reason", "message",
                                                                    "samples", "sample_rate")}}
        return None

    def push(self, frame: bytes) -> None:
        """A live chunk (a packed protocol frame, as the relay sends every listener)."""
        if self.closed:
            return
        out = self._message(protocol.unpack_body(frame[protocol.HEADER.size:]))
        if out is not None and not self.tab.send(out):
            log.warning("speaker tab %d fell behind on job %d's stream; stopping it there", self.tab.id,
                        self.job_id)
            self.stopped = True
            self.tab.send({"cmd": "stream_end", "job_id": self.job_id, "reason": "behind",
                           "message": "this tab did not keep up with the stream"})

    async def send(self, msg: dict[str, Any]) -> None:
        """The backlog, piece by piece: waits while the tab's queue is full."""
        out = self._message(msg)
        if out is not None and not self.closed:
            await self.tab.send_wait(out)


class SpeakerHub:
    """The open tabs; `daemon.speakers` (see `hub_of`)."""

    def __init__(self, daemon: "Daemon") -> None:
        self.daemon = daemon
        self.tabs: list[Tab] = []
        self.port: int | None = None  # the HTTP API's port, set when it listens
        self.token_file: str | None = None  # where its token is (the path only: clients read the file)

    # -- tabs --------------------------------------------------------------------------------
    @property
    def url(self) -> str | None:
        return page_url(self.port) if self.port is not None else None

    def add(self, ws: Any, agent: str = "") -> Tab:
        if len(self.tabs) >= MAX_TABS:
            raise SpeakerHubError(protocol.CONFLICT, f"{MAX_TABS} speaker tabs are open already; close some")
        tab = Tab(self, ws, agent=agent)
        self.tabs.append(tab)
        self._publish()
        return tab

    def remove(self, tab: Tab) -> None:
        tab.closed = True
        if tab.stream is not None:
            tab.stream.stopped = True
        try:
            tab.out.put_nowait(None)
        except asyncio.QueueFull:
            pass
        if tab in self.tabs:
            self.tabs.remove(tab)
            self._publish()

    def report(self, tab: Tab, msg: dict[str, Any]) -> None:
        """A message from a tab: `hello` and `focus` (with `focused`/`visible`), `state` (playback)."""
        kind = msg.get("type")
        if kind in ("hello", "focus"):
            if msg.get("focused") is True or msg.get("visible") is True:
                tab.focused_at = time.monotonic()
                self._publish()
        elif kind == "state":
            state = {}
            for key, typ in STATE_KEYS.items():
                value = msg.get(key)
                if isinstance(value, bool) and typ is not bool:
                    continue
                if isinstance(value, typ) or typ is float and isinstance(value, int):
                    state[key] = value if typ is not str else value[:200]
            tab.state = state
            if tab is self._target():
                self._publish()

    def _target(self) -> Tab | None:
        live = [t for t in self.tabs if not t.closed]
        return max(live, key=lambda t: (t.focused_at, t.connected_at)) if live else None

    def target(self) -> Tab:
        """The most recently focused tab; no_speaker (with the page's URL) when none is open."""
        tab = self._target()
        if tab is None:
            if self.port is None:
                raise SpeakerHubError(protocol.NO_SPEAKER, "no browser tab is open as a speaker, and the daemon's "
                                      "HTTP server is off: set http.listen (e.g. 127.0.0.1:8765) and open its "
                                      "page", url=None, port=None)
            raise SpeakerHubError(protocol.NO_SPEAKER, f"no browser tab is open as a speaker: open {self.url} "
                                  "(`dgx-music web` prints the link with its token and the ssh -L line)",
                                  url=self.url, port=self.port, token_file=self.token_file)
        return tab

    def status(self) -> dict[str, Any]:
        tab = self._target()
        return {"tabs": len(self.tabs), "url": self.url, "port": self.port, "token_file": self.token_file,
                "target": tab.public() if tab is not None else None}

    def _publish(self) -> None:
        tab = self._target()
        self.daemon.publish("daemon.speaker", {"tabs": len(self.tabs), "url": self.url,
                                               "state": dict(tab.state) if tab is not None else None})

    # -- commands ----------------------------------------------------------------------------
    def _end_stream(self, tab: Tab) -> None:
        if tab.stream is not None:
            tab.stream.stopped = True
            tab.stream = None

    def play(self, req: SpeakerPlay, track: dict[str, Any]) -> dict[str, Any]:
        tab = self.target()
        self._end_stream(tab)
        tab.mode = "track"
        tab.send({"cmd": "play", "track_id": req.track_id, "position": req.position,
                  "url": f"/api/v1/tracks/{req.track_id}/audio", "title": track.get("title") or "",
                  "duration": track.get("duration")})
        return {"tab": tab.id, "tabs": len(self.tabs), "track_id": req.track_id, "position": req.position}

    def stream(self, req: SpeakerStream) -> dict[str, Any]:
        tab = self.target()
        self._end_stream(tab)
        tab.mode = "stream"
        listener = tab.stream = TabStream(tab, req.job_id, req.variation)
        tab.send({"cmd": "stream", "job_id": req.job_id, "variation": req.variation})  # before the backlog
        info = self.daemon.scheduler.streams.listen(listener, req.job_id, req.variation, "s16")
        return {"tab": tab.id, "tabs": len(self.tabs), **info}

    def stop(self) -> dict[str, Any]:
        tab = self.target()
        self._end_stream(tab)
        tab.mode = None
        tab.send({"cmd": "stop"})
        return {"tab": tab.id, "tabs": len(self.tabs)}

    def seek(self, req: SpeakerSeek) -> dict[str, Any]:
        tab = self.target()
        if tab.mode == "stream":
            raise SpeakerHubError(protocol.CONFLICT, "the speaker tab is playing a live stream, which cannot seek; "
                                  "play the finished track to seek in it")
        if tab.mode != "track":
            raise SpeakerHubError(protocol.CONFLICT, "the speaker tab is playing nothing to seek in; play a track "
                                  "first (speaker.play)")
        tab.send({"cmd": "seek", "seconds": req.seconds})
        return {"tab": tab.id, "seconds": req.seconds}


def hub_of(daemon: "Daemon") -> SpeakerHub:
    """The daemon's speaker registry, made on first use (by the HTTP API or a speaker.* request)."""
    hub = getattr(daemon, "speakers", None)
    if hub is None:
        hub = daemon.speakers = SpeakerHub(daemon)  # type: ignore[attr-defined]
    return hub

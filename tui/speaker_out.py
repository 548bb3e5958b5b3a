"""The TUI's second output: a browser tab the daemon serves (`dgx-music web`), for when nothing played here
would reach the user's ears (running over SSH with no forwarded sound server, or no player or device).

Space on a track plays it in the tab (speaker.play), space on a running job plays its stream there
(speaker.stream); stop and seek follow. `b` makes the tab the output even when local playback works. The
first time local playback is not possible, a notice gives the page's URL (with its token) and the ssh -L
line. The tab count comes from the daemon's `daemon.speaker` events; the position is kept here by the clock.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from dgx_music.common.protocol import NO_SPEAKER, RemoteError
from dgx_music.common.speaker import page_url, read_token, ssh_line

if TYPE_CHECKING:
    from dgx_music.tui.app import DgxMusicApp

SEEK_STEP = 5.0


class TabSpeaker:
    """What the tab plays, as far as this TUI told it."""

    def __init__(self, app: "DgxMusicApp") -> None:
        self.app = app
        self.tabs = 0
        self.port: int | None = None
        self.token_file: str | None = None  # as the daemon reports it
        self.preferred = False  # `b`: play in the tab even when local playback works
        self.track_id: str | None = None
        self.job_id: int | None = None
        self.duration = 0.0
        self._started = 0.0
        self.noticed = False

    # -- state -------------------------------------------------------------------------------
    @property
    def playing(self) -> bool:
        return self.track_id is not None or self.job_id is not None

    @property
    def position(self) -> float:
        pos = time.monotonic() - self._started
        return min(pos, self.duration) if self.duration else pos

    def wanted(self, why_not_here: str | None) -> bool:
        """Whether the next preview goes to the tab."""
        return why_not_here is not None or (self.preferred and self.tabs > 0)

    def on_event(self, data: dict[str, Any]) -> None:
        """`daemon.speaker`: tabs came or went, or the playing tab's state changed."""
        if isinstance(data.get("tabs"), int):
            self.tabs = data["tabs"]
        url = data.get("url")
        if isinstance(url, str) and url.rstrip("/").rpartition(":")[2].isdigit():
            self.port = int(url.rstrip("/").rpartition(":")[2])
        state = data.get("state") or {}
        if self.track_id is not None and state.get("mode") is None and state.get("playing") is False \
                and time.monotonic() - self._started > 1.0:
            self.clear()  # the tab was stopped (or closed) from elsewhere

    def tick(self) -> bool:
        """True while something plays in the tab; a track ends by the clock."""
        if self.track_id is not None and self.duration and self.position >= self.duration:
            self.clear()
        return self.playing

    def tick_view(self) -> None:
        """The app's 10 Hz tick while the tab plays: the playhead on the detail pane, the end by the clock."""
        from dgx_music.tui.library import DetailPane

        if not self.tick():
            self.app._playing_ended()
            return
        detail = self.app.library_view.detail
        pane = self.app.query_one(DetailPane)
        if detail and detail.get("id") == self.track_id and self.duration:
            pane.set_position(self.position / self.duration)
        else:
            pane.set_position(None)

    def clear(self) -> None:
        self.track_id = self.job_id = None
        self.duration = 0.0

    # -- where the page is -------------------------------------------------------------------
    def _token(self) -> str | None:
        try:
            from dgx_music.common.config import load_settings

            return read_token(load_settings(None, {"daemon.socket": str(self.app.socket_path)}), self.token_file)
        except Exception:  # a config that does not load: the URL without its token still helps
            return None

    def where(self) -> str:
        """The URL to open and the ssh line, in one sentence."""
        if self.port is None:
            return "the daemon's HTTP server is off: set http.listen (e.g. 127.0.0.1:8765), then `dgx-music web`"
        return (f"open {page_url(self.port, self._token())} in a browser (from your laptop, first "
                f"`{ssh_line(self.port)}`); that tab plays what you pick here")

    async def refresh(self) -> None:
        try:
            info = await self.app.call("speaker.status", timeout=5.0)
        except Exception:
            return
        self.on_event(info)
        if isinstance(info.get("port"), int):
            self.port = info["port"]
        if isinstance(info.get("token_file"), str):
            self.token_file = info["token_file"]

    def notice_once(self, why: str) -> None:
        if not self.noticed:
            self.noticed = True
            self.app.notify(f"Cannot play here ({why}). To hear it: {self.where()}.", title="No audio output here: play in the browser",
                            severity="warning", timeout=20)

    # -- commands ----------------------------------------------------------------------------
    async def _send(self, method: str, params: dict[str, Any], what: str, why: str | None) -> bool:
        if why is not None:
            await self.refresh()
            self.notice_once(why)
        try:
            await self.app.call(method, params)
        except RemoteError as exc:
            if exc.code == NO_SPEAKER:
                port = exc.data.get("port")
                self.port = port if isinstance(port, int) else self.port
                if isinstance(exc.data.get("token_file"), str):
                    self.token_file = exc.data["token_file"]
                self.noticed = True
                self.app.notify(f"No browser tab is open to play {what}: {self.where()}.", title="No speaker tab",
                                severity="warning", timeout=20)
            else:
                self.app.notify(exc.message, title=f"Cannot play {what} in the browser [{exc.code}]",
                                severity="error")
            return False
        except Exception as exc:
            self.app.notify(str(exc), title=f"Cannot play {what} in the browser", severity="error")
            return False
        return True

    async def play_track(self, t: dict[str, Any], why: str | None, position: float = 0.0) -> bool:
        tid = str(t.get("id"))
        if not await self._send("speaker.play", {"track_id": tid, "position": position}, tid, why):
            return False
        self.job_id = None
        self.track_id, self.duration = tid, float(t.get("duration") or 0.0)
        self._started = time.monotonic() - position
        return True

    async def play_stream(self, job_id: int, why: str | None) -> bool:
        if not await self._send("speaker.stream", {"job_id": job_id}, f"job {job_id}", why):
            return False
        self.track_id, self.job_id, self.duration, self._started = None, job_id, 0.0, time.monotonic()
        return True

    async def stop(self) -> None:
        self.clear()
        try:
            await self.app.call("speaker.stop", timeout=5.0)
        except Exception:  # no tab any more, or no daemon: nothing plays either way
            pass

    async def seek(self, delta: float) -> None:
        if self.track_id is None:
            return
        target = max(0.0, self.position + delta)
        if self.duration:
            target = min(target, max(0.0, self.duration - 0.1))
        try:
            await self.app.call("speaker.seek", {"seconds": round(target, 3)}, timeout=5.0)
        except RemoteError as exc:
            self.app.notify(exc.message, title=f"Cannot seek [{exc.code}]", severity="warning")
            return
        self._started = time.monotonic() - target

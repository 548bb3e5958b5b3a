"""Playing previews in the TUI: the track under the cursor (or the last one played), a running job's
stream, here through the Player (tui/player.py) or in the browser tab (tui/speaker_out.py).

A track's file is read in place when this TUI runs where the daemon does, else fetched over the
protocol into the preview cache (reused once complete); export (tui/export_flow.py) uses the same.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, BinaryIO

from dgx_music.common import transfer
from dgx_music.common.client import DaemonUnavailable, RemoteError, RequestTimeout
from textual.css.query import NoMatches

from dgx_music.tui.detail import DetailPane
from dgx_music.tui.player import PlayerUnavailable, local_output_problem, to_wav
from dgx_music.tui.queue import QueueView

AUDIO_CHUNK = 262144


class Playback:
    """Mixed into DgxMusicApp (whose BINDINGS name these actions): needs its player, tab, library_view,
    queue_view, status_bar, snapshot, socket_path, cache_dir and call()."""

    def _track_for_play(self) -> dict[str, Any] | None:
        t = self.library_view.selected()
        return t or self.last_track

    def action_toggle_play(self) -> None:
        if self.player.playing or self.tab.playing:
            self.stop_playing()
            return
        t = self._track_for_play()
        if t is None:
            self.notify("Select a track in the library (F4) to play it.", severity="warning")
            return
        self.last_track = t
        self.run_worker(self._play(t), group="play", exclusive=True, exit_on_error=False)

    def stop_playing(self) -> None:
        self.player.stop()
        if self.tab.playing:
            self.run_worker(self.tab.stop(), group="speaker", exit_on_error=False)
        self._playing_ended()

    def action_toggle_tab_output(self) -> None:
        """`b`: previews go to the browser tab (when one is open) even where local playback works."""
        self.tab.preferred = not self.tab.preferred
        where = "the browser tab" if self.tab.preferred else "this machine when it can play"
        self.notify(f"Previews play in {where}." + ("" if self.tab.tabs or not self.tab.preferred else
                                                      f" No tab is open: {self.tab.where()}."), timeout=6)

    def action_seek(self, delta: float) -> None:
        if self.tab.track_id is not None:
            self.run_worker(self.tab.seek(delta), group="speaker", exit_on_error=False)

    def on_queue_view_play_stream(self, message: QueueView.PlayStream) -> None:
        """Space on a running job: its stream, here or in the browser tab."""
        if self.tab.job_id == message.job_id:
            self.stop_playing()
            return
        why = local_output_problem(self.player)
        if not self.tab.wanted(why):
            self.queue_view.play_local_stream(message.job_id)
            return

        async def go() -> None:
            if await self.tab.play_stream(message.job_id, why):
                self.status_bar.playing = f"job {message.job_id} as it generates (browser tab)"
                self.status_bar.refresh_text()
        self.run_worker(go(), group="play", exclusive=True, exit_on_error=False)

    def _playing_ended(self) -> None:
        self.status_bar.playing = None
        self.status_bar.refresh_text()
        self.query_one(DetailPane).set_position(None)

    def local_file(self, t: dict[str, Any]) -> Path | None:
        """The track's file, if this TUI runs where the daemon does and can read it.
        UnsafeTrackPath when the daemon names a file outside its data directory."""
        snap = self.snapshot
        if snap is None or not t.get("path"):
            return None
        status = snap.status
        try:
            same = Path(str(status.get("socket"))).resolve() == self.socket_path.resolve()
        except OSError:
            same = False
        root = status.get("storage") or status.get("data_dir")  # what track paths are relative to
        if not (same and root):
            return None
        path = transfer.checked_path(str(root), t)  # UnsafeTrackPath: never read it
        return path if os.access(path, os.R_OK) else None

    async def fetch_audio(self, t: dict[str, Any]) -> Path:
        """Stream the file over the protocol into the cache (reused when already complete)."""
        tid = str(t["id"])
        suffix = Path(str(t.get("path") or "x.wav")).suffix or ".wav"
        first = await self.call("track.audio", {"id": tid, "offset": 0, "size": AUDIO_CHUNK})
        total = int(first.get("total") or 0)
        dest = self.cache_dir / "previews" / f"{tid}-{total}{suffix}"
        if await asyncio.to_thread(_is_complete, dest, total):
            return dest
        # Every file operation in a thread: a slow disk (or a network home) must not freeze the UI.
        part = dest.with_suffix(suffix + ".part")
        f = await asyncio.to_thread(_open_part, part)
        try:
            res = first
            while True:
                data = res.get("data") or b""
                await asyncio.to_thread(f.write, data)
                offset = int(res.get("offset") or 0) + len(data)
                if res.get("eof") or not data or offset >= total:
                    break
                res = await self.call("track.audio", {"id": tid, "offset": offset, "size": AUDIO_CHUNK})
        finally:
            await asyncio.to_thread(f.close)
        await asyncio.to_thread(part.replace, dest)
        return dest

    async def _play(self, t: dict[str, Any]) -> None:
        tid = str(t.get("id"))
        why = local_output_problem(self.player)
        if self.tab.wanted(why):
            if await self.tab.play_track(t, why):
                title = t.get("title") or t.get("prompt") or tid
                self.status_bar.playing = f"{tid} {str(title)[:40]} (browser tab)"
                self.status_bar.refresh_text()
            return
        try:
            path = self.local_file(t)
            if path is None:
                self.status_bar.playing = f"fetching {tid}…"
                self.status_bar.refresh_text()
                path = await self.fetch_audio(t)
            if self.player.needs_wav and path.suffix.lower() != ".wav":
                wav = self.cache_dir / "previews" / f"{tid}-{path.stat().st_size}.wav"
                wav.parent.mkdir(parents=True, exist_ok=True)
                if not wav.exists():
                    await asyncio.to_thread(to_wav, path, wav)
                path = wav
            self.player.play(path, track_id=tid, duration=float(t.get("duration") or 0.0))
        except PlayerUnavailable as exc:
            self.status_bar.playing = None
            self.status_bar.refresh_text()
            self.notify(str(exc), title="No audio output", severity="warning", timeout=10)
            return
        except RemoteError as exc:
            self.status_bar.playing = None
            self.status_bar.refresh_text()
            self.notify(exc.message, title=f"Cannot fetch {tid} [{exc.code}]", severity="error")
            return
        except (DaemonUnavailable, RequestTimeout, OSError, transfer.UnsafeTrackPath) as exc:
            self.status_bar.playing = None
            self.status_bar.refresh_text()
            self.notify(str(exc), title=f"Cannot play {tid}", severity="error")
            return
        title = t.get("title") or t.get("prompt") or tid
        self.status_bar.playing = f"{tid} {str(title)[:40]} ({self.player.backend})"
        self.status_bar.refresh_text()

    def _tick_player(self) -> None:
        if self.tab.playing:
            self.tab.tick_view()
            return
        player = self.player
        if not player.playing:
            return
        if not player.poll():
            self.stop_playing()
            if player.failure:
                self.notify(player.failure, title="The player stopped", severity="warning", timeout=10)
            return
        lib = self.library_view
        try:  # the library's pane, not the screen's: a modal on top (help, a form) has none
            pane = lib.query_one(DetailPane)
        except NoMatches:  # the app is shutting down (the timer's last tick)
            return
        if lib.detail and lib.detail.get("id") == player.track_id and player.duration:
            pane.set_position(player.position / player.duration)
        else:
            pane.set_position(None)


def _is_complete(dest: Path, total: int) -> bool:
    """A cached preview of the right size (track files never change once written)."""
    try:
        return dest.stat().st_size == total
    except FileNotFoundError:
        return False


def _open_part(part: Path) -> BinaryIO:
    part.parent.mkdir(parents=True, exist_ok=True)
    return open(part, "wb")
